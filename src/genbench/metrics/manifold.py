"""Sample-set metrics beyond FID, on features (generated, real), float64 where it matters.

- KID (Binkowski et al. 2018, eq. 2-3): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over seeded random subsets; the kernel arithmetic is torchmetrics'
  ``poly_mmd``. Range: about 0 for equal distributions (can be slightly negative), lower is better.
- Improved precision and recall (Kynkaenniemi et al. 2019, eq. 1-2) with k = 3: precision = fraction of
  generated samples inside the union of real k-NN balls; recall = the converse. Range [0, 1], higher is better.
- Density and coverage (Naeem et al. 2020, eq. 3-4) with k = 5. Density is unbounded above (1 ~ matched),
  coverage in [0, 1]; higher is better.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.image.kid import poly_mmd


def kid(gen: np.ndarray, real: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
        ) -> tuple[float, float]:
    """KID mean and std over ``subsets`` seeded subsets of size ``min(subset_size, len(gen), len(real))``."""
    rng = np.random.default_rng(seed)
    g = torch.as_tensor(np.asarray(gen, np.float64))
    r = torch.as_tensor(np.asarray(real, np.float64))
    m = min(subset_size, len(g), len(r))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(g)} and {len(r)}")
    vals = [float(poly_mmd(r[rng.choice(len(r), m, replace=False)], g[rng.choice(len(g), m, replace=False)]))
            for _ in range(subsets)]
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
    g, r = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rr = _knn_radii(r, k)
    d = _sqdist(g, r)  # (G, R)
    inside = d <= rr[None]
    density = float(inside.sum() / (k * len(g)))
    coverage = float((d.min(0) <= rr).mean())
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
