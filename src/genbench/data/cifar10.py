"""CIFAR-10 (Krizhevsky 2009) from the official ``cifar-10-batches-py`` pickles: ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``. Each batch is a pickle (``encoding="bytes"``) of a dict
with ``b"data"`` uint8 (N, 3072) (1024 red, 1024 green, 1024 blue values, rows of 32) and ``b"labels"`` (N ints
0..9). The pickles are read with numpy arrays as the only allowed globals (a file cannot run code), either from
a directory or straight out of the official ``cifar-10-python.tar.gz`` (never extracted to disk) that
``genbench data fetch cifar10`` downloads and verifies (:mod:`genbench.data.sources`).

Where the arrays come from, in this order: ``$GENBENCH_CIFAR10_DIR``; the study's ``data.data_dir`` when it
holds the files; the verified array cache ``$GENBENCH_HOME/datasets/cifar10.npz``; the verified archive in
``$GENBENCH_HOME/assets/cifar10/``.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from genbench.data.assets import cache_home
from genbench.data.cache import KEYS, load_arrays, save_arrays
from genbench.data.mnist import _one_line, safe_pickle_load
from genbench.errors import AssetError

ENV = "GENBENCH_CIFAR10_DIR"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
ARCHIVE = "cifar-10-python.tar.gz"
ARRAY_KEYS = KEYS + ("class_names",)


def _read_batch(f, path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = safe_pickle_load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
        raise AssetError(f"{path}: not a CIFAR-10 python batch ({_one_line(e)}); replace it with the "
                         f"original") from e
    if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise AssetError(f"{path}: data {x.shape} / labels {y.shape}, expected (N, 3072) and (N,); replace it "
                         f"with the original")
    if len(y) and not (y.min() >= 0 and y.max() <= 9):
        raise AssetError(f"{path}: labels outside 0..9; replace it with the original")
    return x.reshape(-1, 3, 32, 32), y


def _read_meta(f, path: str) -> np.ndarray:
    try:
        meta = safe_pickle_load(f, encoding="bytes")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
        raise AssetError(f"{path}: not a CIFAR-10 meta file ({_one_line(e)}); replace it with the original") from e
    return np.array(names)


def _assemble(open_file) -> dict[str, np.ndarray]:
    """``open_file(name)`` -> (binary file object, display path) for each name of FILES."""
    parts = [_read_batch(*open_file(f"data_batch_{i}")) for i in range(1, 6)]
    x_test, y_test = _read_batch(*open_file("test_batch"))
    return {"x_train": np.concatenate([p[0] for p in parts]), "y_train": np.concatenate([p[1] for p in parts]),
            "x_test": x_test, "y_test": y_test, "class_names": _read_meta(*open_file("batches.meta"))}


def read_cifar10_dir(d: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``cifar-10-batches-py`` directory (all FILES must exist)."""
    def open_file(name):
        return io.BytesIO((d / name).read_bytes()), str(d / name)

    return _assemble(open_file)


def read_cifar10_archive(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the official ``cifar-10-python.tar.gz``, read member by member without extracting.

    Raises:
        AssetError: not a gzip tar, a member missing, or a member malformed.
    """
    try:
        tar = tarfile.open(path, "r:gz")
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AssetError(f"{path}: not a CIFAR-10 archive ({_one_line(e)}); delete it and run "
                         f"`genbench data fetch cifar10 --force`") from e
    missing = [f for f in FILES if f not in members]
    if missing:
        raise AssetError(f"{path} lacks {', '.join(missing)}; delete it and run `genbench data fetch cifar10 --force`")
    with tar:
        return _assemble(lambda name: (io.BytesIO(tar.extractfile(members[name]).read()), f"{path}:{name}"))


def _dir_with_files(d: Path) -> Path | None:
    if not (d / "test_batch").exists() and (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    return d if all((d / f).exists() for f in FILES) else None


def load_cifar10(data_dir: str | None) -> dict[str, np.ndarray]:
    """x_train uint8 (50000, 3, 32, 32), y_train int64, x_test (10000, 3, 32, 32), y_test, class names.

    ``data_dir`` (or ``$GENBENCH_CIFAR10_DIR``, which wins): the ``cifar-10-batches-py`` folder or its parent.

    Raises:
        AssetError: no source holds the data (one line: what was tried, the fetch command and the layout), or
            a file is malformed.
    """
    env = os.environ.get(ENV)
    if env:  # an explicit choice: use it or say what it lacks
        d = Path(env).expanduser()
        found = _dir_with_files(d)
        if found is None:
            raise AssetError(f"CIFAR-10: ${ENV}={d} lacks {', '.join(f for f in FILES if not (d / f).exists())} "
                             f"(the official cifar-10-batches-py files); put them there, or unset ${ENV} and run "
                             f"`genbench data fetch cifar10`")
        return read_cifar10_dir(found)
    if data_dir and (found := _dir_with_files(Path(data_dir).expanduser())) is not None:
        return read_cifar10_dir(found)
    arrs = load_arrays("cifar10", ARRAY_KEYS)
    if arrs is not None:
        return arrs
    archive = cache_home() / "assets" / "cifar10" / ARCHIVE
    if archive.exists():
        from genbench.data.sources import verify_cached

        verify_cached("cifar10", archive)
        arrs = read_cifar10_archive(archive)
        save_arrays("cifar10", arrs, source=f"{ARCHIVE} (verified)")
        return arrs
    d = Path(data_dir or "data/cifar10").expanduser()
    missing = [f for f in FILES if not (d / f).exists() and not (d / "cifar-10-batches-py" / f).exists()]
    raise AssetError(f"CIFAR-10: {d} lacks {', '.join(missing)} (the official cifar-10-batches-py files) and "
                     f"{archive} was not fetched; run `genbench data fetch cifar10`, or put the files in data.data_dir "
                     f"or ${ENV}")
