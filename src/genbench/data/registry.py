"""The dataset registry: name -> :class:`~genbench.data.base.DatasetSpec`, and the doors every layer uses.

:func:`load_dataset` (the data stage), :func:`dataset_info` (the facts a study, ``metrics.json`` and the report
use) and :func:`fetch_dataset` (``genbench data fetch``) all ask the spec registered under the dataset's name. The
built-in specs are registered by :mod:`genbench.data` (one line each); a plugin registers its own with
:func:`register_dataset`, or through an entry point in the group ``genbench.datasets`` whose object is a
``DatasetSpec``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from genbench.data.base import Dataset, DatasetInfo, DatasetSpec, content_name, split_arrays
from genbench.data.tensors import batches, num_batches, to_float, to_uint8
from genbench.errors import AssetError, GenbenchError
from genbench.runtime.registry import Registry

DATASET_ENTRY_POINT_GROUP = "genbench.datasets"
_REGISTRY: Registry[DatasetSpec] = Registry("dataset", DatasetSpec, "genbench.data.DatasetSpec", "register_dataset",
                                           entry_point_group=DATASET_ENTRY_POINT_GROUP)


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry (one line per dataset module). Returns it.

    Raises:
        GenbenchError: not a :class:`DatasetSpec`, a name that is not an identifier, or a name registered already
            (and ``replace`` is False).
    """
    return _REGISTRY.add(spec, replace=replace)


