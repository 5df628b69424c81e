"""The metric arithmetic of issue 26 (distance matrices shared by precision/recall/density/coverage, KID from whole
kernel matrices, the FID bootstrap's routes) against the implementations it replaced, kept here verbatim as the
references (``_old_*``, as of 313d4fc): same inputs, same seeded draws, the same values to float64 round-off, and
the same k-NN counts exactly. ``benchmarks/metric_arithmetic.py`` imports these references to time old against new.
"""

import numpy as np
import pytest


# -- the replaced implementations (genbench.metrics.manifold / scores at 313d4fc), unchanged ------------------
def _old_mmd2_unbiased(gen, real):
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    m, d = g.shape
    k_gg = (g @ g.T / d + 1) ** 3
    k_rr = (r @ r.T / d + 1) ** 3
    k_gr = (g @ r.T / d + 1) ** 3
    within = (k_gg.sum() - np.trace(k_gg) + k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return float(within - 2 * k_gr.sum() / m**2)


def _old_kid(gen, real, *, subsets=100, subset_size=1000, seed=0):
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(g), len(r))
    draws = [(rng.choice(len(g), m, replace=False), rng.choice(len(r), m, replace=False)) for _ in range(subsets)]
    vals = [_old_mmd2_unbiased(g[ig], r[ir]) for ig, ir in draws]
    return float(np.mean(vals)), float(np.std(vals))


def _old_sqdist(a, b):
    aa = (a * a).sum(1)[:, None]
    bb = (b * b).sum(1)[None]
    return np.maximum(aa + bb - 2 * a @ b.T, 0.0)


def _old_knn_radii(x, k):
    d = _old_sqdist(x, x)
    return np.partition(d, k, axis=1)[:, k]


def _old_precision_recall(gen, real, k=3):
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rr, rg = _old_knn_radii(r, k), _old_knn_radii(g, k)
    d = _old_sqdist(g, r)
    precision = float((d <= rr[None]).any(1).mean())
    recall = float((d.T <= rg[None]).any(1).mean())
    return {"precision": precision, "recall": recall, "k": k}


def _old_density_coverage(gen, real, k=5):
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rr = _old_knn_radii(r, k)
    d = _old_sqdist(g, r)
    inside = d < rr[None]
    density = float(inside.sum() / (k * len(g)))
    coverage = float((d.min(0) < rr).mean())
    return {"density": density, "coverage": coverage, "k": k}


def _old_prdc_with_spread(gen, real, *, k_pr=3, k_dc=5, n_boot=10, seed=0):
    out = {**_old_precision_recall(gen, real, k_pr), **_old_density_coverage(gen, real, k_dc)}
    out.pop("k", None)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = np.unique(rng.integers(0, len(gen), len(gen)))
        g = np.asarray(gen)[idx]
        boots.append({**_old_precision_recall(g, real, k_pr), **_old_density_coverage(g, real, k_dc)})
    for key in ("precision", "recall", "density", "coverage"):
        out[f"{key}_std"] = float(np.std([b[key] for b in boots])) if boots else None
    return out


def _old_bootstrap_fid_values(gen, real_stats, n_boot=20, seed=0):
    from genbench.metrics.scores import frechet_distance_to

    rng = np.random.default_rng(seed)
    mu_r, sigma_r = real_stats
    x = np.asarray(gen, np.float64)
    n, d = x.shape
    draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    if n > d:
        return np.array([frechet_distance_to(x[idx], mu_r, sigma_r) for idx in draws])
    c = x.mean(0)
    y = x - c
    p = y @ sigma_r
    k = p @ y.T
    yy = (y * y).sum(1)
    tr_r = np.trace(sigma_r)
    out = []
    for idx in draws:
        w = np.bincount(idx, minlength=n).astype(np.float64)
        u_idx = np.flatnonzero(w)
        wu = w[u_idx]
        delta = wu @ y[u_idx] / n
        u = p[u_idx] @ delta
        sq = delta @ sigma_r @ delta
        m = k[np.ix_(u_idx, u_idx)] - u[:, None] - u[None, :] + sq
        dw = np.sqrt(wu / (n - 1))
        m = dw[:, None] * m * dw[None, :]
        ev = np.linalg.eigvalsh((m + m.T) / 2)
        tr1 = (wu @ yy[u_idx] - n * delta @ delta) / (n - 1)
        diff = c + delta - mu_r
        out.append(max(diff @ diff + tr1 + tr_r - 2 * np.sqrt(np.clip(ev, 0, None)).sum(), 0.0))
    return np.array(out)


