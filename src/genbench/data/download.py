"""Download-verify-cache of dataset files from URLs, through pooch (https://www.fatiando.org/pooch).

pooch streams each file into a temporary file beside its destination, checks its hash (``sha256:...`` or
``md5:...``), and only then moves it into place, so an interrupted or corrupt download never leaves a file in
the cache; it shows a tqdm progress bar and retries a failed transfer (``$GENBENCH_DOWNLOAD_RETRIES`` times,
default 2, restarting the file from its first byte: pooch does not resume partial files). A file already in the
cache whose hash matches is not requested again. This module turns pooch's and requests' exceptions into one
:class:`AssetError` line naming the dataset, the URL and what went wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbench.errors import AssetError


class DownloadError(AssetError):
    """A transfer failed; ``why`` is the short reason (HTTP 404, host not found, connection lost)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def _retries() -> int:
    try:
        return max(0, int(os.environ.get("GENBENCH_DOWNLOAD_RETRIES", "2")))
    except ValueError:
        return 2


def _why(e: BaseException) -> str:
    """One short line for a requests/pooch exception."""
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.ConnectionError) and "NameResolution" in str(e):
        return "host not found (no internet connection?)"
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
    base = base_url if base_url.endswith("/") else base_url + "/"
    if force:
        for f in files:
            (dest / f).unlink(missing_ok=True)
    p = pooch.create(path=dest, base_url=base, registry=dict(files), urls=dict(urls or {}),
                     retry_if_failed=_retries())
    out = {}
    for f in files:
        url = p.get_url(f)
        try:
            out[f] = Path(p.fetch(f, downloader=pooch.HTTPDownloader(progressbar=progress, timeout=60)))
        except ValueError as e:  # pooch: hash mismatch (the download was deleted)
            want = files[f]
            raise AssetError(f"{dataset}: {url} does not match its checksum {want} (the file was not cached); "
                             f"the server sent a different or damaged file: retry, or use another mirror with "
                             f"--url") from e
        except (requests.RequestException, OSError) as e:
            raise DownloadError(f"{dataset}: could not download {url} ({_why(e)}); check the connection and retry "
                                f"`genbench data fetch {dataset}`, or use a mirror with --url URL --sha256 HEX",
                                _why(e)) from e
    return out
