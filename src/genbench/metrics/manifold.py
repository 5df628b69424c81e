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

Arithmetic (issue 26): KID reads every subset's sums off the whole kernel matrices (a few large matmuls instead of
3 per subset); precision/recall/density/coverage and their bootstrap share one real-real, one gen-gen and one
gen-real distance matrix (a resample selects rows and columns). Both equal the per-subset / per-resample code they
replaced (tests/test_metric_arithmetic.py keeps it; benchmarks/metric_arithmetic.py times the two).
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
        k = a[i0:i1] @ b.T  # (i1 - i0, n_b); symmetric (syrk, half the work) when b is a, in one block
        k /= d
        k += 1
        k = k * k * k  # ** 3 rounds within an ulp of this and takes 3x longer (pow per element)
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


def _row_ids(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of x (n, d) are equal (-0.0 counted as 0.0): (ids (n,), first (n_distinct,)) with
    ``x[i] == x[first[ids[i]]]``. Rows are grouped by a seeded random projection that numpy sums row by row (equal
    rows give bitwise equal sums, whereas a BLAS product's rounding depends on where the row falls in its blocks)
    and the grouping is confirmed row by row; should two different rows ever share a sum, a sort of the rows'
    bytes (~0.75 s at 4,000 x 2,048, 20x slower) decides."""
    h = (x * np.random.default_rng(0).standard_normal(x.shape[1])).sum(1)
    _, first, ids = np.unique(h, return_index=True, return_inverse=True)
    rep = first[ids]  # the first row of each row's group
    dup = np.flatnonzero(rep != np.arange(len(x)))
    if np.array_equal(x[dup], x[rep[dup]]):
        return ids, first
    x = np.ascontiguousarray(x + 0.0)  # + 0.0 turns -0.0 into 0.0
    _, first, ids = np.unique(x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel(),
                              return_index=True, return_inverse=True)
    return ids, first


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n_a, n_b), float64: ||a||^2 + ||b||^2 - 2 a.b in one matmul, clipped at 0."""
    out = (a * a).sum(1)[:, None] + (b * b).sum(1)[None]
    out -= (2 * a) @ b.T  # (2a) b^T = 2 (a b^T) exactly; a general matmul even when a is b
    return np.maximum(out, 0.0, out=out)


def _self_sqdist(x: np.ndarray) -> np.ndarray:
    """Squared distances of the rows of x (n, d) to each other (n, n), float64, from x x^T (a symmetric product:
    half the multiplications of :func:`_sqdist`), clipped at 0, and 0 on the diagonal exactly (each point's own
    distance, k-NN index 0)."""
    sq = (x * x).sum(1)
    out = sq[:, None] + sq[None]  # (n, n)
    gram = x @ x.T
    gram *= 2
    out -= gram  # symmetric wherever x x^T came out symmetric (numpy's syrk path)
    np.maximum(out, 0.0, out=out)
    np.fill_diagonal(out, 0.0)
    return out


def _distances(g: np.ndarray, r: np.ndarray, *, gen_gen: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The squared-distance matrices gen-real (G, R), real-real (R, R) and (``gen_gen``) gen-gen (G, G), each
    computed once.

    Where rows repeat (copies of one image, within or across the sets), the three are cut out of one symmetric
    matrix over the distinct rows instead: then copies sit at distance 0 exactly and every pair of row contents has
    one value wherever it appears. Computed separately, a copy's distances come out 0 or a rounding residue (~1e-14,
    depending on where its row falls in the BLAS blocks), and a zero k-NN radius, the open balls of
    density/coverage or a tie between d(copy, y) and a radius d(original, y) would turn on that residue."""
    x = np.concatenate([g, r])
    ids, first = _row_ids(x)
    if len(first) == len(x):  # no copies: no pair value appears twice
        return _sqdist(g, r), _self_sqdist(r), _self_sqdist(g) if gen_gen else None
    d = _self_sqdist(x[first])  # (U, U) over the distinct rows
    d = np.triu(d) + np.triu(d, 1).T  # symmetric exactly
    ig, ir = ids[:len(g)], ids[len(g):]
    return d[np.ix_(ig, ir)], d[np.ix_(ir, ir)], d[np.ix_(ig, ig)] if gen_gen else None


def _kth(d: np.ndarray, k: int | list[int]) -> np.ndarray:
    """The k-th smallest entry of each row of d (k = 0 is the smallest); a list of k gives (len(k), rows)."""
    return np.partition(d, k, axis=1)[:, k].T if isinstance(k, list) else np.partition(d, k, axis=1)[:, k]


def _precision_recall_from(d_gr: np.ndarray, rr: np.ndarray, rg: np.ndarray) -> tuple[float, float]:
    """Kynkaenniemi et al. 2019, eq. 1-2 from the (G, R) squared distances and the k-NN radii of both sets."""
    return float((d_gr <= rr[None]).any(1).mean()), float((d_gr <= rg[:, None]).any(0).mean())


def _density_coverage_from(d_gr: np.ndarray, rr: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020, eq. 3-4 from the (G, R) squared distances and the real k-NN radii (open balls)."""
    return float((d_gr < rr[None]).sum() / (k * len(d_gr))), float((d_gr.min(0) < rr).mean())


def precision_recall(gen: np.ndarray, real: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019, eq. 1-2), closed k-NN balls (``<=``).

    Args:
        gen, real: (G, d), (R, d) features, more than k rows each.
        k: neighbours (the k-th nearest other sample sets each ball's radius).

    Returns:
        ``{"precision", "recall", "k"}``; each in [0, 1], higher is better.
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    d_gr, d_rr, d_gg = _distances(g, r)
    precision, recall = _precision_recall_from(d_gr, _kth(d_rr, k), _kth(d_gg, k))
    return {"precision": precision, "recall": recall, "k": k}


def density_coverage(gen: np.ndarray, real: np.ndarray, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020, eq. 3-4): open k-NN balls (``<``) around the real samples, as
    the authors' ``prdc`` package (closed balls counted ties as inside: on duplicated features, e.g. copies of
    one image, density came out up to ~5x the reference's). gen (G, d), real (R, d).

    Returns:
        ``{"density", "coverage", "k"}``: density >= 0 (about 1 for matched sets), coverage in [0, 1]; higher
        is better.
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    d_gr, d_rr, _ = _distances(g, r, gen_gen=False)
    density, coverage = _density_coverage_from(d_gr, _kth(d_rr, k), k)
    return {"density": density, "coverage": coverage, "k": k}


def prdc_with_spread(gen: np.ndarray, real: np.ndarray, *, k_pr: int = 3, k_dc: int = 5, n_boot: int = 10,
                     seed: int = 0) -> dict[str, float]:
    """Precision, recall (k = ``k_pr``), density, coverage (k = ``k_dc``) and, for each, the std over ``n_boot``
    seeded bootstrap resamples of the generated set (real set fixed).

    The three squared-distance matrices (real-real, gen-gen, gen-real) are computed once. A resample keeps the
    distinct drawn generated rows (``np.unique``: duplicates would sit at distance 0 of each other and shrink
    their own k-NN radii), selects their rows and columns of the gen-gen and gen-real matrices and takes the
    generated k-NN radii from the selected submatrix; the real radii do not depend on the resample. The values
    equal :func:`precision_recall` and :func:`density_coverage` called on each resample (tests).

    Args:
        gen, real: (G, d), (R, d) features, more than max(k_pr, k_dc) rows each.
        k_pr, k_dc: neighbours for precision/recall and for density/coverage.
        n_boot: resamples (0: no spreads, the ``*_std`` are None).
        seed: seed of the resamples.

    Returns:
        ``precision``, ``recall``, ``density``, ``coverage`` and ``<name>_std`` (ddof 0) for each.
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    d_gr, d_rr, d_gg = _distances(g, r)  # (G, R), (R, R), (G, G)
    rr_pr, rr_dc = _kth(d_rr, [k_pr, k_dc])  # real radii, shared by every resample
    del d_rr
    inside_pr = (d_gr <= rr_pr[None]).any(1)  # (G,) in the union of real balls: precision of any row subset
    inside_dc = (d_gr < rr_dc[None]).sum(1)  # (G,) real balls holding each row: density of any row subset
    out = {"precision": float(inside_pr.mean()),
           "recall": float((d_gr <= _kth(d_gg, k_pr)[:, None]).any(0).mean()),
           "density": float(inside_dc.sum() / (k_dc * len(g))), "coverage": float((d_gr.min(0) < rr_dc).mean())}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = np.unique(rng.integers(0, len(g), len(g)))  # distinct rows, sorted (see above)
        sub = d_gr[idx]  # (G_b, R)
        rg = _kth(d_gg[np.ix_(idx, idx)], k_pr)  # generated radii within the resample
        boots.append({"precision": float(inside_pr[idx].mean()), "recall": float((sub <= rg[:, None]).any(0).mean()),
                      "density": float(inside_dc[idx].sum() / (k_dc * len(idx))),
                      "coverage": float((sub.min(0) < rr_dc).mean())})
    for key in ("precision", "recall", "density", "coverage"):
        out[f"{key}_std"] = float(np.std([b[key] for b in boots])) if boots else None
    return out


def nearest_rows(a: np.ndarray, b: np.ndarray, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``a``'s nearest row of ``b`` by Euclidean distance: (distance float64 (A,), index int64 (A,) into
    ``b``). a (A, D), b (B, D) any real dtype (computed in float64), B >= 1; ``b`` is read in chunks of ``chunk`` rows,
    so memory is A x chunk doubles. Ties go to the lowest index."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    out, idx = np.full(len(a), np.inf), np.zeros(len(a), np.int64)
    aa = (a * a).sum(1)
    for i in range(0, len(b), chunk):
        t = np.asarray(b[i:i + chunk], np.float64).reshape(-1, a.shape[1])
        d = aa[:, None] + (t * t).sum(1)[None] - 2 * a @ t.T
        j = d.argmin(1)
        dj = d[np.arange(len(a)), j]
        better = dj < out
        out[better], idx[better] = dj[better], i + j[better]
    return np.sqrt(np.maximum(out, 0)), idx


def nearest_train(gen: np.ndarray, train: np.ndarray, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Each generated image's nearest training image: (L2 distance float64 (G,), pixels in [0, 1]; index int64
    (G,) into ``train``). gen (G, ...), train (T, ...) uint8 values 0..255, compared in chunks of ``chunk``
    training images (:func:`nearest_rows`)."""
    g = np.asarray(gen, np.float64).reshape(len(gen), -1) / 255.0
    t = np.asarray(train).reshape(len(train), -1)
    return nearest_rows(g, _Scaled(t), chunk)


class _Scaled:
    """A uint8 (T, D) array read in float64 chunks divided by 255 (the whole set is never widened at once)."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, sl) -> np.ndarray:
        return np.asarray(self.x[sl], np.float64) / 255.0


def nearest_train_distance(gen: np.ndarray, train: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """L2 distance (pixels in [0, 1]) of each generated image to its nearest training image: a memorisation
    check (distances near 0 mean copies). gen (G, ...), train (T, ...) uint8 (:func:`nearest_train`)."""
    return nearest_train(gen, train, chunk)[0]
