"""Evaluate a bank of images against real data: every number with its provenance.

``EvalContext`` holds the real data, the in-domain classifier and (lazily) the Inception extractor with cached
reference statistics. ``evaluate_images`` turns uint8 images (+ labels for conditional samples) into a metrics
dict; the same function scores the real held-out slice, which gives the floor each number is read against.

Data-parallel (``ctx.dist`` active, ``WORLD_SIZE > 1``): every rank calls the same methods in the same order.
Feature extraction (classifier predictions, Inception features, the reference statistics) is sharded over the
ranks and all-gathered (:class:`~genbench.runtime.distributed.Dist`); rank 0 then computes every metric from
the full feature sets (the values equal a single process's) and writes the reference-statistics cache, the
other ranks get ``None`` back.

Reference subsets: every comparison with real data uses a seeded, class-stratified random subset of the split
(:mod:`genbench.metrics.reference`), the same for every row of a study (seed = the study seed), never the first
N images; with ``out_dir`` set the orders are saved there (``reference_indices.npy`` for the test split,
``heldout_indices.npy`` for the real-data row) and each metric records the seed and the sha256 of its indices.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.data.assets import cache_home
from genbench.data.registry import Dataset
from genbench.io import atomic_savez, atomic_write_bytes, safe_name
from genbench.metrics import generic  # noqa: F401 - registers the built-in metrics
from genbench.metrics.classifier import predict
from genbench.metrics.generic import MIN_FID_RESAMPLES  # noqa: F401 - re-exported
from genbench.metrics.inception import InceptionFeatures
from genbench.metrics.reference import indices_sha256, reference_order, subset_record
from genbench.metrics.registry import Inputs, metrics
from genbench.metrics.scores import bootstrap_fid, feature_stats, frechet_distance
from genbench.runtime.distributed import Dist
REFERENCE_FILE, HELDOUT_FILE = "reference_indices.npy", "heldout_indices.npy"


@dataclass
class EvalContext:
    """Everything needed to score images. ``eval_cfg`` is an :class:`~genbench.studies.config.EvalConfig`;
    ``dist`` the data-parallel context the feature extraction is sharded over (single process by default);
    ``out_dir`` the study folder the subset orders are saved into (None: not saved)."""

    test: Dataset
    train: Dataset
    classifier: torch.nn.Module
    classifier_info: dict
    eval_cfg: object
    seed: int = 42
    log: object = print
    dist: Dist = field(default_factory=Dist)
    out_dir: Path | None = None
    _inception: InceptionFeatures | None = None
    _cache: dict = field(default_factory=dict)

    # -- reference subsets ----------------------------------------------------------------------------------
    def _order(self, name: str, split: Dataset, file: str) -> np.ndarray:
        """The seeded stratified order of ``split`` (:func:`~genbench.metrics.reference.reference_order`),
        computed once and saved as ``out_dir/file`` (rank 0, atomically) when ``out_dir`` is set."""
        if name not in self._cache:
            order = reference_order(split.y.numpy() if split.y is not None else None, len(split), self.seed)
            self._cache[name] = order
            if self.out_dir is not None and self.dist.main:
                buf = io.BytesIO()
                np.save(buf, order)
                atomic_write_bytes(Path(self.out_dir) / file, buf.getvalue())
        return self._cache[name]

    def reference_indices(self, n: int) -> np.ndarray:
        """int64 (n,) indices into the test split: a seeded class-stratified random subset (the first n of the
        saved order), the reference of every Inception and classifier-manifold metric."""
        if n > len(self.test):
            raise ValueError(f"a reference of {n} images from a test split of {len(self.test)}: lower "
                             f"evaluation.n_inception / n_manifold")
        return self._order("test_order", self.test, REFERENCE_FILE)[:n]

    def heldout_indices(self, holdout: Dataset, n: int) -> np.ndarray:
        """int64 (n,) indices into the held-out split for the real-data row, chosen like the reference
        (seeded, class-stratified, saved as ``heldout_indices.npy``); its first m rows are a stratified m-subset,
        so the row's Inception metrics (on its first ``n_inception`` images) are random too."""
        return self._order("heldout_order", holdout, HELDOUT_FILE)[:n]

    def heldout_record(self, indices: np.ndarray) -> dict:
        """The real-data row's subset provenance (for its ``sample_bank`` record)."""
        return subset_record("holdout", indices, self.seed, stratified=True, file=HELDOUT_FILE)

    def reference_record(self, n: int) -> dict:
        return subset_record("test", self.reference_indices(n), self.seed, stratified=True, file=REFERENCE_FILE)

    # -- reference statistics -------------------------------------------------------------------------------
    def classifier_reference(self) -> tuple[np.ndarray, np.ndarray]:
        """Classifier-feature statistics (mu (D,), sigma (D, D), float64) of the whole test split; the first call
        is collective under DDP (sharded prediction), every rank gets the statistics."""
        if "clf_ref" not in self._cache:
            _, feats = predict(self.classifier, self.test.x, dist=self.dist)
            self._cache["clf_feats"] = feats
            self._cache["clf_ref"] = feature_stats(feats)
        return self._cache["clf_ref"]

    def classifier_reference_features(self, n: int) -> np.ndarray:
        """Classifier features of the ``n``-image reference subset (for KID / precision / recall at equal N)."""
        self.classifier_reference()
        return self._cache["clf_feats"][self.reference_indices(min(n, len(self.test)))]

    @property
    def inception(self) -> InceptionFeatures:
        if self._inception is None:
            self._inception = InceptionFeatures(resize_policy=self.eval_cfg.resize,
                                                precision=self.eval_cfg.inception_precision,
                                                backend=getattr(self.eval_cfg, "inception_backend", "auto"))
        return self._inception

    def _read_reference(self, path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The cached reference statistics at ``path``, or None when absent or damaged (then they are computed
        again and the cache rewritten, with a log line)."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                mu, sigma, feats = z["mu"], z["sigma"], z["features"].astype(np.float64)
            d = mu.shape[0] if mu.ndim == 1 else -1
            if not (sigma.shape == (d, d) and feats.shape == (n, d) and np.isfinite(sigma).all()):
                raise ValueError(f"mu {mu.shape}, sigma {sigma.shape}, features {feats.shape}")
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, ValueError...
            self.log(f"[evaluate] reference statistics cache {path} is damaged ({type(e).__name__}); "
                     f"computing them again")
            return None
        return mu, sigma, feats

    def inception_reference(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Inception (mu (2048,), sigma (2048, 2048), features (n, 2048)), float64, of the ``n``-image reference
        subset (:meth:`reference_indices`), cached on disk under a complete key (dataset, split, N, the subset's
        seed and indices sha256, resolution, extractor, backend, resize policy, precision, preprocessing version).

        Under DDP every rank must call it: rank 0 decides whether the cache holds the statistics; if not, the
        features are extracted sharded and rank 0 writes the cache. Only rank 0 gets the tuple, the other
        ranks get None (their own caches, possibly on other nodes, are neither read nor written)."""
        idx = self.reference_indices(n)
        key = {"dataset": self.test.name, "split": "test", "n": n, "resolution": list(self.test.shape),
               "subset_seed": self.seed, "subset_sha256": indices_sha256(idx), **self.inception.key()}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_home() / "stats" / f"{safe_name(self.test.name, 'dataset name')}-test-{n}-{digest}.npz"
        got = self._read_reference(path, n) if self.dist.main else None
        if self.dist.broadcast(got is not None):
            return got if self.dist.main else None
        self.log(f"[evaluate] Inception reference statistics: {n} random test images (cached after this run)")
        feats = self.inception(self.test.x[torch.as_tensor(idx)], log=self.log, dist=self.dist)
        if not self.dist.main:
            return None
        mu, sigma = feature_stats(feats)
        atomic_savez(path, mu=mu, sigma=sigma, features=feats.astype(np.float32),
                     key=np.array(json.dumps(key, sort_keys=True)))
        return mu, sigma, feats.astype(np.float32).astype(np.float64)


def evaluate_images(ctx: EvalContext, images: torch.Tensor, labels: torch.Tensor | None, *,
                    what: str) -> dict | None:
    """Score images with every registered metric that applies (:mod:`genbench.metrics.registry`; the built-ins
    are :mod:`genbench.metrics.generic`).

    Args:
        ctx: evaluation context.
        images: uint8 (N, C, H, W); under DDP the same full set on every rank.
        labels: int64 (N,) conditioning labels (or real labels for real data); None or all -1 if unconditional.
        what: name used in log lines.

    Returns:
        dict of metrics, each a dict with ``value`` (and ``std`` where a spread exists) and provenance fields;
        ``eval_seconds`` is the wall time of the whole call. Under DDP (``ctx.dist`` active) every rank must
        call it: the features are extracted sharded and gathered, rank 0 computes the metrics and gets the
        dict, the other ranks get None.
    """
    t0 = time.perf_counter()
    n = len(images)
    x = Inputs(ctx=ctx, images=images, labels=labels, conditional=labels is not None and bool((labels >= 0).all()),
               n=n, m=min(ctx.eval_cfg.n_inception, n))
    todo = [mt for mt in metrics() if mt.applies(x)]
    needs = {need for mt in todo for need in mt.needs}
    # features first (collective under DDP, every rank takes part), then the metrics (rank 0)
    if "classifier" in needs:
        x.probs, x.feats = predict(ctx.classifier, images, dist=ctx.dist)  # on the classifier's device
        x.clf_ref = ctx.classifier_reference()
        x.clf_ref_manifold = ctx.classifier_reference_features(ctx.eval_cfg.n_manifold)
        x.clf_name = f"{ctx.test.name} classifier (test acc {ctx.classifier_info['test_accuracy']:.4f})"
    if "inception" in needs:
        inc_ref = ctx.inception_reference(x.m)
        ctx.log(f"[evaluate] {what}: Inception features of {x.m} images")
        x.feats_i = ctx.inception(images[:x.m], log=ctx.log, dist=ctx.dist)
        if ctx.dist.main:
            x.inc_mu, x.inc_sigma, x.inc_ref = inc_ref
    if not ctx.dist.main:
        return None
    out = {mt.name: mt.compute(x) for mt in todo}
    out["eval_seconds"] = time.perf_counter() - t0
    return out


CURVE_BOOTSTRAP = 10  # bootstrap resamples behind the spread of each quality-vs-compute point


def classifier_fd(ctx: EvalContext, images: torch.Tensor) -> dict | None:
    """The in-domain classifier's Fréchet distance of ``images`` against the whole test split: the
    ``fd_classifier`` of :func:`evaluate_images` (same extractor, same reference statistics), alone, for the
    quality-vs-compute curve. Cheap: one classifier pass and a 128-d Fréchet distance.

    Args:
        ctx: evaluation context; under DDP (``ctx.dist`` active) every rank calls it with the same images.
        images: uint8 (N, C, H, W), N >= 2.

    Returns:
        ``{"value", "std", "spread", "n_generated", "n_reference"}`` (FD in squared feature units, lower is better;
        ``std`` over :data:`CURVE_BOOTSTRAP` bootstrap resamples of the generated features, reference fixed) on
        rank 0; None on the other ranks. Formula: Heusel et al. 2017, eq. 6, on the classifier's features.
    """
    _, feats = predict(ctx.classifier, images, dist=ctx.dist)
    ref = ctx.classifier_reference()
    if not ctx.dist.main:
        return None
    return {"value": frechet_distance(*feature_stats(feats), *ref),
            "std": bootstrap_fid(feats, ref, n_boot=CURVE_BOOTSTRAP, seed=ctx.seed),
            "spread": f"bootstrap std, {CURVE_BOOTSTRAP} resamples of the generated set, reference fixed",
            "n_generated": len(images), "n_reference": len(ctx.test)}
