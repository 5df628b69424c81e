"""Fashion-MNIST (Xiao et al. 2017), the :data:`FASHION_MNIST` spec: the four original IDX gzip files, sha256-checked
(``genbench.data.assets.ASSETS["fashion_mnist"]``), converted to uint8 arrays and cached at
``$GENBENCH_HOME/datasets/fashion_mnist.npz`` (with its checksum record, :mod:`genbench.data.cache`).

Where the files come from (``genbench data fetch fashion_mnist`` puts them in the cache; see
:mod:`genbench.data.sources`), in this order: a directory given (``source_dir``, ``$GENBENCH_FASHION_MNIST_DIR``);
``$GENBENCH_HOME/assets/fashion_mnist/``; the installed Debian package's ``/usr/share/datasets/fashion-mnist``.

Sources (``genbench data fetch fashion_mnist``), in order: a directory (``--dir``, ``$GENBENCH_FASHION_MNIST_DIR``);
a mirror (``--url``); the cache; the installed Debian package; the official files (``$GENBENCH_FASHION_MNIST_URL``
overrides the base URL); the Debian package unpacked without root (``apt-get download`` + ``dpkg-deb -x``). The
four files have pinned sha256 sums (``shared/ASSETS.md``; the official files are byte-identical to the Debian
package's).
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from genbench.data.assets import ASSETS, cache_home, verify_debian_asset
from genbench.data.base import DATA_DIR, DatasetSpec, Remote
from genbench.data.cache import drop_arrays, load_arrays, save_arrays
from genbench.data.download import DownloadError, download
from genbench.data.sources import asset_dir, from_mirror, official_base
from genbench.errors import AssetError
from genbench.io import remove_inside


FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
REMOTE = Remote(FASHION_URL, "GENBENCH_FASHION_MNIST_URL",
                {f: "sha256:" + h for f, h in ASSETS["fashion_mnist"].files})
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


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


def _debian_unpack(dest: Path) -> None:
    """``apt-get download dataset-fashion-mnist`` + ``dpkg-deb -x`` (no root), the four files into ``dest``."""
    asset = ASSETS["fashion_mnist"]
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise AssetError(f"{tool} not found")
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in (["apt-get", "download", asset.package], None):
            if cmd is None:
                debs = list(Path(tmp).glob("*.deb"))
                if len(debs) != 1:
                    raise AssetError("apt-get download gave no .deb")
                cmd = ["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")]
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr or proc.stdout).strip().splitlines()
                raise AssetError(f"`{' '.join(cmd[:3])}` failed: {err[-1] if err else proc.returncode}")
        src = verify_debian_asset(asset, Path(tmp) / "x" / asset.directory.lstrip("/"))
        dest.mkdir(parents=True, exist_ok=True)
        for f, _ in asset.files:
            shutil.copy(src / f, dest / f".{f}.tmp")
            os.replace(dest / f".{f}.tmp", dest / f)


def fetch_fashion_mnist(*, url, sha256, force, source_dir, progress, **_) -> str:
    """``genbench data fetch fashion_mnist``: the sources of the module docstring, in order; one line.

    Raises:
        AssetError: no source reachable (what was tried, the fix) or a file failing its checksum.
    """
    asset, name = ASSETS["fashion_mnist"], "fashion_mnist"
    files = [f for f, _ in asset.files]
    cache = asset_dir(name)
    if force:
        drop_arrays(name)
        for f in files:
            remove_inside(cache, cache / f)
    explicit = source_dir or os.environ.get(asset.env)
    if explicit:
        d, src = verify_debian_asset(asset, source_dir), f"directory {asset.locate(source_dir)}"
        drop_arrays(name)
        a = load_fashion_mnist(str(d))
        return f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from {src} (sha256-verified)"
    tried = []
    src = None
    if url:
        from_mirror(name, REMOTE, url, sha256, files, force)
        src = f"mirror {url}"
    elif all((cache / f).exists() for f in files):
        src = "cache"
    elif all((Path(asset.directory) / f).exists() for f in files):
        verify_debian_asset(asset, asset.directory)
        cache.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(Path(asset.directory) / f, cache / f".{f}.tmp")
            os.replace(cache / f".{f}.tmp", cache / f)
        src = f"installed Debian package {asset.package} ({asset.directory})"
    else:
        base = official_base(REMOTE)
        try:
            download(name, base, REMOTE.files, cache, force=force, progress=progress)
            src = f"official files {base}"
        except DownloadError as e:
            tried.append(f"{base}: {e.why}")
        if src is None:
            try:
                _debian_unpack(cache)
                src = f"Debian package {asset.package} (apt-get download + dpkg-deb -x)"
            except AssetError as e:
                tried.append(f"apt-get download {asset.package}: {e}")
    if src is None:
        raise AssetError(f"fashion_mnist: no source reachable (tried {'; '.join(tried)}); connect to the internet "
                         f"and retry, or set {asset.env} to a directory holding {', '.join(files)}, or give "
                         f"--url MIRROR_FOLDER/")
    verify_debian_asset(asset, cache)
    drop_arrays(name)
    a = load_fashion_mnist()
    return (f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from {src} (sha256-verified) "
            f"-> {cache}")


FASHION_MNIST = DatasetSpec(
    name="fashion_mnist", title="Fashion-MNIST", image_shape=(1, 28, 28), num_classes=10, class_names=CLASSES,
    content="Zalando article photos", citation="Xiao et al. 2017",
    load=lambda data_dir=None: load_fashion_mnist(data_dir), splits={"train": 60000, "test": 10000},
    options={"data_dir": DATA_DIR}, sources=(REMOTE,), fetch=fetch_fashion_mnist, fetch_dir=True,
)