def unregister_dataset(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a dataset of their own)."""
    _REGISTRY.remove(name)


def dataset_names(*, by_mapping: bool = False) -> tuple[str, ...]:
    """The registered datasets a study names (``by_mapping``: the ``kind`` values of a ``dataset:`` mapping)."""
    _REGISTRY.load_entry_points()
    return tuple(n for n, s in _REGISTRY.items() if s.by_mapping == by_mapping)


def get_dataset(name: str, *, by_mapping: bool = False) -> DatasetSpec:
    """The registered :class:`DatasetSpec` called ``name`` (entry points are loaded on the first miss).

    Raises:
        GenbenchError: no such dataset (of that sort: a bare name, or a ``dataset: {kind: ...}`` mapping's kind).
    """
    spec = _REGISTRY.find(name)
    if spec is None or spec.by_mapping != by_mapping:
        what = "dataset kind" if by_mapping else "dataset"
        names = ", ".join(dataset_names(by_mapping=by_mapping))
        raise GenbenchError(f"unknown {what} {name!r}; choose one of: {names}")
    return spec


def _resolve(source: str | Mapping, options: Mapping[str, Any]) -> tuple[DatasetSpec, dict]:
    """(spec, options) of a dataset name plus its options, or of a ``{kind: ..., ...}`` mapping."""
    if isinstance(source, Mapping):
        if options:
            raise GenbenchError(f"a study's own dataset takes its options in the `dataset:` mapping, not "
                                f"{', '.join(options)}")
        spec = get_dataset(source.get("kind"), by_mapping=True)
        return spec, {k: v for k, v in source.items() if k != "kind"}
    spec = get_dataset(source)
    unknown = [k for k in options if k not in spec.options]
    if unknown:
        raise GenbenchError(f"dataset {spec.name!r}: unexpected option(s) {', '.join(map(str, unknown))} (it takes "
                            f"{', '.join(spec.options) or 'none'}); see the study file's `data` section")
    return spec, dict(options)


def dataset_info(source: str | Mapping, classes: list | tuple | None = None, **options) -> DatasetInfo:
    """The facts of dataset ``source`` with these options. ``classes`` (QuickDraw's choice, ``data.classes``) is
    passed only to a dataset that takes it. A mapping is a study's own dataset (``{kind: folder | npz, path: ...}``).

    Raises:
        GenbenchError: unknown dataset or option; a study's own dataset's errors (missing folder, bad arrays).
    """
    if isinstance(source, str) and source in _REGISTRY and "classes" in _REGISTRY[source].options and classes:
        options = {**options, "classes": classes}
    spec, opts = _resolve(source, options)
    return spec.info(opts)


def load_dataset(source: str | Mapping, *, holdout: int = 5000, **options) -> dict[str, Dataset]:
    """Load ``source`` as splits ``train``, ``holdout`` (the last ``holdout`` training images, never trained on:
    the real-data floor of every metric) and ``test``. ``options`` go to the dataset's loader (its spec's
    ``options``: ``data_dir`` for fashion_mnist / cifar10; ``data_dir``, ``classes``, ``train_per_class``,
    ``test_per_class``, ``seed`` for quickdraw). A mapping ``{kind: folder | npz, path: ...}`` is a study's own
    dataset (no options).

    Raises:
        GenbenchError: unknown dataset name or option; AssetError: the dataset's files are missing or corrupt.
    """
    spec, opts = _resolve(source, options)
    info = spec.info(opts)
    arrays = check_arrays(spec.name, spec.load(**opts), info.image_shape, info.num_classes)
    name = content_name(info.name, arrays) if spec.content_key else info.name
    return split_arrays(name, arrays, info.num_classes, holdout)


def check_arrays(name: str, arrays, image_shape, num_classes: int) -> dict:
    """The loader's contract, checked before anything trains on or scores its arrays (a plugin's loader included):
    a mapping with ``x_train``, ``x_test`` uint8 (N, C, H, W) of the spec's image shape and ``y_train``, ``y_test``
    integer (N,) labels in 0..num_classes-1 (any labels when num_classes is 0). Returns ``arrays``.

    Raises:
        GenbenchError: one line naming the dataset and the broken part of the contract.
    """
    import numpy as np

    where = f"dataset {name!r}: its loader"
    if not isinstance(arrays, Mapping):
        raise GenbenchError(f"{where} returned {type(arrays).__name__}, not a mapping with x_train, y_train, x_test, "
                            f"y_test; fix the DatasetSpec's load()")
    for split in ("train", "test"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and tuple(x.shape[1:]) ==
                tuple(image_shape)):
            got = f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}".strip()
            raise GenbenchError(f"{where} gave x_{split} as {got}; the contract is a uint8 numpy array (N, "
                                f"{', '.join(map(str, image_shape))}); fix the DatasetSpec's load() or image_shape")
        if not (isinstance(y, np.ndarray) and y.shape == (len(x),) and np.issubdtype(y.dtype, np.integer)):
            got = f"{type(y).__name__} {getattr(y, 'dtype', '')} {tuple(getattr(y, 'shape', ()))}".strip()
            raise GenbenchError(f"{where} gave y_{split} as {got}; the contract is integer labels ({len(x)},), one "
                                f"per image; fix the DatasetSpec's load()")
        if num_classes and len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise GenbenchError(f"{where} gave y_{split} labels outside 0..{num_classes - 1}; fix the DatasetSpec's "
                                f"load() or num_classes")
    return arrays


def fetch_dataset(name: str, *, url: str | None = None, sha256: list[str] | tuple = (), force: bool = False,
                  source_dir: str | None = None, classes: list[str] | None = None, progress: bool = True) -> str:
    """Get dataset ``name`` into the cache from the first of its sources that works, verify it, convert it to the
    checksummed array cache, and return one line saying what was fetched and from where (its spec's ``fetch``).

    Args:
        url: a mirror: the file's URL (one-file datasets) or the folder URL of its files.
        sha256: the user's checksums for ``url`` (``HEX``, or ``FILE=HEX`` per file).
        force: drop the cached files and arrays and fetch again.
        source_dir: a directory holding the dataset in its official format.
        classes: the classes, for a dataset that fetches per class (QuickDraw).

    Raises:
        AssetError: unknown name, bad option, no source reachable (one line: what was tried and the fix), or a
            file failing its checksum (nothing of it is cached).
    """
    fetchable = [n for n in dataset_names() if _REGISTRY[n].fetch is not None]
    if name not in fetchable:
        raise AssetError(f"unknown dataset {name!r}; choose one of {', '.join(fetchable)}")
    spec = _REGISTRY[name]
    if sha256 and not url:
        raise AssetError("--sha256 checks a mirror's files: give --url too")
    if url and source_dir:
        raise AssetError("give either --url or --dir, not both")
    if source_dir and not spec.fetch_dir:
        with_dir = ", ".join(n for n in fetchable if _REGISTRY[n].fetch_dir)
        raise AssetError(f"--dir applies to {with_dir}; {spec.title} comes from its own sources or a --url mirror")
    return spec.fetch(url=url, sha256=list(sha256), force=force, source_dir=source_dir, progress=progress,
                      classes=classes)


__all__ = ["DATASET_ENTRY_POINT_GROUP", "Dataset", "DatasetInfo", "DatasetSpec", "batches", "dataset_info",
           "dataset_names", "fetch_dataset", "get_dataset", "load_dataset", "num_batches", "register_dataset",
           "to_float", "to_uint8", "unregister_dataset"]


OFFLINE_ENV = "GENBENCH_OFFLINE"
"""Set to 1 (or ``genbench run --offline``) and a study never fetches a missing dataset; it stops with the fetch
command instead."""


def _dir_env(name: str) -> str:
    return f"GENBENCH_{name.upper()}_DIR"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_or_fetch(source: str | Mapping, *, holdout: int = 5000, log=print, **options) -> dict[str, Dataset]:
    """:func:`load_dataset`, fetching a built-in dataset on first use, as torchvision's ``download=True`` does:
    when it is not in the cache and has a known source, :func:`fetch_dataset` gets and verifies it (one ``log``
    line says so, and from where), then it is loaded. Not when ``$GENBENCH_OFFLINE`` is set, for a study's own
    dataset (a mapping), or when the user named a folder (the study's ``data_dir``, ``$GENBENCH_<NAME>_DIR``).

    Raises:
        GenbenchError / AssetError: as :func:`load_dataset`; offline, the error names the fetch command and the
            variable; a fetch that fails says so in one line with what was tried.
    """
    try:
        return load_dataset(source, holdout=holdout, **options)
    except AssetError as e:
        spec = _REGISTRY.find(source) if isinstance(source, str) else None
        if spec is None or spec.fetch is None or options.get("data_dir") or os.environ.get(_dir_env(spec.name)):
            raise  # a folder the user named holds no dataset: that is the error, not a reason to download
        if offline():
            raise AssetError(f"{e} ({OFFLINE_ENV} is set, so genbench did not fetch it)") from None
        log(f"[data] {source} is not in the cache: fetching it from its sources ({OFFLINE_ENV}=1 or "
            f"--offline turns this off)")
        try:
            line = fetch_dataset(source, classes=options.get("classes"), progress=False)
        except AssetError as f:
            raise AssetError(f"{source} is not in the cache and fetching it failed: {f}") from None
        log(f"[data] {line}")
        return load_dataset(source, holdout=holdout, **options)
