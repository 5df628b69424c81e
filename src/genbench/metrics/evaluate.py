"""Evaluate a bank of images against real data: every number with its provenance.

``EvalContext`` holds the real data, the in-domain classifier and (lazily) the Inception extractor with cached
reference statistics. ``evaluate_images`` turns uint8 images (+ labels for conditional samples) into a metrics
dict; the same function scores the real held-out slice, which gives the floor each number is read against.

Data-parallel (``ctx.dist`` active, ``WORLD_SIZE > 1``): every rank calls the same methods in the same order.
Feature extraction (classifier predictions, Inception features, the reference statistics) is sharded over the
ranks and all-gathered (:class:`~genbench.runtime.distributed.Dist`); rank 0 then computes every metric from
the full feature sets (the values equal a single process's) and writes the feature cache, the other ranks get
``None`` back.

Feature cache (:mod:`genbench.metrics.feature_cache`): the features of real images (the Inception reference subset
with its statistics, the classifier features of the whole test split, the real-data row's classifier and
Inception features, the train subset of :meth:`EvalContext.train_features`) are computed once per complete key and
read back by every later run, ``genbench score`` and ``genbench evaluate``; ``metrics.json`` records each lookup
(``provenance.feature_cache``). Generated images are always extracted.

Feature spaces (:mod:`genbench.metrics.extractors`): :meth:`EvalContext.extractor` builds a registered extractor
(Inception, the classifier) against this context or loads one of the study's own (``evaluation.extractors``,
TorchScript / ONNX); :meth:`EvalContext.space_features` and :meth:`EvalContext.space_reference` extract and cache any
of them the way the Inception features always were, and every own extractor gets ``fd_<name>`` and ``kid_<name>``.

Reference subsets: every comparison with real data uses a seeded, class-stratified random subset of the split
(:mod:`genbench.metrics.reference`), the same for every row of a study (seed = the study seed), never the first
N images; with ``out_dir`` set the orders are saved there (``reference_indices.npy`` for the test split,
``heldout_indices.npy`` for the real-data row) and each metric records the seed and the sha256 of its indices.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.data.assets import cache_home
from genbench.data.registry import Dataset
from genbench.io import atomic_write_bytes
from genbench.metrics import generic  # noqa: F401 - registers the built-in metrics
from genbench.metrics import per_class  # noqa: F401 - registers the per-class metrics of conditional models
from genbench.metrics import memorisation  # noqa: F401 - registers the memorisation metric (FD train/test, C_T)
from genbench.metrics.classifier import predict
from genbench.metrics.extractors import Extractor, get_extractor
from genbench.metrics.feature_cache import FOLDER, FeatureCache, images_sha256, weights_sha256
from genbench.metrics.generic import MIN_FID_RESAMPLES, space_metrics  # noqa: F401 - re-exported
from genbench.metrics.file_extractor import load_file_extractor
from genbench.metrics.inception import InceptionFeatures
from genbench.metrics.reference import indices_sha256, reference_order, subset_record
from genbench.metrics.registry import Inputs, metrics
from genbench.metrics.scores import bootstrap_fid, feature_stats, frechet_distance
from genbench.runtime.distributed import Dist
REFERENCE_FILE, HELDOUT_FILE, TRAIN_FILE = "reference_indices.npy", "heldout_indices.npy", "train_indices.npy"
PREDICT_BATCH = 1000  # the classifier's batch (predict's default), part of its feature-cache key
Source = tuple[str, np.ndarray]  # (split name, int64 (N,) indices into that split): where real images came from


@dataclass
class EvalContext:
    """Everything needed to score images. ``eval_cfg`` is an :class:`~genbench.studies.config.EvalConfig`;
    ``dist`` the data-parallel context the feature extraction is sharded over (single process by default);
    ``out_dir`` the study folder the subset orders are saved into (None: not saved). Features of real images go
    through :attr:`feature_cache` (``<GENBENCH_HOME>/features``, read at first use)."""

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
    _features: FeatureCache | None = None

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

    def train_indices(self, n: int) -> np.ndarray:
        """int64 (n,) indices into the training split, chosen like the reference (seeded, class-stratified,
        saved as ``train_indices.npy``): the train subset memorisation metrics compare against.

        Raises:
            ValueError: ``n`` exceeds the training split.
        """
        if n > len(self.train):
            raise ValueError(f"a train subset of {n} images from a training split of {len(self.train)}")
        return self._order("train_order", self.train, TRAIN_FILE)[:n]

    def heldout_record(self, indices: np.ndarray) -> dict:
        """The real-data row's subset provenance (for its ``sample_bank`` record)."""
        return subset_record("holdout", indices, self.seed, stratified=True, file=HELDOUT_FILE)

    def reference_record(self, n: int) -> dict:
        return subset_record("test", self.reference_indices(n), self.seed, stratified=True, file=REFERENCE_FILE)

    # -- features of real images, through the feature cache ---------------------------------------------------
    @property
    def feature_cache(self) -> FeatureCache:
        """The on-disk feature cache (``<GENBENCH_HOME>/features``), with this context's lookups."""
        if self._features is None:
            self._features = FeatureCache(cache_home() / FOLDER, log=self.log)
        return self._features

    @property
    def predict_batch(self) -> int:
        """The classifier's batch (part of its feature-cache key)."""
        return PREDICT_BATCH

    @property
    def extractors(self) -> dict[str, Extractor]:
        """The study's own extractors (``evaluation.extractors``: TorchScript or ONNX files), loaded and probed on two
        test images at first use, by name; empty when the study names none."""
        if "extractors" not in self._cache:
            cfgs = getattr(self.eval_cfg, "extractors", None) or ()
            self._cache["extractors"] = {c.name: load_file_extractor(c, self.test.x[:2], log=self.log) for c in cfgs}
        return self._cache["extractors"]

    def extractor(self, space: str) -> Extractor:
        """The feature space ``space``: a registered extractor (``inception``, ``classifier``; built against this
        context, :mod:`genbench.metrics.extractors`) or one of the study's :attr:`extractors`.

        Raises:
            GenbenchError: no such extractor.
        """
        if ("extractor", space) not in self._cache:
            own = getattr(self.eval_cfg, "extractors", None) or ()
            self._cache[("extractor", space)] = self.extractors[space] if any(c.name == space for c in own) else \
                get_extractor(space).build(self)
        return self._cache[("extractor", space)]

    def extractor_key(self, space: str) -> dict:
        """The extractor part of a feature-cache key of ``space`` (module docstring of the feature cache)."""
        if space == "inception":
            inc = self.inception
            return {**inc.key(), "batch": inc.batch, "device": torch.device(getattr(inc, "device", "cpu")).type}
        if space != "classifier":
            return self.extractor(space).key()
        if "clf_weights" not in self._cache:
            self._cache["clf_weights"] = weights_sha256(self.classifier)
        device = next(self.classifier.parameters()).device.type
        return {"extractor": "in-domain classifier", "weights_sha256": self._cache["clf_weights"],
                "batch": PREDICT_BATCH, "device": device}

    def _key(self, space: str, images: torch.Tensor, source: Source) -> dict:
        split, indices = source
        return {"dataset": self.test.name, "split": split, "n": len(images), "image_shape": list(images.shape[1:]),
                "indices_sha256": indices_sha256(indices), "images_sha256": images_sha256(images),
                **self.extractor_key(space)}

    def classifier_outputs(self, images: torch.Tensor, source: Source | None = None
                           ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The in-domain classifier's outputs for ``images``.

        Args:
            images: uint8 (N, C, H, W); under DDP the same full set on every rank (every rank calls this).
            source: for real images, (split name, int64 (N,) indices into that split): the outputs are read from
                (or written to) the feature cache. None: generated images, always computed.

        Returns:
            (softmax float64 (N, K), penultimate features float64 (N, D)); (None, None) on a rank > 0 when the
            cache held them.
        """
        if source is None:
            return predict(self.classifier, images, batch=PREDICT_BATCH, dist=self.dist)
        n = len(images)
        got = self.feature_cache.get(
            f"classifier features of {n} {source[0]} images", self._key("classifier", images, source),
            lambda: dict(zip(("probs", "features"), predict(self.classifier, images, batch=PREDICT_BATCH,
                                                              dist=self.dist))),
            shapes={"probs": (n, None), "features": (n, None)}, dist=self.dist)
        return (None, None) if got is None else (got["probs"], got["features"])

    def inception_features(self, images: torch.Tensor, source: Source | None = None) -> np.ndarray | None:
        """Inception pool3 features of ``images``: :meth:`space_features` in space ``inception``.

        Returns:
            float64 (N, 2048) (float32 network outputs widened); None on a rank > 0 when the cache held them.
        """
        return self.space_features("inception", images, source)

    def space_features(self, space: str, images: torch.Tensor, source: Source | None = None) -> np.ndarray | None:
        """Features of ``images`` in the feature space ``space`` (:meth:`extractor`).

        Args:
            space: ``inception`` or one of the study's extractors (the classifier's go through
                :meth:`classifier_outputs`, which gives its softmax too).
            images: uint8 (N, C, H, W); under DDP the same full set on every rank (every rank calls this).
            source: as in :meth:`classifier_outputs` (real images: through the feature cache).

        Returns:
            float64 (N, D); None on a rank > 0 when the cache held them.
        """
        ext = self.extractor(space)
        if source is None:
            return ext.features(images, self.dist)
        n = len(images)
        got = self.feature_cache.get(
            f"{ext.title} features of {n} {source[0]} images", self._key(space, images, source),
            lambda: {"features": ext.features(images, self.dist)}, shapes={"features": (n, ext.dim)}, dist=self.dist)
        return None if got is None else got["features"]

    def train_features(self, n: int, space: str = "inception") -> np.ndarray | None:
        """Features of the ``n``-image train subset (:meth:`train_indices`), through the feature cache: what a
        memorisation metric compares generated features against (FD to train beside FD to test).

        Args:
            n: images in the subset (its first n rows of the seeded stratified order).
            space: ``inception`` (pool3, D = 2048) or ``classifier`` (penultimate, D = 128).

        Returns:
            float64 (n, D); under DDP (every rank calls it) None on a rank > 0 when the cache held them.

        Raises:
            ValueError: unknown space, or ``n`` exceeds the training split.
        """
        if space not in ("inception", "classifier"):
            raise ValueError(f"train features in space {space!r}: choose inception or classifier")
        if ("train", space, n) not in self._cache:
            idx = self.train_indices(n)
            images = self.train.x[torch.as_tensor(idx)]
            self._cache[("train", space, n)] = self.inception_features(images, ("train", idx)) \
                if space == "inception" else self.classifier_outputs(images, ("train", idx))[1]
        return self._cache[("train", space, n)]

    # -- reference statistics -------------------------------------------------------------------------------
    def classifier_reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Classifier-feature statistics (mu (D,), sigma (D, D), float64) of the whole test split, the features
        through the feature cache. The first call is collective under DDP (sharded prediction on a cache miss);
        rank 0 gets the statistics, another rank gets them on a miss and None on a hit."""
        if "clf_ref" not in self._cache:
            _, feats = self.classifier_outputs(self.test.x, ("test", np.arange(len(self.test), dtype=np.int64)))
            self._cache["clf_feats"] = feats
            self._cache["clf_ref"] = None if feats is None else feature_stats(feats)
        return self._cache["clf_ref"]

    def classifier_test_features(self) -> np.ndarray | None:
        """Classifier features float64 (N_test, D) of the whole test split, in split order (rows match
        ``test.y``); None where :meth:`classifier_reference` is."""
        self.classifier_reference()
        return self._cache["clf_feats"]

    def classifier_reference_features(self, n: int) -> np.ndarray | None:
        """Classifier features of the ``n``-image reference subset (for KID / precision / recall at equal N);
        None where :meth:`classifier_reference` is."""
        self.classifier_reference()
        feats = self._cache["clf_feats"]
        return None if feats is None else feats[self.reference_indices(min(n, len(self.test)))]

    @property
    def inception(self) -> InceptionFeatures:
        if self._inception is None:
            self._inception = InceptionFeatures(resize_policy=self.eval_cfg.resize,
                                                precision=self.eval_cfg.inception_precision,
                                                backend=getattr(self.eval_cfg, "inception_backend", "auto"),
                                                log=self.log)
        return self._inception

    def inception_reference(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Inception (mu (2048,), sigma (2048, 2048), features (n, 2048)), float64, of the ``n``-image reference
        subset (:meth:`reference_indices`), through the feature cache (key: dataset, split, N, the subset's indices
        and pixels sha256, extractor, backend, resize policy, precision, preprocessing version, batch, device):
        :meth:`space_reference` in space ``inception``."""
        return self.space_reference("inception", n)

    def space_reference(self, space: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(mu (D,), sigma (D, D), features (n, D)), float64, of the ``n``-image reference subset
        (:meth:`reference_indices`) in the feature space ``space``, through the feature cache.

        Under DDP every rank must call it: rank 0 decides whether the cache holds the statistics; if not, the
        features are extracted sharded and rank 0 writes the cache. Only rank 0 gets the tuple, the other
        ranks get None (their own caches, possibly on other nodes, are neither read nor written)."""
        if (space, "ref", n) not in self._cache:
            idx = self.reference_indices(n)
            images = self.test.x[torch.as_tensor(idx)]
            ext = self.extractor(space)
            d = ext.dim

            def compute() -> dict:
                feats = ext.features(images, self.dist)
                mu, sigma = feature_stats(feats) if self.dist.main else (None, None)
                return {"features": feats, **({"mu": mu, "sigma": sigma} if self.dist.main else {})}

            got = self.feature_cache.get(f"{ext.title} reference statistics of {n} test images",
                                         self._key(space, images, ("test", idx)), compute,
                                         shapes={"features": (n, d), "mu": (d,), "sigma": (d, d)}, dist=self.dist)
            self._cache[(space, "ref", n)] = (got["mu"], got["sigma"], got["features"]) if self.dist.main else None
        return self._cache[(space, "ref", n)]


def evaluate_images(ctx: EvalContext, images: torch.Tensor, labels: torch.Tensor | None, *,
                    what: str, source: Source | None = None) -> dict | None:
    """Score images with every registered metric that applies (:mod:`genbench.metrics.registry`; the built-ins
    are :mod:`genbench.metrics.generic`).

    Args:
        ctx: evaluation context.
        images: uint8 (N, C, H, W); under DDP the same full set on every rank.
        labels: int64 (N,) conditioning labels (or real labels for real data); None or all -1 if unconditional.
        what: name used in log lines.
        source: for real images (the real-data row), (split name, int64 (N,) indices into that split) they were
            taken from: their features are then read from (or written to) the feature cache. None: generated
            images, always extracted.

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
        x.probs, x.feats = ctx.classifier_outputs(images, source)  # on the classifier's device
        x.clf_ref = ctx.classifier_reference()
        x.clf_ref_manifold = ctx.classifier_reference_features(ctx.eval_cfg.n_manifold)
        x.clf_name = f"{ctx.test.name} classifier (test acc {ctx.classifier_info['test_accuracy']:.4f})"
    if "inception" in needs:
        inc_ref = ctx.inception_reference(x.m)
        if source is None:
            ctx.log(f"[evaluate] {what}: Inception features of {x.m} images")
        x.feats_i = ctx.inception_features(images[:x.m], None if source is None else (source[0], source[1][:x.m]))
        if ctx.dist.main:
            x.inc_mu, x.inc_sigma, x.inc_ref = inc_ref
    if "train_features" in needs:  # collective under DDP on a cache miss, like the reference features
        x.train_feats = ctx.train_features(min(len(ctx.test), len(ctx.train)), "classifier")
    for name in ctx.extractors:  # the study's own feature spaces: the Inception protocol (m vs the m-subset)
        ref = ctx.space_reference(name, x.m)
        if source is None:
            ctx.log(f"[evaluate] {what}: {name} features of {x.m} images")
        gen = ctx.space_features(name, images[:x.m], None if source is None else (source[0], source[1][:x.m]))
        if ctx.dist.main:
            ext = ctx.extractor(name)
            x.spaces[name] = {"gen": gen, "mu": ref[0], "sigma": ref[1], "ref": ref[2], "describe": ext.describe,
                              "key": ext.key()}
            todo += list(space_metrics(name))
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
