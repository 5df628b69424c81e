"""CIFAR-10 (Krizhevsky 2009), the :data:`CIFAR10` spec, from the official ``cifar-10-batches-py`` pickles:
``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. Each batch is a pickle (``encoding="bytes"``) of a dict
with ``b"data"`` uint8 (N, 3072) (1024 red, 1024 green, 1024 blue values, rows of 32) and ``b"labels"`` (N ints
0..9). The pickles are read with numpy arrays as the only allowed globals (a file cannot run code), either from
a directory or straight out of the official ``cifar-10-python.tar.gz`` (never extracted to disk) that
``genbench data fetch cifar10`` downloads and verifies (:func:`fetch_cifar10`).

Where the arrays come from, in this order: ``$GENBENCH_CIFAR10_DIR``; the study's ``data.data_dir`` when it
holds the files; the verified array cache ``$GENBENCH_HOME/datasets/cifar10.npz``; the verified archive in
``$GENBENCH_HOME/assets/cifar10/``.

Sources (``genbench data fetch cifar10``), in order: a directory (``--dir``, ``$GENBENCH_CIFAR10_DIR``); a mirror
(``--url``); the cached archive; the official archive (``$GENBENCH_CIFAR10_URL`` overrides its folder). The archive
has the md5 its home page and torchvision publish (``c58f3010...``) and the sha256 that Keras pins for the same URL
(``keras/datasets/cifar10.py``, ``file_hash``; also TensorFlow Datasets' checksum list): both are checked.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from genbench.data.assets import cache_home
from genbench.data.base import DATA_DIR, DatasetSpec, Remote
from genbench.data.cache import KEYS, drop_arrays, load_arrays, save_arrays
from genbench.data.download import download
from genbench.data.mnist import _one_line, safe_pickle_load
from genbench.data.sources import asset_dir, check_md5, from_mirror, official_base, verify_cached
from genbench.errors import AssetError
from genbench.io import remove_inside

ENV = "GENBENCH_CIFAR10_DIR"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
ARCHIVE = "cifar-10-python.tar.gz"
ARRAY_KEYS = KEYS + ("class_names",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REMOTE = Remote("https://www.cs.toronto.edu/~kriz/", "GENBENCH_CIFAR10_URL",
                {ARCHIVE: "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
                md5={ARCHIVE: "c58f30108f718f92721af3b95e74349a"})


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
        verify_cached("cifar10", REMOTE, archive)
        arrs = read_cifar10_archive(archive)
        save_arrays("cifar10", arrs, source=f"{ARCHIVE} (verified)")
        return arrs
    d = Path(data_dir or "data/cifar10").expanduser()
    missing = [f for f in FILES if not (d / f).exists() and not (d / "cifar-10-batches-py" / f).exists()]
    raise AssetError(f"CIFAR-10: {d} lacks {', '.join(missing)} (the official cifar-10-batches-py files) and "
                     f"{archive} was not fetched; run `genbench data fetch cifar10`, or put the files in data.data_dir "
                     f"or ${ENV}")


def fetch_cifar10(*, url, sha256, force, source_dir, progress, **_) -> str:
    """``genbench data fetch cifar10``: the sources of the module docstring, in order; one line.

    Raises:
        AssetError: no source reachable (what was tried, the fix), a file failing its checksums, a directory
            without the official files.
    """
    name = "cifar10"
    archive = asset_dir(name) / ARCHIVE
    if force:
        drop_arrays(name)
        remove_inside(asset_dir(name), archive)
    d = source_dir or os.environ.get(ENV)
    if d:
        a = load_cifar10(d) if source_dir is None else read_cifar10_dir(_cifar_dir(Path(source_dir)))
        return f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from directory {d}"
    if url:
        from_mirror(name, REMOTE, url, sha256, [ARCHIVE], force)
        src = f"mirror {url} (sha256 + md5-verified)"
    elif archive.exists():
        verify_cached(name, REMOTE, archive)
        src = "cache"
    else:
        base = official_base(REMOTE)
        try:
            paths = download(name, base, REMOTE.files, asset_dir(name), progress=progress)
        except AssetError as e:
            raise AssetError(f"{e}; or put the official cifar-10-batches-py files ({', '.join(FILES)}) in a "
                             f"directory and set {ENV}") from None
        check_md5(name, REMOTE, paths)
        src = f"official archive {base}{ARCHIVE} (sha256 + md5-verified)"
    drop_arrays(name)
    a = load_cifar10(None)
    return f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from {src} -> {archive}"


def _cifar_dir(d: Path) -> Path:
    found = _dir_with_files(d)
    if found is None:
        raise AssetError(f"CIFAR-10: {d} lacks the official cifar-10-batches-py files ({', '.join(FILES)})")
    return found


CIFAR10 = DatasetSpec(
    name="cifar10", title="CIFAR-10", image_shape=(3, 32, 32), num_classes=10, class_names=CLASSES,
    content="small colour photos", citation="Krizhevsky 2009",
    load=lambda data_dir=None: load_cifar10(data_dir), splits={"train": 50000, "test": 10000},
    options={"data_dir": DATA_DIR}, sources=(REMOTE,), fetch=fetch_cifar10, fetch_dir=True,
)