# -- KID ------------------------------------------------------------------------------------------------------
def _features(n, d, seed, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


@pytest.mark.parametrize("n_gen,n_real,subsets,size", [(300, 300, 40, 150), (300, 260, 25, 100), (120, 90, 10, 90)])
def test_kid_from_whole_kernel_matrices_equals_the_subset_loop(n_gen, n_real, subsets, size):
    """Every one of these takes the whole-matrix route ((N_g + N_r)^2 <= 3 S m^2); the per-subset MMD^2 values
    agree with the old loop to float64 round-off, so the mean and the std over subsets do too."""
    from genbench.metrics.manifold import kid

    gen, real = _features(n_gen, 64, 1, 1.1, 0.05), _features(n_real, 64, 2)
    assert (n_gen + n_real) ** 2 <= 3 * subsets * min(size, n_gen, n_real) ** 2
    mean, std = kid(gen, real, subsets=subsets, subset_size=size, seed=7)
    old_mean, old_std = _old_kid(gen, real, subsets=subsets, subset_size=size, seed=7)
    assert mean == pytest.approx(old_mean, rel=1e-10) and std == pytest.approx(old_std, rel=1e-10)


def test_kid_subset_values_equal_mmd2_unbiased_one_by_one():
    """Explicit subsets with repeated indices (counted as the old loop counted them: as separate samples), both
    routes: the whole-matrix one (many subsets) and the per-subset one (one small subset of large sets)."""
    from genbench.metrics.manifold import kid

    gen, real = _features(300, 64, 3, 0.9), _features(300, 64, 4, 1.0, 0.1)
    rng = np.random.default_rng(0)
    draws = [(rng.integers(0, 300, 200), rng.integers(0, 300, 200)) for _ in range(12)]
    vals = [_old_mmd2_unbiased(gen[ig], real[ir]) for ig, ir in draws]
    mean, std = kid(gen, real, subset_indices=draws)
    assert mean == pytest.approx(np.mean(vals), rel=1e-10) and std == pytest.approx(np.std(vals), rel=1e-10)
    one = [draws[0]]  # (300 + 300)^2 > 3 * 200^2: the per-subset route, the old arithmetic exactly
    assert kid(gen, real, subset_indices=one) == (vals[0], 0.0)
    with pytest.raises(ValueError):
        kid(gen, real, subset_indices=[(np.arange(5), np.arange(4))])


def test_kid_at_inception_width_with_row_blocks():
    """d = 2,048 (Inception): the old values; and kernel row blocks smaller than the set (the memory bound at large
    N) give the block-free sums."""
    from genbench.metrics.manifold import _counts, _subset_kernel_sums, kid, kid_subsets

    gen, real = _features(200, 2048, 5, 0.3), _features(200, 2048, 6, 0.35, 0.02)
    new, old = kid(gen, real, subsets=8, subset_size=100, seed=1), _old_kid(gen, real, subsets=8, subset_size=100, seed=1)
    np.testing.assert_allclose(new, old, rtol=1e-10)
    draws = kid_subsets(200, 200, subsets=8, subset_size=100, seed=1)
    wg, wr = _counts(200, [ig for ig, _ in draws]), _counts(200, [ir for _, ir in draws])
    for a, b, wa, wb, diagonal in ((gen, gen, wg, wg, True), (gen, real, wg, wr, False)):
        whole = _subset_kernel_sums(a, b, wa, wb, diagonal=diagonal)
        blocked = _subset_kernel_sums(a, b, wa, wb, diagonal=diagonal, block_bytes=8 * 200 * 37)  # 37-row blocks
        np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-13)
        if diagonal:
            np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-13)
    k = (gen[draws[0][0]] @ gen[draws[0][0]].T / 2048 + 1) ** 3
    whole = _subset_kernel_sums(gen, gen, wg, wg, diagonal=True)
    assert whole[0][0] == pytest.approx(k.sum(), rel=1e-13) and whole[1][0] == pytest.approx(np.trace(k), rel=1e-13)


# -- precision / recall / density / coverage ------------------------------------------------------------------
@pytest.mark.parametrize("dim,scale,shift", [(64, 1.1, 0.1), (64, 0.7, 0.4), (8, 1.0, 0.0)])
def test_prdc_with_spread_equals_the_old_per_resample_calls(dim, scale, shift):
    """Shared distance matrices and per-row counts give exactly (==) the values and bootstrap spreads of calling
    precision_recall and density_coverage afresh on every resample, same seed, same resample indices."""
    from genbench.metrics.manifold import density_coverage, precision_recall, prdc_with_spread

    gen, real = _features(300, dim, dim, scale, shift), _features(280, dim, dim + 1)
    new = prdc_with_spread(gen, real, k_pr=3, k_dc=5, n_boot=8, seed=3)
    assert new == _old_prdc_with_spread(gen, real, k_pr=3, k_dc=5, n_boot=8, seed=3)
    for k in (3, 5):
        assert precision_recall(gen, real, k) == _old_precision_recall(gen, real, k)
        assert density_coverage(gen, real, k) == _old_density_coverage(gen, real, k)


