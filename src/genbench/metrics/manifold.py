"""Sample-set metrics beyond FID, on features (generated, real), float64 where it matters.

- KID (Binkowski et al. 2018, eq. 2-3 with the polynomial kernel of sec. 3): unbiased MMD^2 with the cubic
  kernel k(x, y) = (x.y / d + 1)^3, float64, averaged over seeded random subsets (std with ddof 0). Range: about 0
  for equal distributions (can be slightly negative), lower is better. Checked against torchmetrics'
  ``KernelInceptionDistance`` on the same features and the same subsets (tests/test_known_answers.py).
- Improved precision and recall (Kynkaenniemi et al. 2019, eq. 1-2) with k = 3: precision = fraction of
  generated samples inside the union of real k-NN balls (closed balls, ``<=``, as eq. 1 and the authors' code);
  recall = the converse. Range [0, 1], higher is better.
- Density and coverage (Naeem et al. 2020, eq. 3-4) with k = 5, open balls (``<``) as the authors' reference
  code, PyPI ``prdc``. Density is unbounded above (1 ~ matched), coverage in [0, 1]; higher is better.

Known answers: on the same features the four values equal ``prdc.compute_prdc`` (precision/recall exactly
where no generated-real distance ties a k-NN radius, which is every continuous feature set; with ties the
closed ball of Kynkaenniemi's eq. 1 counts the boundary and ``prdc`` does not).
"""

from __future__ import annotations

import numpy as np


def mmd2_unbiased(gen: np.ndarray, real: np.ndarray) -> float:
    """Unbiased MMD^2 (Binkowski et al. 2018, eq. 3; Gretton et al. 2012, eq. 3) between two equal-size sets with
    the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, in float64:

        1/(m(m-1)) sum_{i!=j} [k(g_i, g_j) + k(r_i, r_j)] - 2/m^2 sum_{i,j} k(g_i, r_j)

    Args:
        gen, real: (m, d) features, m >= 2 each (the same m).

    Returns:
        MMD^2 estimate (float); 0 in expectation for equal distributions, can be slightly negative.
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    m, d = g.shape
    if r.shape != (m, d) or m < 2:
        raise ValueError(f"mmd2_unbiased takes two (m >= 2, d) sets of one shape, got {g.shape} and {r.shape}")
    k_gg = (g @ g.T / d + 1) ** 3
    k_rr = (r @ r.T / d + 1) ** 3
    k_gr = (g @ r.T / d + 1) ** 3
    within = (k_gg.sum() - np.trace(k_gg) + k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return float(within - 2 * k_gr.sum() / m**2)


def kid_subsets(n_gen: int, n_real: int, *, subsets: int, subset_size: int, seed: int
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The seeded subsets KID averages over: ``subsets`` pairs (gen indices, real indices), each drawn without
    replacement, of size ``min(subset_size, n_gen, n_real)``."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, n_gen, n_real)
    return [(rng.choice(n_gen, m, replace=False), rng.choice(n_real, m, replace=False)) for _ in range(subsets)]


def _subset_kernel_sums(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray, *, diagonal: bool,
                        block_bytes: int = 1 << 27) -> tuple[np.ndarray, np.ndarray | None]:
    """For each subset s, sum_{i, j} wa[i, s] k(a_i, b_j) wb[j, s] with the cubic kernel k(x, y) = (x.y / d + 1)^3,
    i.e. the diagonal of Wa^T K Wb, and (``diagonal``: a and b are one set) sum_i wa[i, s] k(a_i, a_i).

    The kernel matrix K (n_a, n_b) is formed once, in row blocks of at most ``block_bytes``, and each block meets
    every subset in one matmul with the count matrices; a subset's sum is then exact up to the order of the
    additions. Shapes: a (n_a, d), b (n_b, d), wa (n_a, S), wb (n_b, S) float64 counts; returns (S,), (S,) or None.
    """
    n_a, d = a.shape
    rows = max(1, block_bytes // (8 * len(b)))
    sums = np.zeros(wa.shape[1])
    diag = np.zeros(wa.shape[1]) if diagonal else None
    for i0 in range(0, n_a, rows):
        i1 = min(i0 + rows, n_a)
        k = (a[i0:i1] @ b.T / d + 1) ** 3  # (i1 - i0, n_b), as mmd2_unbiased forms it
        sums += np.einsum("is,is->s", wa[i0:i1], k @ wb)  # (i1 - i0, S) per block
        if diagonal:
            diag += k[np.arange(i1 - i0), np.arange(i0, i1)] @ wa[i0:i1]
    return sums, diag


def _counts(n: int, draws: list[np.ndarray]) -> np.ndarray:
    """(n, S) float64: how often each row occurs in each of the S index arrays."""
    w = np.zeros((n, len(draws)))
    for s, idx in enumerate(draws):
        np.add.at(w[:, s], idx, 1.0)
    return w


def kid(gen: np.ndarray, real: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        subset_indices: list[tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and std (ddof 0, as torchmetrics) of :func:`mmd2_unbiased` over seeded
    subsets of size ``min(subset_size, len(gen), len(real))``.

    When the whole kernel matrices cost fewer operations than the per-subset ones ((N_g + N_r)^2 <= 3 S m^2, e.g.
    100 subsets of 1,000 out of 2,000), K_gg, K_rr and K_gr are formed once and each subset's three sums of
    Binkowski et al. eq. 3 are read off them with count matrices (a few large matmuls instead of 3 S small ones);
    otherwise each subset is computed alone. Both give :func:`mmd2_unbiased` of every subset, equal to float64
    round-off (tests/test_metric_arithmetic.py).

    Args:
        gen, real: (N_g, d), (N_r, d) features.
        subsets, subset_size, seed: the subsets drawn by :func:`kid_subsets`.
        subset_indices: explicit (gen indices, real indices) pairs instead (e.g. to reproduce another
            implementation's draws), the two of each pair of one length >= 2.

    Returns:
        (mean, std) over subsets. Range about 0 for equal distributions, lower is better.

    Raises:
        ValueError: fewer than 2 samples in either set, or explicit subsets of unequal or too small sizes.
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    if min(len(g), len(r)) < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(g)} and {len(r)}")
    if subset_indices is None:
        subset_indices = kid_subsets(len(g), len(r), subsets=subsets, subset_size=subset_size, seed=seed)
    m = np.array([len(ig) for ig, _ in subset_indices], np.float64)
    if any(len(ig) != len(ir) or len(ig) < 2 for ig, ir in subset_indices):
        raise ValueError("KID subsets must pair gen and real index arrays of one length >= 2 each")
    if (len(g) + len(r)) ** 2 > 3 * float((m**2).sum()):  # few small subsets of large sets: one at a time
        vals = np.array([mmd2_unbiased(g[ig], r[ir]) for ig, ir in subset_indices])
    else:
        wg = _counts(len(g), [ig for ig, _ in subset_indices])  # (N_g, S)
        wr = _counts(len(r), [ir for _, ir in subset_indices])  # (N_r, S)
        s_gg, t_gg = _subset_kernel_sums(g, g, wg, wg, diagonal=True)
        s_rr, t_rr = _subset_kernel_sums(r, r, wr, wr, diagonal=True)
        s_gr, _ = _subset_kernel_sums(g, r, wg, wr, diagonal=False)
        vals = (s_gg - t_gg + s_rr - t_rr) / (m * (m - 1)) - 2 * s_gr / m**2  # eq. 3 per subset
    return float(np.mean(vals)), float(np.std(vals))


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = (a * a).sum(1)[:, None]
    bb = (b * b).sum(1)[None]
    return np.maximum(aa + bb - 2 * a @ b.T, 0.0)


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest neighbour in x (itself excluded)."""
    d = _sqdist(x, x)
    return np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)


