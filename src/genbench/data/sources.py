"""The fetch machinery every dataset's ``fetch`` shares: the asset cache folders, official URLs with their
environment overrides, pinned checksums (sha256, md5) of cached files, and mirrors given with ``--url`` and
``--sha256``.

Each dataset declares its own sources, in the order they are tried, in its module (:mod:`genbench.data.mnist`,
:mod:`~genbench.data.fashion_mnist`, :mod:`~genbench.data.cifar10`, :mod:`~genbench.data.quickdraw`) and in its
:class:`~genbench.data.base.DatasetSpec` (``sources``: a :class:`~genbench.data.base.Remote` per URL with its
checksums); ``genbench data fetch NAME`` calls that spec's ``fetch`` (:func:`genbench.data.fetch_dataset`), which
tries them, verifies, caches, and says in one line which source was used. With ``--url`` a checksum is given by the
user (``--sha256``) and must equal the pinned one where genbench has one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from genbench.data.assets import cache_home
from genbench.data.base import Remote
from genbench.data.download import download
from genbench.errors import AssetError
from genbench.io import sha256_file


def asset_dir(name: str) -> Path:
    """``$GENBENCH_HOME/assets/<name>``: where a dataset's fetched files are cached."""
    return cache_home() / "assets" / name


def official_base(remote: Remote) -> str:
    """The remote's folder URL: ``$<env>`` when set (a mirror, the tests' server), else the official one."""
    return os.environ.get(remote.env) or remote.base_url


def check_md5(name: str, remote: Remote, paths: dict[str, Path]) -> None:
    """Check the downloaded ``paths`` against the remote's md5 sums; a file that differs is deleted.

    Raises:
        AssetError: a file differs (one line: both sums, the fix).
    """
    for f, want in remote.md5.items():
        if f in paths:
            got = hashlib.md5(paths[f].read_bytes()).hexdigest()
            if got != want:
                paths[f].unlink(missing_ok=True)
                raise AssetError(f"{name}: {f} md5 {got}, expected {want} (the file was not cached); the server "
                                 f"sent a different file: retry, or use another mirror with --url")


def verify_cached(name: str, remote: Remote, path: Path) -> Path:
    """Check a cached file of ``name`` against its pinned sha256 in ``remote``.

    Raises:
        AssetError: it differs (one line: the file, both sums, the fix).
    """
    want = remote.files.get(path.name)
    if want:
        got = sha256_file(path)
        if got != want.split(":")[-1]:
            raise AssetError(f"cached file {path} is corrupt: sha256 {got}, expected {want.split(':')[-1]}; run "
                             f"`genbench data fetch {name} --force`")
    return path


def user_hashes(name: str, remote: Remote, files: list[str], sha256: list[str]) -> dict[str, str]:
    """``--sha256`` values (``HEX`` for a one-file dataset, else ``FILE=HEX`` each) as file -> pooch hash.

    Raises:
        AssetError: a value that is not a sha256, names another file, differs from the pinned sum, or a file
            without any checksum.
    """
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
        pinned = remote.files.get(f)
        if pinned and pinned != "sha256:" + h:
            raise AssetError(f"{name}: --sha256 for {f} is {h}, but the original file's sha256 is "
                             f"{pinned.split(':')[1]}; that mirror does not serve the original file")
        out[f] = "sha256:" + h
    for f in files:
        out.setdefault(f, remote.files.get(f))
    unchecked = [f for f in files if not out[f]]
    if unchecked:
        raise AssetError(f"{name}: give --sha256 FILE=HEX for {', '.join(unchecked)}: genbench has no checksum of "
                         f"its own for a mirror's copy")
    return out


def from_mirror(name: str, remote: Remote, url: str, sha256: list[str], files: list[str],
                force: bool) -> dict[str, Path]:
    """Download ``files`` from the mirror ``url`` (one file: its own URL; several: their folder) into
    :func:`asset_dir`, checked against the user's ``--sha256`` (and the pinned sums)."""
    hashes = user_hashes(name, remote, files, sha256)
    if len(files) == 1 and not url.endswith("/"):  # one file: the URL is the file's own
        paths = download(name, url.rsplit("/", 1)[0], hashes, asset_dir(name), force=force, urls={files[0]: url})
    else:  # several files: the URL is their folder
        paths = download(name, url, hashes, asset_dir(name), force=force)
    check_md5(name, remote, paths)
    return paths
