"""Download-verify-cache of dataset files from URLs, through pooch (https://www.fatiando.org/pooch).

pooch streams each file into a temporary file beside its destination, checks its hash (``sha256:...`` or
``md5:...``), and only then moves it into place, so an interrupted or corrupt download never leaves a file in
the cache; it shows a tqdm progress bar and retries a failed transfer (``$GENBENCH_DOWNLOAD_RETRIES`` times,
default 2, at most 10, restarting the file from its first byte: pooch does not resume partial files). Each try
waits at most ``CONNECT_TIMEOUT`` seconds for the server to accept the connection (and ``READ_TIMEOUT`` for each
read), so a mirror nobody answers fails within 30 seconds at the default retries, and the error says how many
tries were made. Only ``http://`` and ``https://`` URLs are fetched (:func:`check_url`; ``--url`` and the
``$GENBENCH_*_URL`` mirrors alike). A file already in the
cache whose hash matches is not requested again. This module turns pooch's and requests' exceptions into one
:class:`AssetError` line naming the dataset, the URL and what went wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbench.errors import AssetError, GenbenchError

SCHEMES = ("http", "https")
MAX_RETRIES = 10
CONNECT_TIMEOUT = 8.0  # seconds to connect, per try: 3 tries + 1 s and 2 s waits stay under 30 s
READ_TIMEOUT = 60.0  # seconds without a byte, per read


class DownloadError(AssetError):
    """A transfer failed; ``why`` is the short reason (HTTP 404, host not found, connection lost)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def _retries() -> int:
    """``$GENBENCH_DOWNLOAD_RETRIES`` (default 2), an integer in 0..:data:`MAX_RETRIES`.

    Raises:
        GenbenchError: any other value (it is not silently replaced by the default).
    """
    raw = os.environ.get("GENBENCH_DOWNLOAD_RETRIES", "").strip()
    if not raw:
        return 2
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_RETRIES:
        raise GenbenchError(f"GENBENCH_DOWNLOAD_RETRIES={raw[:30]!r}: give an integer in 0..{MAX_RETRIES} (retries "
                            f"after a failed transfer), or unset it for 2")
    return n


def check_url(url: str, what: str = "--url") -> str:
    """``url`` if it is an ``http://`` or ``https://`` URL with a host (a download mirror); returns it.

    Raises:
        GenbenchError: another scheme, no host, a bad port, spaces or control characters (one line).
    """
    from genbench.io import check_url as _check

    _check(url, what, SCHEMES, "a mirror's file URL, or its folder URL ending in /; a local folder is --dir")
    return url


def _why(e: BaseException) -> str:
    """One short line for a requests/pooch exception."""
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.ConnectTimeout):
        return f"ConnectTimeout: no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(e, requests.ReadTimeout):
        return f"the server sent nothing for {READ_TIMEOUT:g} s"
    if isinstance(e, requests.ConnectionError) and "NameResolution" in str(e):
        return "host not found (no internet connection?)"
    if isinstance(e, requests.ConnectionError) and "Connection refused" in str(e):
        return "ConnectionError: connection refused, nothing listens there"
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def download(dataset: str, base_url: str, files: dict[str, str | None], dest: Path, *,
             force: bool = False, progress: bool = True, urls: dict[str, str] | None = None) -> dict[str, Path]:
    """Fetch ``files`` (file name -> pooch hash ``"sha256:<hex>"`` / ``"md5:<hex>"``, or None for no fixed hash)
    from ``base_url`` + file name into the folder ``dest``; files already there with a matching hash are kept.

    Args:
        dataset: name used in error messages.
        base_url: URL prefix; a trailing ``/`` is added when missing.
        files: the registry of files and their hashes.
        dest: cache folder (created).
        force: delete the cached files first and download them again.
        progress: show a tqdm progress bar on stderr (only when stderr is a terminal, so that logs and captured
            output hold one line per event).
        urls: file name -> full URL, for files not found at ``base_url`` + name (a mirror's own file URL).

    Returns:
        file name -> path of the verified file in ``dest``.

    Raises:
        AssetError: a transfer failed after the retries (HTTP error, connection lost mid-file, host not found)
            or a file does not match its hash; nothing of that file is left in ``dest``.
    """
    import pooch
    import requests

    import sys

    pooch.get_logger().setLevel("WARNING")
    progress = progress and sys.stderr.isatty()
    check_url(base_url, f"{dataset}: mirror")
    for u in (urls or {}).values():
        check_url(u, f"{dataset}: mirror")
    retries = _retries()
    base = base_url if base_url.endswith("/") else base_url + "/"
    if force:
        for f in files:
            (dest / f).unlink(missing_ok=True)
    p = pooch.create(path=dest, base_url=base, registry=dict(files), urls=dict(urls or {}),
                     retry_if_failed=retries)
    out = {}
    for f in files:
        url = p.get_url(f)
        try:
            dl = pooch.HTTPDownloader(progressbar=progress, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            out[f] = Path(p.fetch(f, downloader=dl))
        except ValueError as e:  # pooch: hash mismatch (the download was deleted)
            want = files[f]
            raise AssetError(f"{dataset}: {url} does not match its checksum {want} (the file was not cached); "
                             f"the server sent a different or damaged file: retry, or use another mirror with "
                             f"--url") from e
        except (requests.RequestException, OSError) as e:
            tries = f"{retries + 1} tr{'y' if retries == 0 else 'ies'}, GENBENCH_DOWNLOAD_RETRIES={retries}"
            raise DownloadError(f"{dataset}: could not download {url} ({_why(e)}; {tries}); check the connection "
                                f"and retry `genbench data fetch {dataset}`, or use a mirror with --url URL --sha256 HEX",
                                _why(e)) from e
    return out
