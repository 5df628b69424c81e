"""Pure metric functions on features or class probabilities. Argument order is (generated, real).

All accumulate in float64. Each function states its range and direction.
"""

from __future__ import annotations

import numpy as np


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D)."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N>=2, D), got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     sqrt_sigma2: np.ndarray | None = None) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6):

        ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})

    in float64. The trace term uses Tr((S1 S2)^{1/2}) = sum sqrt(eig(S1^{1/2} S2 S1^{1/2})), exact for
    symmetric PSD covariances: two symmetric eigendecompositions (~1 s at 2048-d) instead of a general
    ``scipy.linalg.sqrtm`` (~10-20 s here). Checked against ``sqrtm`` in the tests. ``sqrt_sigma2`` (the PSD
    square root of sigma2, e.g. of a fixed reference) may be passed to skip one decomposition.
    Range [0, inf), lower is better; 0 iff the two Gaussians are equal.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if s1.shape != s2.shape or mu1.shape != mu2.shape or s1.shape[0] != mu1.shape[0]:
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    diff = mu1 - mu2
    # Tr((S1 S2)^1/2) = Tr((R2 S1 R2)^1/2) with R2 = S2^1/2 (similar matrices share eigenvalues).
    r2 = _sqrtm_psd((s2 + s2.T) / 2) if sqrt_sigma2 is None else sqrt_sigma2
    m = r2 @ s1 @ r2
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(max(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def fid_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    return frechet_distance(*feature_stats(gen), *feature_stats(real))


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016, sec. 4): exp(E_x KL(p(y|x) || p(y))), computed on ``splits``
    consecutive chunks; returns (mean, std) over chunks. probs (N, K) rows summing to 1.

    Range [1, K], higher is better; 1 when every p(y|x) equals the marginal (e.g. a uniform classifier).
    """
    p = np.asarray(probs, dtype=np.float64)
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = np.sum(part * (np.log(part + 1e-12) - np.log(py + 1e-12)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def conditional_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Accuracy of a real-data classifier on label-conditioned samples ("GAN-test", Shmelkov et al. 2018):
    overall and per class. Range [0, 1], higher is better."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    per = [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan")
           for c in range(num_classes)]
    return {"overall": float((pred == labels).mean()), "per_class": per}


def mode_coverage(pred: np.ndarray, num_classes: int, min_fraction: float = 0.1) -> dict:
    """Class histogram of samples by the classifier: modes covered (classes holding at least
    ``min_fraction`` of a uniform share) and KL(histogram || uniform) in nats (0 = perfectly balanced,
    log K = a single class: mode collapse)."""
    hist = np.bincount(np.asarray(pred), minlength=num_classes).astype(np.float64)
    q = hist / hist.sum()
    covered = int((q >= min_fraction / num_classes).sum())
    nz = q > 0
    kl = float(np.sum(q[nz] * np.log(q[nz] * num_classes)))
    return {"histogram": hist.astype(int).tolist(), "modes_covered": covered, "kl_to_uniform_nats": kl}


def mode_coverage_spread(pred: np.ndarray, num_classes: int, n_boot: int = 20, seed: int = 0,
                         min_fraction: float = 0.1) -> dict:
    """Bootstrap spread (Efron 1979) of :func:`mode_coverage`: std (ddof 0) of the modes covered and of the KL over
    ``n_boot`` seeded resamples (n draws with replacement) of the predictions.

    Returns:
        ``modes_covered_std`` (classes), ``kl_to_uniform_nats_std`` (nats), ``resamples``.
    """
    p = np.asarray(pred)
    rng = np.random.default_rng(seed)
    runs = [mode_coverage(p[rng.integers(0, len(p), len(p))], num_classes, min_fraction) for _ in range(n_boot)]
    return {"modes_covered_std": float(np.std([r["modes_covered"] for r in runs])),
            "kl_to_uniform_nats_std": float(np.std([r["kl_to_uniform_nats"] for r in runs])), "resamples": n_boot}


def _pairwise_l2(x: np.ndarray, max_n: int, seed: int) -> np.ndarray:
    """The (n, n) L2 distances between up to ``max_n`` seeded images of ``x`` (N, ...), pixels scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    f = np.asarray(x, np.float64).reshape(len(x), -1)
    if f.max() > 1.5:
        f = f / 255.0
    if len(f) > max_n:
        f = f[rng.choice(len(f), max_n, replace=False)]
    sq = (f * f).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * f @ f.T, 0))


