"""The feature-extractor registry: one :class:`Extractor` per feature space that FD, KID and PRDC are measured in.

Anchor: torch-fidelity's feature-extractor registry and dgm-eval (Stein et al. 2023, "Exposing flaws of generative
model evaluation metrics", which found that Inception ranks modern models poorly and recommends DINOv2 ViT-L/14).
A verdict that only one feature space supports should say so, so the report ranks the models in every space the
study has (:mod:`genbench.metrics.agreement`).

Built-ins, registered here and built against an evaluation context (they reuse the context's own code; nothing is
implemented twice):

- ``inception``: Inception-v3 pool3 (2048-d) of :mod:`genbench.metrics.inception`, the context's
  :class:`~genbench.metrics.inception.InceptionFeatures` (resize policy, precision and backend from the study);
- ``classifier``: the in-domain classifier's penultimate features (128-d), :func:`genbench.metrics.classifier.predict`
  with the context's classifier; they feed ``fd_classifier``, ``kid_classifier`` and ``prdc_classifier``.

User extractors come from a TorchScript or ONNX file named in a study's ``evaluation.extractors``
(:mod:`genbench.metrics.file_extractor`); each gets ``fd_<name>`` and ``kid_<name>``
(:func:`genbench.metrics.generic.space_metrics`). A plugin adds a built-in with :func:`register_extractor`.

An extractor's :meth:`Extractor.key` is the extractor part of every feature-cache key
(:mod:`genbench.metrics.feature_cache`): it must change whenever the features could.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genbench.errors import GenbenchError
from genbench.runtime.distributed import Dist
from genbench.runtime.registry import Registry

PREP_RESIZES = ("torch_bilinear", "torch_bicubic", "tf1_bilinear")
"""Resize policies a file extractor's images may go through (Inception's two, plus bicubic: DINOv2's own transform
resizes bicubically)."""


@dataclass(frozen=True)
class Prep:
    """How uint8 images become a network's input, in this order: channels (grey tiled to 3, or RGB averaged to grey)
    -> float 0..255 -> resized to ``size`` x ``size`` by ``resize`` -> mapped linearly onto ``value_range`` ->
    ``(x - mean) / std`` per channel.

    Attributes:
        size: the square side fed to the network, pixels (None: the images' own size).
        channels: 1 or 3.
        value_range: (lo, hi): uint8 0 maps to lo, 255 to hi.
        mean, std: per-channel normalisation after the range (one value each, or ``channels`` values), or None.
        resize: one of :data:`PREP_RESIZES`.
        batch: images per forward pass.
    """

    size: int | None
    channels: int
    value_range: tuple[float, float]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str = "torch_bilinear"
    batch: int = 50

    def record(self) -> dict:
        """The preparation as JSON (part of a file extractor's cache key and of its metrics' provenance)."""
        return {"size": self.size, "channels": self.channels, "value_range": list(self.value_range),
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std), "resize": self.resize, "batch": self.batch}

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """float32 (N, channels, size, size) network input from uint8 (N, C, H, W), C 1 or 3.

        Raises:
            ValueError: not a uint8 4-d tensor with 1 or 3 channels.
        """
        if x_uint8.dtype != torch.uint8 or x_uint8.ndim != 4 or x_uint8.shape[1] not in (1, 3):
            raise ValueError(f"an extractor takes uint8 (N, 1 or 3, H, W), got {x_uint8.dtype} {tuple(x_uint8.shape)}")
        x = x_uint8.float()
        if x.shape[1] != self.channels:
            x = x.repeat(1, 3, 1, 1) if self.channels == 3 else x.mean(1, keepdim=True)
        if self.size is not None and tuple(x.shape[2:]) != (self.size, self.size):
            if self.resize == "tf1_bilinear":
                from genbench.metrics.inception import resize_tf1_bilinear

                x = resize_tf1_bilinear(x, self.size)
            else:
                mode = "bicubic" if self.resize == "torch_bicubic" else "bilinear"
                x = F.interpolate(x, size=(self.size, self.size), mode=mode, align_corners=False).clamp_(0, 255)
        lo, hi = self.value_range
        x = x * ((hi - lo) / 255.0) + lo
        if self.mean is not None:
            x = x - torch.tensor(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        if self.std is not None:
            x = x / torch.tensor(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return x.contiguous()


@dataclass(frozen=True)
class Extractor:
    """One feature space, ready to use.

    Attributes:
        name: its registry name and the suffix of its metrics (``fd_<name>``, ``kid_<name>``).
        title: the space in words, for log lines, the cache's ``what`` and the report (``Inception``).
        dim: the feature dimension D.
        prep: how images are prepared for it (for the built-ins: a description of what their own code does).
        extract: ``extract(images uint8 (N, C, H, W), dist) -> float64 (N, D)``; under DDP (``dist`` active) every
            rank calls it with the same images and gets every row.
        key: ``key() -> dict``: the extractor's part of the feature-cache key (weights, preparation, runtime).
        describe: one line for the metrics' ``extractor`` field.
    """

    name: str
    title: str
    dim: int
    prep: Prep
    extract: Callable[[torch.Tensor, Dist | None], np.ndarray]
    key: Callable[[], dict]
    describe: str = ""

    def features(self, images: torch.Tensor, dist: Dist | None = None) -> np.ndarray:
        """float64 (N, D) features of uint8 (N, C, H, W) images (:attr:`extract`, its shape checked).

        Raises:
            GenbenchError: the extractor returned another shape.
        """
        out = self.extract(images, dist)
        if out.shape != (len(images), self.dim):
            raise GenbenchError(f"extractor {self.name!r} returned features of shape {out.shape} for {len(images)} "
                                f"images, expected ({len(images)}, {self.dim})")
        return out


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor: how to build it against an evaluation context.

    Attributes:
        name: the registry name (a Python identifier).
        build: ``build(ctx) -> Extractor`` with ctx an :class:`~genbench.metrics.evaluate.EvalContext`.
        doc: one line: what the features are, with the source.
    """

    name: str
    build: Callable[[object], Extractor]
    doc: str = ""


_EXTRACTORS: Registry[ExtractorSpec] = Registry("extractor", ExtractorSpec, "genbench.metrics.extractors.ExtractorSpec",
                                                "register_extractor", entry_point_group="genbench.extractors")


def register_extractor(spec: ExtractorSpec, *, replace: bool = False) -> ExtractorSpec:
    """Add ``spec`` to the registry. Returns it.

    Raises:
        GenbenchError: not an ExtractorSpec, a name that is not an identifier, or a name taken (without ``replace``).
    """
    return _EXTRACTORS.add(spec, replace=replace)


def unregister_extractor(name: str) -> None:
    _EXTRACTORS.remove(name)


def extractor_names() -> tuple[str, ...]:
    return _EXTRACTORS.names()


def get_extractor(name: str) -> ExtractorSpec:
    """The registered extractor ``name``.

    Raises:
        GenbenchError: none of that name, listing the registered ones.
    """
    return _EXTRACTORS.get(name)


BUILTINS = ("inception", "classifier")
"""The built-in spaces: their metrics (``fid_inception``, ``fd_classifier``...) are the registered generic metrics."""


def _inception(ctx) -> Extractor:
    inc = ctx.inception
    return Extractor(
        name="inception", title="Inception", dim=inc.num_features,
        prep=Prep(size=299, channels=3, value_range=(0.0, 255.0), mean=(128.0,), std=(128.0,),
                  resize=ctx.eval_cfg.resize, batch=inc.batch),
        extract=lambda x, dist=None: inc(x, log=ctx.log, dist=dist), key=lambda: ctx.extractor_key("inception"),
        describe=f"{inc.name} ({inc.num_features}-d)")


def _classifier(ctx) -> Extractor:
    from genbench.metrics.classifier import predict

    batch = ctx.predict_batch
    return Extractor(
        name="classifier", title="classifier", dim=ctx.classifier.head[-1].in_features,
        prep=Prep(size=None, channels=ctx.test.x.shape[1], value_range=(-1.0, 1.0), batch=batch),
        extract=lambda x, dist=None: predict(ctx.classifier, x, batch=batch, dist=dist)[1],
        key=lambda: ctx.extractor_key("classifier"), describe="in-domain classifier penultimate")


for _spec in (ExtractorSpec("inception", _inception, "Inception-v3 pool3, TF graph 2015-12-05 (Heusel et al. 2017)"),
              ExtractorSpec("classifier", _classifier, "the in-domain classifier's penultimate layer (genbench)")):
    register_extractor(_spec)
