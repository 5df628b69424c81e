"""Per-class metrics of conditional models (issue 28, :mod:`genbench.metrics.per_class`) on hand-made classifier
features whose per-class answer is known: every class drawn from its own reference distribution except one that is
shifted, and one class with too few images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genbench.metrics.per_class import MIN_PER_CLASS, per_class
from genbench.metrics.registry import get_metric


def _setup(shift_class=3, shift=3.0, few_class=None, k=5, d=8, n_ref=300, n_gen=120, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    y_test = np.repeat(np.arange(k), n_ref)
    test_feats = centres[y_test] + rng.standard_normal((len(y_test), d))
    labels = np.repeat(np.arange(k), n_gen)
    if few_class is not None:
        labels = np.concatenate([labels[labels != few_class], np.full(MIN_PER_CLASS - 1, few_class)])
    gen = centres[labels] + rng.standard_normal((len(labels), d))
    gen[labels == shift_class, 0] += shift
    order = rng.permutation(len(y_test))
    ctx = SimpleNamespace(test=SimpleNamespace(num_classes=k, y=torch.as_tensor(y_test), class_names=None),
                          seed=0, reference_indices=lambda n: order[:n],
                          classifier_test_features=lambda: test_feats)
    return SimpleNamespace(ctx=ctx, feats=gen, labels=torch.as_tensor(labels), n=len(labels), m=len(labels),
                           clf_name="toy classifier", feats_i=None, inc_ref=None, conditional=True)


def test_the_shifted_class_is_the_worst_and_the_others_sit_near_their_floor():
    out = per_class(_setup())
    fds = [c["fd"] for c in out["classes"]]
    # a mean shift of 3 in one coordinate adds |delta|^2 = 9 to the FD (Heusel et al. eq. 6); the others only carry
    # the finite-sample bias, about d / n = 8 / 120 per side
    assert out["worst"]["class"] == 3 and fds[3] == pytest.approx(9.0, rel=0.25)
    assert max(f for i, f in enumerate(fds) if i != 3) < 0.5
    assert out["value"] == pytest.approx(np.mean(fds))
    assert out["std"] == pytest.approx(np.sqrt(sum(c["fd_std"] ** 2 for c in out["classes"])) / 5)
    good = [c for c in out["classes"] if c["class"] != 3]
    assert all(c["precision"] > 0.8 and c["recall"] > 0.8 for c in good)
    assert out["classes"][3]["precision"] < good[0]["precision"]  # shifted samples leave the class's manifold
    assert out["classes"][3]["kid"] > 10 * max(c["kid"] for c in good)
    assert all(c["n_compared"] == 120 and c["n_reference"] == 300 for c in out["classes"])
    assert out["inception_fid_per_class"]["value"] is None  # no Inception features given


def test_a_class_with_too_few_images_says_so():
    out = per_class(_setup(few_class=1))
    c1 = out["classes"][1]
    assert c1["n_generated"] == MIN_PER_CLASS - 1 and c1["fd"] is None and "fewer than" in c1["note"]
    assert out["value"] == pytest.approx(np.mean([c["fd"] for c in out["classes"] if c["fd"] is not None]))


def test_registered_for_conditional_sets_only():
    m = get_metric("per_class")
    assert m.applies(SimpleNamespace(conditional=True, ctx=SimpleNamespace(test=SimpleNamespace(num_classes=10))))
    assert not m.applies(SimpleNamespace(conditional=False, ctx=SimpleNamespace(test=SimpleNamespace(num_classes=10))))


def test_the_report_draws_the_per_class_figure(tmp_path_factory):
    """The committed run folder (tests/fixtures) with a per-class entry (``per_class(_setup())``) added to its real
    row renders the figure (the render test_report_fixture.py shares: shared_render)."""
    from test_report_fixture import shared_render

    d, html, entries = shared_render(tmp_path_factory)
    assert entries["per_class"] == per_class(_setup())
    assert (d / "report" / "figures" / "per_class.png").exists()
    assert "Per-class quality" in html and "Worst class: real: 3" in html