def mean_pairwise_l2(x: np.ndarray, max_n: int = 1000, seed: int = 0) -> float:
    """Mean pairwise L2 distance between images (N, ...) scaled to [0, 1] per pixel, on up to ``max_n``
    seeded samples. A diversity measure: 0 = all identical."""
    d = _pairwise_l2(x, max_n, seed)
    return float(d[np.triu_indices(len(d), 1)].mean())


def mean_pairwise_l2_with_spread(x: np.ndarray, max_n: int = 1000, seed: int = 0, n_boot: int = 20) -> dict:
    """:func:`mean_pairwise_l2` and its bootstrap std: the images are resampled with replacement (``n_boot``
    seeded resamples) and the mean is taken over the pairs of distinct draws (i != j as draws; a pair of two draws
    of one image adds a 0 distance, as a duplicate sample would), so the spread is that of the U-statistic over the
    sampled images (Efron 1979), from the one distance matrix.

    Returns:
        ``value`` (pixels in [0, 1] units, L2), ``std`` (same units), ``n_generated`` (images used),
        ``resamples``.
    """
    d = _pairwise_l2(x, max_n, seed)
    n = len(d)
    value = float(d[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0
    rng = np.random.default_rng(seed + 1)
    boots = []
    for _ in range(n_boot if n > 1 else 0):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)  # draw counts
        # sum over ordered pairs of distinct draws: w^T D w (D's diagonal is 0), over n (n - 1) ordered pairs
        boots.append(float(w @ d @ w) / (n * (n - 1)))
    return {"value": value, "std": float(np.std(boots)) if boots else None, "n_generated": n, "resamples": n_boot}


def frechet_distance_to(gen: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> float:
    """Frechet distance (Heusel et al. 2017, eq. 6) of the Gaussian fit to features ``gen`` (n, D) from a fixed
    reference N(mu_r, sigma_r), without forming the generated covariance when n <= D.

    With A the centred features, S1 = A^T A / (n - 1) (``np.cov``), Tr(S1) = ||A||_F^2 / (n - 1) and the nonzero
    eigenvalues of S2^{1/2} S1 S2^{1/2} = B^T B / (n - 1) (B = A S2^{1/2}) are those of B B^T / (n - 1) =
    A S2 A^T / (n - 1), an n x n matrix: no matrix square root at all, and at n = 400, D = 2048 about 20x
    cheaper than :func:`frechet_distance` (used when n > D). Equal to it within float64 rounding (tests).

    Args:
        gen: (n >= 2, D) features.
        mu_r, sigma_r: reference mean (D,) and covariance (D, D).

    Returns:
        FID, range [0, inf), lower is better.
    """
    g = np.asarray(gen, np.float64)
    n, d = g.shape
    if n < 2 or mu_r.shape != (d,) or sigma_r.shape != (d, d):
        raise ValueError(f"frechet_distance_to: features {g.shape}, reference mu {mu_r.shape} sigma {sigma_r.shape}")
    if n > d:
        return frechet_distance(*feature_stats(g), mu_r, sigma_r)
    mu = g.mean(0)
    a = g - mu
    m = a @ sigma_r @ a.T / (n - 1)  # (n, n)
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu - mu_r
    tr1 = float((a * a).sum()) / (n - 1)
    return float(max(diff.dot(diff) + tr1 + np.trace(sigma_r) - 2 * np.sqrt(np.clip(ev, 0, None)).sum(), 0.0))


def bootstrap_fid_values(gen: np.ndarray, real_stats: tuple[np.ndarray, np.ndarray], n_boot: int = 20,
                         seed: int = 0) -> np.ndarray:
    """FID (Heusel et al. 2017, eq. 6) of ``n_boot`` seeded bootstrap resamples (n draws with replacement) of the
    generated features against fixed reference statistics.

    A resample is the multiset {x_i with count w_i} over its n_u distinct rows (about 0.63 n); its covariance is
    S_w = sum_i w_i (x_i - mu_w)(x_i - mu_w)^T / (n - 1) = A^T A with A = D_w (Y_u - 1 delta^T) (D_w =
    diag(sqrt(w / (n - 1))), Y = X - c, delta = mu_w - c), so Tr((S_w S_r)^{1/2}) = sum sqrt(eig(A S_r A^T)) =
    sum sqrt(eig(S_r^{1/2} A^T A S_r^{1/2})): the eigenvalues of whichever is smaller,

    - n_u x n_u (expected n_u <= D): D_w (K - u 1^T - 1 u^T + delta^T S_r delta) D_w over the distinct rows, with
      K = Y S_r Y^T and P = Y S_r formed once (u = P delta);
    - D x D (larger n): F^T F with F = A S_r^{1/2}, the square root of the reference covariance formed once (the
      resample-by-hand route took a D x D ``eigh`` of the reference per resample).

    One float64 symmetric eigendecomposition per resample either way (at n = 2,000, D = 2,048 an n_u ~ 1,264 square
    one: already the smallest exact form, ~0.3 s). Float32 eigenvalues would halve it but were measured off by 4-7%
    of the bootstrap std on Gaussian features with a 1/i covariance spectrum and by 12-21x on a 1/i^2 one (the
    square roots of near-zero eigenvalues amplify the float32 rounding; benchmarks/metric_arithmetic.py), so they
    are not used. Equal to resampling and calling :func:`frechet_distance_to` to float64 round-off
    (tests/test_known_answers.py, tests/test_metric_arithmetic.py).

    Args:
        gen: (n >= 2, D) generated features.
        real_stats: reference mean (D,) and covariance (D, D).
        n_boot: resamples.
        seed: seed of the draws (``default_rng(seed).integers(0, n, n)`` per resample).

    Returns:
        float64 (n_boot,) FIDs, each in [0, inf).
    """
    rng = np.random.default_rng(seed)
    mu_r, sigma_r = real_stats
    x = np.asarray(gen, np.float64)
    n, d = x.shape
    draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    c = x.mean(0)
    y = x - c
    yy = (y * y).sum(1)
    tr_r = np.trace(sigma_r)
    small = (1 - np.exp(-1)) * n <= d  # expected distinct rows of a resample, against D
    if small:
        p = y @ sigma_r  # (n, D)
        k = p @ y.T  # (n, n)
    else:
        r_sqrt = _sqrtm_psd((sigma_r + sigma_r.T) / 2)  # (D, D), once
    out = []
    for idx in draws:
        w = np.bincount(idx, minlength=n).astype(np.float64)
        u_idx = np.flatnonzero(w)
        wu = w[u_idx]
        delta = wu @ y[u_idx] / n  # mu_w - c
        dw = np.sqrt(wu / (n - 1))
        if small:
            u = p[u_idx] @ delta
            m = k[np.ix_(u_idx, u_idx)]  # (n_u, n_u) copy, then in place
            m -= u[:, None]
            m -= u[None, :]
            m += delta @ sigma_r @ delta
            m *= dw[:, None]
            m *= dw[None, :]
        else:
            f = (dw[:, None] * (y[u_idx] - delta)) @ r_sqrt  # (n_u, D)
            m = f.T @ f  # (D, D)
        m += m.T
        m /= 2
        ev = np.linalg.eigvalsh(m)
        tr1 = (wu @ yy[u_idx] - n * delta @ delta) / (n - 1)  # sum w ||y - delta||^2 / (n - 1)
        diff = c + delta - mu_r
        out.append(max(diff @ diff + tr1 + tr_r - 2 * np.sqrt(np.clip(ev, 0, None)).sum(), 0.0))
    return np.array(out)


def bootstrap_fid_both(gen: np.ndarray, ref: np.ndarray, ref_stats: tuple[np.ndarray, np.ndarray],
                       n_boot: int = 20, seed: int = 0) -> dict:
    """The FID spread when the reference is itself a sample (a subset of the test split): the generated features
    are resampled against the fixed reference statistics, then the reference features against the fixed generated
    statistics (the Frechet distance is symmetric in its two Gaussians, so :func:`bootstrap_fid_values` serves both),
    and the two independent parts add in variance (first-order delta method): std = sqrt(std_gen^2 + std_ref^2).

    Args:
        gen: (n, D) generated features; ref: (n_r, D) the reference subset's features; ref_stats: their (mu, sigma).
        n_boot: resamples of each side; seed: the generated side's draws (the reference's: seed + 1).

    Returns:
        ``std`` (FID units), ``std_generated``, ``std_reference``, ``resamples``.
    """
    sg = float(np.std(bootstrap_fid_values(gen, ref_stats, n_boot, seed)))
    sr = float(np.std(bootstrap_fid_values(ref, feature_stats(gen), n_boot, seed + 1)))
    return {"std": float(np.hypot(sg, sr)), "std_generated": sg, "std_reference": sr, "resamples": n_boot}


def bootstrap_fid(gen: np.ndarray, real_stats: tuple[np.ndarray, np.ndarray], n_boot: int = 20,
                  seed: int = 0) -> float:
    """Std (ddof 0) of the Frechet distance over ``n_boot`` bootstrap resamples (n draws with replacement) of the
    generated features, seeded, against the fixed reference statistics: the spread due to the finite generated
    sample (Efron 1979). The reference's own sampling error is not included (it is shared by every row).
    See :func:`bootstrap_fid_values`."""
    return float(np.std(bootstrap_fid_values(gen, real_stats, n_boot, seed)))


def fid_between(gen: np.ndarray, real: np.ndarray) -> float:
    """FID (Heusel et al. 2017, eq. 6) between two feature sets, exact, without a D x D matrix square root.

    With centred features A (n1, D), B (n2, D) and S1 = A^T A / (n1 - 1), S2 = B^T B / (n2 - 1):
    Tr((S1 S2)^{1/2}) = ||A B^T||_* / sqrt((n1 - 1)(n2 - 1)) (nuclear norm: the singular values of A B^T are the
    square roots of the eigenvalues of A S2' A^T, S2' = B^T B), so the trace term is one symmetric eigendecomposition
    of an min(n1, n2)-square matrix.
    Used when both sets are no larger than D (else :func:`frechet_distance` on the statistics). Range [0, inf),
    lower is better."""
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    (n1, d), n2 = g.shape, len(r)
    if n1 < 2 or n2 < 2 or r.shape[1] != d:
        raise ValueError(f"fid_between: features {g.shape} and {r.shape}")
    if max(n1, n2) > d:
        return frechet_distance(*feature_stats(g), *feature_stats(r))
    a, b = g - g.mean(0), r - r.mean(0)
    diff = g.mean(0) - r.mean(0)
    cross = a @ b.T  # (n1, n2); its singular values are the square roots of the eigenvalues of cross cross^T
    gram = cross @ cross.T if n1 <= n2 else cross.T @ cross
    nuclear = np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0, None)).sum()  # ~3x faster than svd
    tr = float((a * a).sum()) / (n1 - 1) + float((b * b).sum()) / (n2 - 1)
    return float(max(diff.dot(diff) + tr - 2 * nuclear / np.sqrt((n1 - 1) * (n2 - 1)), 0.0))


