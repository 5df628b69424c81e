"""Fashion-MNIST (Xiao et al. 2017) from the Debian package ``dataset-fashion-mnist``: the four original IDX
gzip files, sha256-checked (``genbench.data.assets.ASSETS["fashion_mnist"]``), converted to uint8 arrays and
cached at ``$GENBENCH_HOME/datasets/fashion_mnist.npz``.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from genbench.data.assets import ASSETS, cache_home, verify_debian_asset
from genbench.errors import AssetError
from genbench.io import atomic_savez


def read_idx(path: Path) -> np.ndarray:
    """One gzip IDX file (LeCun et al. 1998 format: big-endian magic 0x0801 / 0x0803, dims, uint8 data) ->
    uint8 array of its dims.

    Raises:
        AssetError: unreadable or not gzip, a bad magic number (not uint8 with 1 or 3 dims), or a size that
            does not match the header.
    """
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except Exception as e:  # noqa: BLE001 - unreadable, not gzip, truncated
        raise AssetError(f"{path}: not a gzip file ({type(e).__name__}); replace it with the original") from e
    if len(raw) < 4:
        raise AssetError(f"{path}: {len(raw)} bytes, too short for an IDX header; replace it with the original")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08 or (magic & 0xFF) not in (1, 3):
        raise AssetError(f"{path}: not an IDX uint8 file (magic {magic:#x}); replace it with the original")
    ndim = magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise AssetError(f"{path}: header cut short ({len(raw)} bytes); replace it with the original")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise AssetError(f"{path}: {data.size} bytes of data, header says {dims}; replace it with the original")
    return data.reshape(dims).copy()


def load_fashion_mnist(source_dir: str | None = None) -> dict[str, np.ndarray]:
    """x_train uint8 (60000, 1, 28, 28), y_train int64 (60000,), x_test (10000, 1, 28, 28), y_test (10000,).

    Raises:
        AssetError: not cached and the IDX files are missing (one line naming the directory looked in, the
            expected files and `genbench data fetch fashion_mnist`) or fail their checksums.
    """
    cached = cache_home() / "datasets" / "fashion_mnist.npz"
    if cached.exists() and source_dir is None:
        try:
            with np.load(cached) as z:
                arrs = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            if arrs["x_train"].shape == (60000, 1, 28, 28) and arrs["x_test"].shape == (10000, 1, 28, 28):
                return arrs
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt below
            pass
    d = verify_debian_asset(ASSETS["fashion_mnist"], source_dir)
    arrs = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or (len(y) and y.max() > 9):
            raise AssetError(f"{d}: {prefix} images {x.shape} / labels {y.shape}, expected (N, 28, 28) and (N,) "
                             f"in 0..9; replace the files with the originals")
        arrs[f"x_{split}"], arrs[f"y_{split}"] = x.reshape(-1, 1, 28, 28), y.astype(np.int64)
    atomic_savez(cached, **arrs)
    return arrs
