"""The ``DatasetSpec``: everything about one dataset in one object, and the in-memory splits it loads into.

A dataset (``mnist``, ``fashion_mnist``, ``cifar10``, ``quickdraw``, the study's own ``folder`` / ``npz`` kinds, or
one a plugin registers) is one module defining a :class:`DatasetSpec` plus one registration line
(:func:`genbench.data.registry.register_dataset`). Every layer that used to keep a table per dataset asks the
registry instead:

=================  ==============================================================================================
field              used by
=================  ==============================================================================================
facts              ``name``, ``title``, ``image_shape``, ``num_classes``, ``class_names``, ``content``,
                   ``citation``: the model geometry (studies/config.py), ``metrics.json``'s ``dataset_info`` and
                   the report's words (:class:`DatasetInfo`, :meth:`DatasetSpec.info`)
``splits``         the official split sizes (documentation, ``genbench data fetch``'s line)
``load``           the data stage: ``load(**options)`` -> uint8 arrays (:func:`genbench.data.load_dataset` cuts
                   the holdout, :func:`split_arrays`)
``options``        the study schema: the keys a study's ``data:`` section (or its ``dataset:`` mapping) accepts,
                   each an :class:`Option` (type, default, range) that studies/schema.py turns into a ``Field``
``sources``        where the files come from, with their checksums (:class:`Remote`); ``fetch``: ``genbench data
                   fetch`` (``fetch(*, url, sha256, force, source_dir, classes, progress) -> one line``)
``real_floor``     which images the real-data floor scores (the last ``holdout`` training images as ``load``
                   orders them) and ``content_key``: whether cached statistics are keyed by the pixels' hash
=================  ==============================================================================================

Anchors: torch-fidelity's one module per metric behind a registry; the families' :class:`~genbench.families.Family`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from genbench.errors import GenbenchError

REQUIRED = object()
"""The default of an :class:`Option` the study must give."""
MAX_IMAGES = 1_000_000  # the study schema's MAX_SAMPLES: a larger image count is a typo (tests check they agree)
MAX_SEED = 2**63 - 1  # seeds go to numpy / torch.Generator.manual_seed (int64)


@dataclass(frozen=True)
class Option:
    """One option a study may give the dataset's loader (validated by :mod:`genbench.studies.schema`).

    Attributes:
        typ: the accepted Python type(s).
        default: the value when the study gives none (:data:`REQUIRED`: it must give one).
        ok: the range check, or None.
        want: that range in words, for the error line.
        noun: for a choice, what the value names ("dataset kind").
    """

    typ: Any
    default: Any = None
    ok: Callable[[Any], bool] | None = None
    want: str = ""
    noun: str = ""


def int_option(lo: int, hi: int, default: Any = REQUIRED, *, null: bool = False) -> Option:
    """An integer option in ``lo..hi`` (or null when ``null``)."""
    want = f"an integer in {lo}..{hi:,}" + (" or null" if null else "")
    return Option((int, type(None)) if null else int, default,
                  lambda v: v is None or (not isinstance(v, bool) and lo <= v <= hi), want)


def fraction_option(default: float) -> Option:
    """A number in the open interval (0, 1)."""
    return Option(float, default, lambda v: 0 < v < 1 and math.isfinite(v), "a number in (0, 1)")


DATA_DIR = Option((str, type(None)), None)
"""``data.data_dir``: a folder holding the dataset's official files (or null)."""