def fid_infinity(gen: np.ndarray, real: np.ndarray, *, points: int = 8, min_fraction: float = 0.25,
                 seed: int = 0) -> dict:
    """FID-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them",
    sec. 3.1): FID_N is close to linear in 1/N, FID_N = FID_inf + slope / N, so FID is computed at ``points``
    sizes N evenly spaced in [min_fraction * n, n], a least-squares line is fitted in 1/N, and its intercept
    (1/N = 0) is FID_inf.

    The paper extrapolates the generated set against reference statistics of 50k images. Here the reference has
    as few images as the generated set, so both are subsampled together (nested seeded random prefixes of each,
    size N against size N): the fit then removes the finite-N bias of both sides to first order.

    Limit: FID_N is linear in 1/N only for N >> D = 2048, so below a few thousand images FID_inf is less biased
    than FID_N but still depends on N: compare it only at the same N. Where the true FID is 0 (real against real)
    it stays above 0 at such N; each evaluation's real-data row (held-out real images scored like a model) gives
    that floor for its dataset and N, measured by the same run.

    Args:
        gen: (n, D) generated features, n >= 8.
        real: (n_r, D) reference features; the sizes run up to min(n, n_r).
        points: number of sizes.
        min_fraction: the smallest size as a fraction of the largest.
        seed: seed of the subset orders.

    Returns:
        dict: ``value`` (the intercept, FID_inf; can be negative), ``std`` (its least-squares standard error,
        FID units; None with fewer than 3 sizes) and ``spread`` (how), ``slope`` (FID x images), ``intercept``,
        ``ns`` (sizes), ``fids`` (FID at each size), ``residual_std`` (of the fit, FID units).
    """
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    n = min(len(g), len(r))
    if n < 8:
        raise ValueError(f"FID-infinity needs at least 8 samples per set, got {len(g)} and {len(r)}")
    ns = np.unique(np.linspace(max(2, int(round(min_fraction * n))), n, points).round().astype(int))
    rng = np.random.default_rng(seed)
    og, orr = rng.permutation(len(g)), rng.permutation(len(r))
    fids = np.array([fid_between(g[og[:k]], r[orr[:k]]) for k in ns])
    (slope, intercept), cov = np.polyfit(1.0 / ns, fids, 1, cov="unscaled")
    resid = fids - (intercept + slope / ns)
    dof = max(len(ns) - 2, 1)
    se = float(np.sqrt(cov[1, 1] * float(resid @ resid) / dof)) if len(ns) > 2 else None
    return {"value": float(intercept), "intercept": float(intercept), "slope": float(slope),
            "ns": ns.tolist(), "fids": fids.tolist(), "residual_std": float(np.std(resid)),
            "std": se, "spread": "standard error of the fitted intercept (ordinary least squares, residual variance "
                                 "over k - 2 degrees of freedom); the nested subsets make the points correlated, so "
                                 "it understates the resampling spread",
            "subsets": "generated and reference subsampled together, N vs N"}