def _exact_sqdist(a, b, _sqdist=_old_sqdist):
    """The old distances with every tie a rounding residue could break settled exactly: equal rows at 0, and one
    value per pair of row contents (from a symmetric matrix over the distinct rows)."""
    x = np.concatenate([a, b])
    uniq, inv = np.unique(x, axis=0, return_inverse=True)
    d = _sqdist(uniq, uniq)  # the old arithmetic (bound at definition: the test patches _old_sqdist)
    d = np.triu(d, 1) + np.triu(d, 1).T
    return d[np.ix_(inv[:len(a)], inv[len(a):])]


def test_prdc_with_spread_on_duplicated_and_tied_features(monkeypatch):
    """Small-integer features (every distance exact, many equal to a k-NN radius): exactly the old values. Copies
    of one image within and across the sets (a collapsed generator; zero k-NN radii): exactly the old code given
    distances with the rounding residue of copies settled (0 between copies, one value per pair of rows); the old
    code itself left copies at 0 or ~1e-14 depending on where a row fell in the BLAS blocks, so its own answer
    moved with the resample's row positions."""
    import sys

    from genbench.metrics.manifold import _distances, density_coverage, precision_recall, prdc_with_spread

    rng = np.random.default_rng(11)
    real = rng.integers(0, 3, size=(150, 4)).astype(np.float64)
    gen = rng.integers(0, 3, size=(140, 4)).astype(np.float64)
    for k_pr, k_dc in ((3, 5), (5, 3), (4, 4)):
        assert prdc_with_spread(gen, real, k_pr=k_pr, k_dc=k_dc, n_boot=6, seed=1) == \
            _old_prdc_with_spread(gen, real, k_pr=k_pr, k_dc=k_dc, n_boot=6, seed=1)
    copies = np.concatenate([_features(100, 64, 12), np.repeat(_features(10, 64, 13), 6, axis=0)])
    real_c = np.concatenate([_features(120, 64, 14), np.repeat(copies[100:103], 4, axis=0)])
    d_gr, d_rr, d_gg = _distances(copies, real_c)
    assert (d_gg[100:106, 100:106] == 0).all() and (d_gr[100:106, 120:124] == 0).all() and (d_rr[120:124, 120:124] == 0).all()
    assert (np.diagonal(d_rr) == 0).all() and d_gr[:100].min() > 0
    perm = np.random.default_rng(0).permutation(len(copies))  # copies land elsewhere in the BLAS blocks
    main = ("precision", "recall", "density", "coverage")
    assert {k: prdc_with_spread(copies[perm], real_c, n_boot=0)[k] for k in main} == \
        {k: prdc_with_spread(copies, real_c, n_boot=0)[k] for k in main}
    monkeypatch.setattr(sys.modules[__name__], "_old_sqdist", _exact_sqdist)
    for g, r in ((copies, real_c), (real_c, copies), (gen, real)):
        for k_pr, k_dc in ((3, 5), (5, 3), (4, 4)):
            assert prdc_with_spread(g, r, k_pr=k_pr, k_dc=k_dc, n_boot=6, seed=1) == \
                _old_prdc_with_spread(g, r, k_pr=k_pr, k_dc=k_dc, n_boot=6, seed=1)
        assert precision_recall(g, r, 3) == _old_precision_recall(g, r, 3)
        assert density_coverage(g, r, 5) == _old_density_coverage(g, r, 5)


def test_prdc_without_resamples_reports_no_spread():
    from genbench.metrics.manifold import prdc_with_spread

    out = prdc_with_spread(_features(50, 8, 1), _features(50, 8, 2), n_boot=0)
    assert out == _old_prdc_with_spread(_features(50, 8, 1), _features(50, 8, 2), n_boot=0)
    assert out["precision_std"] is None


# -- the FID bootstrap ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d", [(40, 64), (60, 64), (90, 64), (300, 64)])
def test_bootstrap_fid_values_equal_the_old_routes(n, d):
    """n <= D: the old n x n multiset route, the same arithmetic; D < n <= D / 0.63: now the n_u x n_u route
    (the old one resampled by hand through a D x D matrix with D - n_u + 1 rounding-noise eigenvalues: rel 1e-6);
    larger n: the D x D route with the reference's square root formed once."""
    from genbench.metrics.scores import bootstrap_fid_values, feature_stats

    rng = np.random.default_rng(n)
    real_stats = feature_stats(rng.normal(size=(500, d)))
    gen = rng.normal(size=(n, d)) * 1.2 + 0.1
    new = bootstrap_fid_values(gen, real_stats, n_boot=6, seed=4)
    old = _old_bootstrap_fid_values(gen, real_stats, n_boot=6, seed=4)
    np.testing.assert_allclose(new, old, rtol=1e-12 if n <= d else 1e-6)
    assert np.std(new) > 0