@dataclass(frozen=True)
class Remote:
    """A dataset's files at a URL, with their checksums.

    Attributes:
        base_url: the official location (folder URL), or "" where there is none (MNIST: a mirror only).
        env: environment variable that replaces ``base_url`` (a mirror; the tests' local server).
        files: file name -> pooch hash (``sha256:<hex>``), None where no checksum exists.
        md5: file name -> md5 also checked after download.
    """

    base_url: str
    env: str
    files: Mapping[str, str | None]
    md5: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one dataset as a study uses it (``metrics.json``'s ``dataset_info``).

    Attributes:
        name: registry name, or a study's own dataset's name.
        title: display name (``MNIST``).
        image_shape: (C, H, W) of one image, uint8 0..255 on disk, float [-1, 1] inside genbench.
        num_classes: number of classes (labels 0..num_classes-1).
        class_names: one display name per class.
        content: what one image shows, plural noun phrase ("handwritten digits").
        source: where the images come from (paper or home page).
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    content: str
    source: str


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset (see the module docstring for where each field is used).

    Attributes:
        name: the registry name a study's ``dataset:`` gives (a Python identifier); for a ``by_mapping`` spec, the
            ``kind`` of the study's ``dataset: {kind: ..., path: ...}`` mapping.
        title, image_shape, num_classes, class_names, content, citation: the facts (:class:`DatasetInfo`).
        load: ``load(**options) -> {"x_train", "y_train", "x_test", "y_test"}``: uint8 (N, C, H, W) images and
            int64 (N,) labels (extra keys ignored). Raises AssetError / GenbenchError in one line.
        splits: the official split sizes, ``{"train": 60000, "test": 10000}`` (empty where the options decide).
        options: the study's ``data:`` keys the loader takes, each an :class:`Option`.
        facts: ``facts(options) -> DatasetInfo`` where the facts depend on the options (QuickDraw's classes, a
            folder's images), else None (the spec's own facts).
        sources: the dataset's files at URLs with their checksums (empty: none, or the sources are registry
            packages named in ``fetch``'s module).
        fetch: ``genbench data fetch NAME``: ``fetch(*, url, sha256, force, source_dir, classes, progress) -> str``
            (one line: what was fetched, from where), or None (nothing to fetch).
        fetch_dir: whether ``fetch`` takes ``--dir`` (a directory with the official files).
        fetch_classes: whether ``fetch`` takes ``--classes`` (and which study file gives the default classes).
        real_floor: which training images the real-data floor scores, in words (``metrics.json``).
        content_key: key cached statistics by the arrays' sha256 (``Dataset.name`` = ``<name>-<12 hex>``) because
            the same name may hold other images (a study's own folder); False for fixed, checksummed datasets.
        by_mapping: chosen by a study's ``dataset: {kind: <name>, ...}`` mapping, never by a bare name.
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    content: str
    citation: str
    load: Callable[..., dict[str, np.ndarray]]
    splits: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Option] = field(default_factory=dict)
    facts: Callable[[dict], DatasetInfo] | None = None
    sources: tuple[Remote, ...] = ()
    fetch: Callable[..., str] | None = None
    fetch_dir: bool = False
    fetch_classes: str | None = None
    real_floor: str = "the last `holdout` images of the training split, never trained on"
    content_key: bool = False
    by_mapping: bool = False

    def info(self, options: Mapping[str, Any] | None = None) -> DatasetInfo:
        """The facts for these options (``facts(options)`` where given, else the spec's own)."""
        if self.facts is not None:
            return self.facts(dict(options or {}))
        return DatasetInfo(self.name, self.title, tuple(self.image_shape), self.num_classes, tuple(self.class_names),
                           self.content, self.citation)


@dataclass
class Dataset:
    """A dataset split held in memory.

    Attributes:
        x: uint8 tensor (N, C, H, W), values 0..255.
        y: int64 tensor (N,), class labels 0..num_classes-1.
        num_classes: number of classes.
        name: dataset name (the key of its cached classifier and reference statistics).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: slice | torch.Tensor) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.name)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]


def content_name(name: str, arrays: Mapping[str, np.ndarray]) -> str:
    """``<name>-<sha256 of x_train, y_train, x_test, y_test bytes, 12 hex>``: a key no other images share."""
    digest = hashlib.sha256()
    for k in ("x_train", "y_train", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(arrays[k]).tobytes())
    return f"{name}-{digest.hexdigest()[:12]}"


def split_arrays(name: str, arrays: Mapping[str, np.ndarray], num_classes: int, holdout: int) -> dict[str, Dataset]:
    """Splits ``train``, ``holdout`` (the last ``holdout`` training images, never trained on: the real-data floor)
    and ``test`` of uint8 arrays ``x_train`` (N, C, H, W), ``y_train`` (N,), ``x_test``, ``y_test``.

    Raises:
        GenbenchError: ``holdout`` is negative.
    """
    if holdout < 0:
        raise GenbenchError(f"dataset {name!r}: holdout {holdout} is negative; give 0 or more images")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    xt, yt = t(arrays["x_train"]), t(arrays["y_train"])
    n_train = len(xt) - min(holdout, len(xt))
    return {"train": Dataset(xt[:n_train], yt[:n_train], num_classes, name),
            "holdout": Dataset(xt[n_train:], yt[n_train:], num_classes, name),
            "test": Dataset(t(arrays["x_test"]), t(arrays["y_test"]), num_classes, name)}
