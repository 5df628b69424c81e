"""Memorisation with a spread (issue 28): is a model closer to its training images than fresh real images are?

Two measures on the in-domain classifier's penultimate features (128-d; cheap enough for a train subset the size of
the test split, whose features are cached, :meth:`genbench.metrics.evaluate.EvalContext.train_features`):

- **FD to train against FD to test.** The Fréchet distance (Heusel et al. 2017, eq. 6) of the samples to a seeded
  train subset (T, the size of the test split) and to the test split (P). A model that copies its training images
  sits closer to T than to P: ``gap = fd_test - fd_train`` is then above the real-data row's gap, which measures
  the same for held-out real images (never trained on). Spread: one bootstrap of the samples, the same resample
  for both distances (paired), std of each and of the gap.
- **The C_T data-copying test** (Meehan, Chaudhuri & Dasgupta 2020, "A Non-Parametric Test to Detect Data-Copying
  in Generative Models", AISTATS, sec. 3, eq. 4-5). The feature space is cut into ``cells`` cells by k-means on T;
  in cell pi the distances of the test images and of the samples to their nearest training image of the cell,
  L_pi(P) and L_pi(Q), are compared by the Mann-Whitney U test, z-scored under H0 with the continuity correction
  of the authors' code: Z_U = (U - (n m / 2 - 1/2)) / sqrt(n m (n + m + 1) / 12), U = #{(q, p): L(q) > L(p)}
  (+ ties / 2). C_T is the average of Z_U over the cells holding more than ``tau`` of the samples, weighted by the
  test images' share P(pi). C_T << 0: samples nearer the training images than test images are (data-copying);
  C_T >> 0: farther (underfitting); about 0 for a model that generalises. Spread: bootstrap over the samples (their
  nearest-training distances and cells are computed once).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from genbench.metrics.manifold import nearest_rows
from genbench.metrics.registry import Inputs, Metric, register_metric
from genbench.metrics.scores import feature_stats, frechet_distance, frechet_distance_to

CELLS = 10
"""k-means cells of the C_T test (Meehan et al. used 3-75 by dataset; 10 keeps every cell populated at N = 100)."""
MIN_PER_CELL = 5
"""Samples and test images a cell must hold for its Z_U (the normal approximation of U needs a few of each)."""
MEMO_BOOTSTRAP = 20


def z_u(lq: np.ndarray, lp: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of the samples' nearest-training distances ``lq`` (m,) against the test images' ``lp``
    (n,) (Meehan et al. 2020, eq. 4; continuity correction as in the authors' code). Negative when the samples are
    the closer ones."""
    m, n = len(lq), len(lp)
    ranks = rankdata(np.concatenate([lq, lp]))  # average ranks for ties
    u = ranks[:m].sum() - m * (m + 1) / 2  # pairs (q, p) with lq > lp, ties counting 1/2
    return float((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12))


