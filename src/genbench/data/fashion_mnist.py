"""Fashion-MNIST (Xiao et al. 2017): the four original IDX gzip files, sha256-checked
(``genbench.data.assets.ASSETS["fashion_mnist"]``), converted to uint8 arrays and cached at
``$GENBENCH_HOME/datasets/fashion_mnist.npz`` (with its checksum record, :mod:`genbench.data.cache`).

Where the files come from (``genbench data fetch fashion_mnist`` puts them in the cache; see
:mod:`genbench.data.sources`), in this order: a directory given (``source_dir``, ``$GENBENCH_FASHION_MNIST_DIR``);
``$GENBENCH_HOME/assets/fashion_mnist/``; the installed Debian package's ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from genbench.data.assets import ASSETS, cache_home, verify_debian_asset
from genbench.errors import AssetError
from genbench.data.cache import load_arrays, save_arrays


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
        AssetError: not cached and the IDX files are missing (one line naming the directories looked in, the
            expected files and `genbench data fetch fashion_mnist`) or fail their checksums.
    """
    asset = ASSETS["fashion_mnist"]
    explicit = source_dir or os.environ.get(asset.env)
    if not explicit:
        arrs = load_arrays("fashion_mnist")
        if arrs is not None:
            return arrs
    if explicit:
        d = verify_debian_asset(asset, source_dir)
    else:
        names = [f for f, _ in asset.files]
        cands = [cache_home() / "assets" / "fashion_mnist", Path(asset.directory)]
        d = next((c for c in cands if all((c / f).exists() for f in names)), None)
        if d is None:
            raise AssetError(f"fashion_mnist is in none of {', '.join(map(str, cands))}; run `genbench data fetch "
                             f"fashion_mnist`, or set {asset.env} to a directory holding {', '.join(names)}")
        d = verify_debian_asset(asset, d)
    arrs = read_fashion_dir(d)
    save_arrays("fashion_mnist", arrs, source=f"{d} (sha256-verified IDX files)")
    return arrs


def read_fashion_dir(d: Path) -> dict[str, np.ndarray]:
    """The arrays of a directory holding the four (already verified) IDX gzip files."""
    arrs = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or (len(y) and y.max() > 9):
            raise AssetError(f"{d}: {prefix} images {x.shape} / labels {y.shape}, expected (N, 28, 28) and (N,) "
                             f"in 0..9; replace the files with the originals")
        arrs[f"x_{split}"], arrs[f"y_{split}"] = x.reshape(-1, 1, 28, 28), y.astype(np.int64)
    return arrs
