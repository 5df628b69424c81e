"""Memorisation with a spread (issue 28, :mod:`genbench.metrics.memorisation`): the C_T data-copying test (Meehan
et al. 2020) and FD to train against FD to test, on features whose answer is known: fresh samples of the data
distribution (no copying: C_T ~ N(0, <= 1) under H0), noisy copies of the training points (copying: C_T << 0) and
blurred-out samples (underfitting: C_T >> 0)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from genbench.metrics.memorisation import CTTest, memorisation, z_u


def _mixture(rng, n, d=6, k=4):
    centres = np.arange(k)[:, None] * 3.0 * np.eye(d)[0]
    return centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))


def test_z_u_is_the_authors_z_scored_mann_whitney_u():
    rng = np.random.default_rng(0)
    lq, lp = rng.exponential(1.0, 40), rng.exponential(1.2, 70)
    u = mannwhitneyu(lq, lp, alternative="less").statistic  # U of the first sample, as the authors' code takes it
    assert z_u(lq, lp) == pytest.approx((u - (40 * 70 / 2 - 0.5)) / np.sqrt(40 * 70 * 111 / 12), rel=1e-12)
    lq[:5] = lp[:5]  # ties count one half, as in scipy
    u = mannwhitneyu(lq, lp, alternative="less").statistic
    assert z_u(lq, lp) == pytest.approx((u - (40 * 70 / 2 - 0.5)) / np.sqrt(40 * 70 * 111 / 12), rel=1e-12)


def test_c_t_separates_copying_generalising_and_underfitting():
    """Under H0 each cell's Z_U is ~N(0, 1) and C_T a weighted mean of them, so |C_T| < 4.5 fails with
    probability below 1e-5 for a random seed; copies and blurred samples sit many units away."""
    rng = np.random.default_rng(1)
    train, test = _mixture(rng, 3000), _mixture(rng, 1500)
    ct = CTTest(train, test, cells=5, seed=0)
    fresh = _mixture(rng, 1000)
    copies = train[rng.integers(0, len(train), 1000)] + 0.05 * rng.standard_normal((1000, 6))
    blurred = fresh + 1.5 * rng.standard_normal((1000, 6))
    values = {}
    for name, g in (("fresh", fresh), ("copies", copies), ("blurred", blurred)):
        values[name], rows = ct.statistic(*ct.prepare(g), tau=20 / len(g))
        assert len(rows) == 5
    assert abs(values["fresh"]) < 4.5, values
    assert values["copies"] < -10 and values["blurred"] > 10, values


def _inputs(gen, train, test):
    ctx = SimpleNamespace(seed=0, _cache={}, classifier_test_features=lambda: test)
    return SimpleNamespace(ctx=ctx, feats=gen, train_feats=train, n=len(gen), clf_name="toy classifier")


def test_memorisation_entry_copies_against_fresh():
    rng = np.random.default_rng(2)
    train, test = _mixture(rng, 2000), _mixture(rng, 2000)
    fresh = memorisation(_inputs(_mixture(rng, 600), train, test))
    copies = memorisation(_inputs(train[rng.permutation(2000)[:600]], train, test))
    for m in (fresh, copies):
        for key in ("c_t", "fd_train", "fd_test", "gap"):
            assert np.isfinite(m[key]) and m[f"{key}_std"] > 0, key
        assert m["value"] == m["c_t"] and m["n_train"] == 2000 and m["n_test"] == 2000
    assert abs(fresh["c_t"]) < 4.5 and copies["c_t"] < -10
    # exact training points: nearer the train subset's statistics than the test split's, by more than the spread
    assert copies["gap"] > 2 * copies["gap_std"] and abs(fresh["gap"]) < 4 * fresh["gap_std"] + 0.05


def test_the_report_shows_the_memorisation_table(tmp_path_factory):
    """The committed run folder with a memorisation entry on its real row (the render test_report_fixture.py
    shares: shared_render, which adds this entry)."""
    from test_report_fixture import shared_render

    _, html, entries = shared_render(tmp_path_factory)
    entry = entries["memorisation"]  # memorisation(_inputs(train[:300], train, test)), two mixtures of 1,000 points
    assert "<h3>Memorisation</h3>" in html and f"{entry['c_t']:.3g} ± {entry['c_t_std']:.2g}" in html


def test_nearest_neighbours_experiment_finds_copies_and_renders(tmp_path):
    """A 'model' whose bank holds exact training images (copies) against one of fresh noise: the copies sit at
    distance 0 from their training neighbours, which are those very images; the real floor comes from the holdout."""
    import torch

    from genbench.data.base import Dataset
    from genbench.metrics.manifold import nearest_train, nearest_train_distance
    from genbench.report.experiments import render_nearest_neighbours
    from genbench.studies.experiments.latent_space import exp_nearest_neighbours

    rng = np.random.default_rng(4)
    train = rng.integers(0, 256, (300, 1, 6, 6), dtype=np.uint8)
    hold = rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8)
    copies, noise = train[[5, 17, 250]], rng.integers(0, 256, (30, 1, 6, 6), dtype=np.uint8)
    d, j = nearest_train(copies, train, chunk=64)  # chunked: indices must be global
    assert np.all(d < 1e-6) and j.tolist() == [5, 17, 250]  # 0 up to the expansion's float64 round-off
    assert np.allclose(nearest_train_distance(noise, train), nearest_train(noise, train)[0])
    splits = {"train": Dataset(torch.from_numpy(train), torch.zeros(300, dtype=torch.int64), 1, "toy"),
              "holdout": Dataset(torch.from_numpy(hold), torch.zeros(40, dtype=torch.int64), 1, "toy")}
    ctx = SimpleNamespace(splits=splits, models={"copier": None, "noisy": None},
                          banks={"copier": (torch.from_numpy(np.concatenate([copies, noise])), None),
                                 "noisy": (torch.from_numpy(noise), None)})
    res, arr = exp_nearest_neighbours(ctx, {"n": 500, "show": 3})
    assert set(res["models"]) == {"copier", "noisy", "real"}
    assert max(res["models"]["copier"]["distances"]) < 1e-6
    assert np.array_equal(arr["copier__samples"], arr["copier__neighbours"])
    assert min(res["models"]["noisy"]["distances"]) > 0 and res["models"]["real"]["n"] == 40
    parts = []
    render_nearest_neighbours(parts, res, arr, tmp_path, lambda p: p.name, tmp_path, {})
    assert len(parts) == 3 and (tmp_path / "nearest_copier.png").exists() and "held-out real images" in parts[0]


def test_nearest_rows_and_nearest_train_match_brute_force():
    """The one nearest-neighbour routine (C_T's distances in feature space, the nearest-train metric and experiment
    in pixel space) against scipy's cdist, with chunks smaller than the reference set, an exact copy (distance 0)
    and uint8 pixels scaled to [0, 1]."""
    from scipy.spatial.distance import cdist

    from genbench.metrics.manifold import nearest_rows, nearest_train

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 5)), rng.normal(size=(101, 5))
    a[3] = b[77]
    d, j = nearest_rows(a, b, chunk=16)
    full = cdist(a, b)
    assert np.array_equal(j, full.argmin(1)) and np.allclose(d, full.min(1), atol=1e-7)
    assert j[3] == 77 and d[3] < 1e-6
    gen = rng.integers(0, 256, size=(9, 1, 4, 4), dtype=np.uint8)
    train = rng.integers(0, 256, size=(50, 1, 4, 4), dtype=np.uint8)
    d2, j2 = nearest_train(gen, train, chunk=7)
    full2 = cdist(gen.reshape(9, -1) / 255.0, train.reshape(50, -1) / 255.0)
    assert np.array_equal(j2, full2.argmin(1)) and np.allclose(d2, full2.min(1), atol=1e-7)