class CTTest:
    """The C_T test's fixed parts for one (train, test) pair: the k-means cells fitted on the train features and
    the test images' cells and nearest-training distances, so each sample set (and each of its resamples) costs
    only its own distances and U statistics.

    Args:
        train: float (l, d) training features T; test: float (n, d) test features P.
        cells: k-means cells; seed: k-means seed.
    """

    def __init__(self, train: np.ndarray, test: np.ndarray, *, cells: int = CELLS, seed: int = 0):
        from sklearn.cluster import KMeans

        self.train, self.cells = np.asarray(train, np.float64), cells
        self.km = KMeans(n_clusters=cells, n_init=3, random_state=seed).fit(self.train)
        self.train_cell = self.km.labels_
        test = np.asarray(test, np.float64)
        self.test_cell = self.km.predict(test)
        self.test_l = self._nn(test, self.test_cell)
        self.p_share = np.bincount(self.test_cell, minlength=cells) / len(test)

    def _nn(self, x: np.ndarray, cell: np.ndarray) -> np.ndarray:
        out = np.full(len(x), np.inf)
        for c in range(self.cells):
            t = self.train[self.train_cell == c]
            if len(t) and (cell == c).any():
                out[cell == c] = nearest_rows(x[cell == c], t)[0]
        return out

    def prepare(self, gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples' cells and nearest-training distances within their cells."""
        gen = np.asarray(gen, np.float64)
        cell = self.km.predict(gen)
        return cell, self._nn(gen, cell)

    def statistic(self, cell: np.ndarray, dist: np.ndarray, tau: float) -> tuple[float | None, list]:
        """C_T (None when no cell qualifies) and the per-cell (cell, share of samples, Z_U or None)."""
        m = len(cell)
        num = den = 0.0
        rows = []
        for c in range(self.cells):
            q, p = dist[cell == c], self.test_l[self.test_cell == c]
            share = len(q) / m
            ok = share > tau and len(q) >= MIN_PER_CELL and len(p) >= MIN_PER_CELL
            z = z_u(q, p) if ok else None
            rows.append((c, share, z))
            if ok:
                num += self.p_share[c] * z
                den += self.p_share[c]
        return (num / den if den > 0 else None), rows


def memorisation(x: Inputs) -> dict:
    """The ``memorisation`` entry of one image set (module docstring): ``fd_train``, ``fd_test``, ``gap`` (each with
    ``_std``), ``c_t`` with ``c_t_std`` and ``cells``; ``value`` = ``c_t`` (lower = more copying; about 0 for a
    model that generalises)."""
    ctx = x.ctx
    test, train = ctx.classifier_test_features(), x.train_feats
    n_train = len(train)
    gen = np.asarray(x.feats, np.float64)
    rng = np.random.default_rng(ctx.seed)
    s_train, s_test = feature_stats(train), feature_stats(test)

    def fds(g: np.ndarray) -> tuple[float, float]:
        f = frechet_distance_to if len(g) <= g.shape[1] else \
            (lambda a, mu, sig: frechet_distance(*feature_stats(a), mu, sig))
        return f(g, *s_train), f(g, *s_test)

    fd_train, fd_test = fds(gen)
    boots = np.array([fds(gen[rng.integers(0, len(gen), len(gen))]) for _ in range(MEMO_BOOTSTRAP)])
    cache = getattr(ctx, "_cache", {})  # the cells and test distances are the same for every set of one evaluation
    ct = cache.get(("ct_test", n_train)) or CTTest(train, test, cells=CELLS, seed=ctx.seed)
    cache[("ct_test", n_train)] = ct
    tau = 20 / len(gen) if len(gen) > 20 * CELLS else 0.0  # the authors' tau = 20 / m where that leaves cells
    cell, dist = ct.prepare(gen)
    c_t, rows = ct.statistic(cell, dist, tau)
    ct_boot = []
    for _ in range(MEMO_BOOTSTRAP):
        i = rng.integers(0, len(gen), len(gen))
        v, _ = ct.statistic(cell[i], dist[i], tau)
        if v is not None:
            ct_boot.append(v)
    return {"value": c_t, "std": float(np.std(ct_boot)) if ct_boot else None,
            "c_t": c_t, "c_t_std": float(np.std(ct_boot)) if ct_boot else None,
            "fd_train": fd_train, "fd_train_std": float(np.std(boots[:, 0])),
            "fd_test": fd_test, "fd_test_std": float(np.std(boots[:, 1])),
            "gap": fd_test - fd_train, "gap_std": float(np.std(boots[:, 1] - boots[:, 0])),
            "cells": [{"cell": c, "sample_share": s, "z_u": z} for c, s, z in rows], "k_cells": CELLS, "tau": tau,
            "n_generated": len(gen), "n_train": n_train, "n_test": len(test),
            "extractor": x.clf_name + " penultimate (128-d)",
            "spread": f"bootstrap std over {MEMO_BOOTSTRAP} resamples of the samples (paired for fd_train, fd_test "
                      f"and gap)",
            "direction": "C_T << 0: data-copying, >> 0: underfitting, near 0 (and the real row's gap): generalises"}


register_metric(Metric(
    "memorisation", ("classifier", "train_features"), memorisation, "none", "bootstrap std of the samples",
    applies=lambda x: x.n >= 2 * MIN_PER_CELL,
    doc="memorisation: FD to a train subset against FD to test, and the C_T data-copying test "
        "(Meehan et al. 2020)"))
