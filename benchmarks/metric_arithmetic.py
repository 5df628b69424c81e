"""Metric arithmetic of issue 26, old against new side by side in one run, on random features.

- KID (100 seeded subsets of min(1000, N/2), as ``genbench score``): the per-subset loop of 3 matmuls each against
  whole kernel matrices read with count matrices; at Inception width (N x 2048) and classifier width (N/2 x 128).
- precision / recall / density / coverage with 10 bootstrap resamples: distances recomputed per call (5 matrices
  per resample) against three matrices shared by the values, the k-NN radii and the resamples.
- the Inception FID bootstrap (20 resamples): at N <= 2048 both run one n_u x n_u eigendecomposition per resample
  (n_u ~ 0.63 N, already the smallest exact form); at ``--fid-large-n`` (> 2048) the old code resampled by hand
  (covariance, D x D ``eigh`` of the reference and a D x D eigvalsh per resample), the new one stays n_u x n_u
  while 0.63 N <= D.
- whether float32 eigenvalues would do for the FID bootstrap: their error against the bootstrap std, on Gaussian
  features with a 1/i and a 1/i^2 covariance spectrum (``--skip-float32`` to leave it out).

Each line gives old seconds, new seconds, their ratio and how far the values are apart. The old implementations
are the references kept in tests/test_metric_arithmetic.py (imported from there, unchanged).

    .venv/bin/python benchmarks/metric_arithmetic.py [--n 2000] [--d 2048] [--fid-large-n 3000] [--skip-float32]

Seconds depend on the BLAS threads: run with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set as you mean to compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_metric_arithmetic import (  # noqa: E402 - the references live beside their tests
    _old_bootstrap_fid_values, _old_kid, _old_prdc_with_spread)

from genbench.metrics.manifold import kid, prdc_with_spread  # noqa: E402
from genbench.metrics.scores import bootstrap_fid_values, feature_stats  # noqa: E402


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def _row(name: str, t_old: float, t_new: float, agreement: str) -> None:
    print(f"| {name} | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.1f}x | {agreement} |", flush=True)


def _features(n: int, d: int, rng: np.random.Generator, *, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return rng.normal(size=(n, d)) * scale + shift


def kid_rows(n: int, d: int, rng: np.random.Generator) -> None:
    for n_k, d_k in ((n, d), (n // 2, 128)):
        gen, real = _features(n_k, d_k, rng, scale=0.35, shift=0.02), _features(n_k, d_k, rng, scale=0.3)
        size = max(2, min(1000, n_k // 2))
        old, t_old = _timed(lambda: _old_kid(gen, real, subsets=100, subset_size=size, seed=0))
        new, t_new = _timed(lambda: kid(gen, real, subsets=100, subset_size=size, seed=0))
        rel = max(abs(a - b) / abs(b) for a, b in zip(new, old))
        _row(f"KID {n_k} x {d_k}, 100 subsets of {size}", t_old, t_new, f"mean, std rel. diff {rel:.1e}")


def prdc_rows(n: int, d: int, rng: np.random.Generator) -> None:
    gen, real = _features(n, d, rng, scale=1.1, shift=0.02), _features(n, d, rng)
    old, t_old = _timed(lambda: _old_prdc_with_spread(gen, real, k_pr=3, k_dc=5, n_boot=10, seed=0))
    new, t_new = _timed(lambda: prdc_with_spread(gen, real, k_pr=3, k_dc=5, n_boot=10, seed=0))
    _row(f"precision/recall/density/coverage {n} x {d}, 10 resamples", t_old, t_new,
         "all 8 values equal (==)" if new == old else f"DIFFER: {old} vs {new}")


def fid_rows(n: int, d: int, large_n: int, rng: np.random.Generator) -> None:
    real_stats = feature_stats(_features(max(n, d + 1), d, rng))
    for n_f, n_boot in ((n, 20), (large_n, 3)) if large_n else ((n, 20),):
        gen = _features(n_f, d, rng, scale=1.1, shift=0.02)
        old, t_old = _timed(lambda: _old_bootstrap_fid_values(gen, real_stats, n_boot=n_boot, seed=0))
        new, t_new = _timed(lambda: bootstrap_fid_values(gen, real_stats, n_boot=n_boot, seed=0))
        rel = float(np.max(np.abs(new - old) / old))
        _row(f"FID bootstrap {n_f} x {d}, {n_boot} resamples", t_old, t_new, f"max rel. diff {rel:.1e}")


def float32_check(n: int, d: int, rng: np.random.Generator, n_boot: int = 10) -> None:
    """The n_u x n_u matrices of the FID bootstrap, eigenvalues in float64 and float32 (scipy ``evr``)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    print("\nfloat32 eigenvalues in the FID bootstrap (Gaussian features, covariance spectrum 18 / i^a):")
    print("| a | FID | bootstrap std (float64) | max abs error of a resample's FID (float32) | error / std | "
          "eig s float64 | eig s float32 |\n|---|---|---|---|---|---|---|")
    for a in (1.0, 2.0):
        lam = 18 * np.arange(1, d + 1) ** -a
        mu = rng.uniform(0, 0.5, d)
        real = (rng.normal(size=(n, d)) * np.sqrt(lam)) @ q.T + mu
        gen = (rng.normal(size=(n, d)) * np.sqrt(lam * rng.uniform(0.6, 1.4, d))) @ q.T + mu + rng.normal(size=d) * 0.05
        mu_r, s_r = feature_stats(real)
        y = gen - gen.mean(0)
        p = y @ s_r
        k = p @ y.T
        draws = np.random.default_rng(1)
        v64, v32, t64, t32 = [], [], 0.0, 0.0
        for _ in range(n_boot):  # the arithmetic of bootstrap_fid_values, n_u x n_u route
            w = np.bincount(draws.integers(0, n, n), minlength=n).astype(np.float64)
            u = np.flatnonzero(w)
            delta = w[u] @ y[u] / n
            pu = p[u] @ delta
            dw = np.sqrt(w[u] / (n - 1))
            m = dw[:, None] * (k[np.ix_(u, u)] - pu[:, None] - pu[None] + delta @ s_r @ delta) * dw[None]
            m = (m + m.T) / 2
            e64, dt64 = _timed(lambda: np.linalg.eigvalsh(m))
            e32, dt32 = _timed(lambda: scipy.linalg.eigh(m.astype(np.float32), eigvals_only=True, driver="evr",
                                                          check_finite=False))
            t64, t32 = t64 + dt64, t32 + dt32
            diff = gen.mean(0) + delta - mu_r
            base = diff @ diff + (w[u] @ (y[u] ** 2).sum(1) - n * delta @ delta) / (n - 1) + np.trace(s_r)
            v64.append(base - 2 * np.sqrt(np.clip(e64, 0, None)).sum())
            v32.append(base - 2 * np.sqrt(np.clip(e32.astype(np.float64), 0, None)).sum())
        v64, v32 = np.array(v64), np.array(v32)
        err = float(np.abs(v64 - v32).max())
        print(f"| {a:g} | {v64.mean():.2f} | {v64.std():.4f} | {err:.2e} | {err / v64.std():.2f} | "
              f"{t64 / n_boot:.3f} | {t32 / n_boot:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="features per set")
    ap.add_argument("--d", type=int, default=2048, help="feature width (Inception pool3: 2048)")
    ap.add_argument("--fid-large-n", type=int, default=3000, help="an N > d for the FID bootstrap (0: skip)")
    ap.add_argument("--skip-float32", action="store_true", help="leave out the float32 eigenvalue check")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if os.environ.get(k)}
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, {os.cpu_count()} CPUs, threads {threads or 'default'}")
    print("| computation | old s | new s | old / new | agreement |\n|---|---|---|---|---|")
    kid_rows(args.n, args.d, rng)
    prdc_rows(args.n, args.d, rng)
    fid_rows(args.n, args.d, args.fid_large_n, rng)
    if not args.skip_float32:
        float32_check(args.n, args.d, rng)


if __name__ == "__main__":
    main()
