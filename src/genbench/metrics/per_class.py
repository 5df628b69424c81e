"""Per-class metrics of a conditional model (issue 28): how well each requested class is drawn, in the in-domain
classifier's feature space (128-d), against the test images of that class.

For class k, the generated images asked for class k (n_k of them, about N / K) are compared with the class-k images
of the test split:

- ``fd``: Fréchet distance (Heusel et al. 2017, eq. 6) against the statistics of all class-k test images, with the
  bootstrap std of the generated side (Efron 1979; :func:`genbench.metrics.scores.bootstrap_fid`);
- ``kid``: KID (Binkowski et al. 2018, eq. 4; unbiased MMD^2, cubic polynomial kernel), mean and std over subsets,
  against the first n_k class-k images of the seeded reference order (equal sizes);
- ``precision``, ``recall`` (k = 3, Kynkäänniemi et al. 2019) with bootstrap stds, against the same n_k images.

Why not Inception: an intra-class Inception FID at n_k images has a covariance of rank at most n_k - 1 in 2,048
dimensions, singular below n_k = 2,049 (the quick profile's N = 2,000 over 10 classes gives 200): it is computed only
where every class holds more than 2,048 generated images (and as many reference images), else the entry says why
it is absent. The real-data row is scored the same way (its labels are the true classes), so it gives each class's
floor at the same per-class N.
"""

from __future__ import annotations

import numpy as np

from genbench.metrics.manifold import kid, prdc_with_spread
from genbench.metrics.registry import Inputs, Metric, register_metric
from genbench.metrics.scores import bootstrap_fid, feature_stats, frechet_distance, frechet_distance_to

MIN_PER_CLASS = 10
"""Fewest generated images of a class for its per-class metrics (k-NN radii need more than k = 3 neighbours, KID
subsets two images each); a class with fewer gets ``null`` entries and says so."""
INCEPTION_MIN_PER_CLASS = 2049
"""Per-class N above the Inception feature dimension (2,048), below which the intra-class FID is singular."""
PER_CLASS_BOOTSTRAP = 10


def _class_rows(ctx, k: int) -> np.ndarray:
    """Test-split rows of class k in the seeded reference order (so the first n of them are a seeded subset)."""
    y_all = ctx.test.y.numpy()
    order = ctx.reference_indices(len(y_all))
    y = y_all[order]
    return order[y == k]


def per_class(x: Inputs) -> dict:
    """The per-class entry of one image set (module docstring): ``classes`` (one dict per class: ``class``,
    ``name``, ``n_generated``, ``n_reference``, ``fd`` / ``fd_std``, ``kid`` / ``kid_std``, ``precision`` /
    ``precision_std``, ``recall`` / ``recall_std``; ``null`` where the class has too few images), the ``worst``
    class by ``fd``, and ``value`` = the mean of ``fd`` over the classes (squared classifier-feature units; lower
    is better) with ``std`` = the std of that mean from the per-class bootstrap stds (independent classes)."""
    ctx = x.ctx
    test_feats = ctx.classifier_test_features()
    labels = x.labels.numpy()
    names = list(getattr(ctx.test, "class_names", None) or [])
    rows, fds, fd_vars = [], [], []
    for k in range(ctx.test.num_classes):
        gen = x.feats[labels == k]
        ref_rows = _class_rows(ctx, k)
        entry = {"class": k, "name": names[k] if k < len(names) else str(k), "n_generated": int(len(gen)),
                 "n_reference": int(len(ref_rows))}
        if len(gen) < MIN_PER_CLASS or len(ref_rows) < MIN_PER_CLASS:
            rows.append({**entry, "fd": None, "kid": None, "precision": None, "recall": None,
                         "note": f"fewer than {MIN_PER_CLASS} generated or reference images of this class"})
            continue
        ref_all = test_feats[ref_rows]
        stats = feature_stats(ref_all)
        fd = frechet_distance(*feature_stats(gen), *stats) if len(gen) > gen.shape[1] else \
            frechet_distance_to(gen, *stats)
        fd_std = bootstrap_fid(gen, stats, n_boot=PER_CLASS_BOOTSTRAP, seed=ctx.seed + k)
        n = min(len(gen), len(ref_rows))
        ref_n = ref_all[:n]
        km, ks = kid(gen[:n], ref_n, subsets=50, subset_size=max(2, n // 2), seed=ctx.seed + k)
        pr = prdc_with_spread(gen[:n], ref_n, k_pr=3, k_dc=5, n_boot=PER_CLASS_BOOTSTRAP, seed=ctx.seed + k)
        rows.append({**entry, "fd": fd, "fd_std": fd_std, "kid": km, "kid_std": ks, "n_compared": n,
                     "precision": pr["precision"], "precision_std": pr["precision_std"],
                     "recall": pr["recall"], "recall_std": pr["recall_std"]})
        fds.append(fd)
        fd_vars.append(fd_std ** 2)
    scored = [r for r in rows if r["fd"] is not None]
    worst = max(scored, key=lambda r: r["fd"]) if scored else None
    return {"value": float(np.mean(fds)) if fds else None,
            "std": float(np.sqrt(np.sum(fd_vars)) / len(fd_vars)) if fd_vars else None,
            "spread": f"per class: bootstrap std of the generated side ({PER_CLASS_BOOTSTRAP} resamples) for FD, "
                      f"precision and recall; std over 50 subsets for KID; value = mean FD over classes, its std "
                      f"from the per-class stds (classes independent)",
            "classes": rows, "worst": None if worst is None else {"class": worst["class"], "name": worst["name"],
                                                                   "fd": worst["fd"]},
            "n_generated": x.n, "extractor": x.clf_name + " penultimate (128-d)",
            "inception_fid_per_class": _inception_per_class(x),
            "direction": "lower is better (fd, kid); higher is better (precision, recall)"}


def _inception_per_class(x: Inputs) -> dict:
    """Intra-class Inception FID where every class holds more than 2,048 of the m Inception-scored images on both
    sides (generated and reference subset), else the reason it is absent."""
    if x.feats_i is None or x.inc_ref is None:
        return {"value": None, "note": "no Inception features in this evaluation"}
    gen_y = x.labels.numpy()[:x.m]
    ref_y = x.ctx.test.y.numpy()[x.ctx.reference_indices(x.m)]
    counts = [min(int((gen_y == k).sum()), int((ref_y == k).sum())) for k in range(x.ctx.test.num_classes)]
    if min(counts) < INCEPTION_MIN_PER_CLASS:
        return {"value": None, "note": f"not reported: {min(counts)} Inception-scored images in the smallest class; "
                                       f"an intra-class Inception FID needs more than 2,048 per class (its "
                                       f"covariance has rank <= n_k - 1 in 2,048 dimensions)"}
    fids = [frechet_distance(*feature_stats(x.feats_i[gen_y == k]), *feature_stats(x.inc_ref[ref_y == k]))
            for k in range(len(counts))]
    return {"value": float(np.mean(fids)), "per_class": fids, "n_per_class": counts}


register_metric(Metric(
    "per_class", ("classifier", "labels"), per_class, "lower", "bootstrap std per class",
    applies=lambda x: x.conditional and x.ctx.test.num_classes > 1,
    doc="per-class FD, KID, precision and recall on the in-domain classifier's features, against the test images "
        "of each class (Heusel et al. 2017; Binkowski et al. 2018; Kynkäänniemi et al. 2019)"))