def precision_recall(gen: np.ndarray, real: np.ndarray, k: int = 3) -> dict[str, float]:
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rr, rg = _knn_radii(r, k), _knn_radii(g, k)
    d = _sqdist(g, r)  # (G, R)
    precision = float((d <= rr[None]).any(1).mean())
    recall = float((d.T <= rg[None]).any(1).mean())
    return {"precision": precision, "recall": recall, "k": k}


def density_coverage(gen: np.ndarray, real: np.ndarray, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020, eq. 3-4): open k-NN balls (``<``) around the real samples, as
    the authors' ``prdc`` package (closed balls counted ties as inside: on duplicated features, e.g. copies of
    one image, density came out up to ~5x the reference's). gen (G, d), real (R, d)."""
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rr = _knn_radii(r, k)
    d = _sqdist(g, r)  # (G, R)
    inside = d < rr[None]
    density = float(inside.sum() / (k * len(g)))
    coverage = float((d.min(0) < rr).mean())
    return {"density": density, "coverage": coverage, "k": k}


def prdc_with_spread(gen: np.ndarray, real: np.ndarray, *, k_pr: int = 3, k_dc: int = 5, n_boot: int = 10,
                     seed: int = 0) -> dict[str, float]:
    """Precision, recall, density, coverage and, for each, the std over ``n_boot`` seeded bootstrap resamples
    of the generated set (real set fixed)."""
    out = {**precision_recall(gen, real, k_pr), **density_coverage(gen, real, k_dc)}
    out.pop("k", None)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = np.unique(rng.integers(0, len(gen), len(gen)))  # duplicates would sit at distance 0 of each other
        g = np.asarray(gen)[idx]
        boots.append({**precision_recall(g, real, k_pr), **density_coverage(g, real, k_dc)})
    for key in ("precision", "recall", "density", "coverage"):
        out[f"{key}_std"] = float(np.std([b[key] for b in boots])) if boots else None
    return out


def nearest_train_distance(gen: np.ndarray, train: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """L2 distance (pixels in [0, 1]) of each generated image to its nearest training image: a memorisation
    check (distances near 0 mean copies). gen (G, ...), train (T, ...) uint8 or float."""
    g = np.asarray(gen, np.float64).reshape(len(gen), -1) / 255.0
    out = np.full(len(g), np.inf)
    gg = (g * g).sum(1)
    for i in range(0, len(train), chunk):
        t = np.asarray(train[i:i + chunk], np.float64).reshape(-1, g.shape[1]) / 255.0
        d = gg[:, None] + (t * t).sum(1)[None] - 2 * g @ t.T
        out = np.minimum(out, d.min(1))
    return np.sqrt(np.maximum(out, 0))
