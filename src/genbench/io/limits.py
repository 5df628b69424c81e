"""Memory estimates and network endpoints (issue 29): the memory cap a request is checked against, and bounded
TCP probes and URL checks for tracker URIs, Ray addresses and download mirrors."""

from __future__ import annotations

import os
from pathlib import Path

from genbench.io.paths import shown

# --------------------------------------------------------------------------------------------------------------
# Memory estimates and network endpoints (issue 29: numbers and endpoints)

MEMORY_ENV = "GENBENCH_MAX_MEMORY"
"""Environment variable capping what genbench will allocate for one request: bytes, or with a unit (``512M``,
``8G``). Default: the memory available now (``MemAvailable``), less a margin of 10% of it and at least 256 MiB."""
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _available_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil: /proc/meminfo, else assume 4 GiB
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 4 << 30


def memory_cap() -> int:
    """The most bytes one request may need (:data:`MEMORY_ENV`, else available memory less a margin).

    Raises:
        GenbenchError: :data:`MEMORY_ENV` is not a positive size.
    """
    from genbench.errors import GenbenchError

    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        num, unit = raw.rstrip("bBiI").upper(), ""
        if num and num[-1] in _UNITS:
            num, unit = num[:-1], num[-1]
        try:
            v = float(num) * _UNITS[unit]
        except ValueError:
            v = float("nan")
        if not (v >= 1 and v < 2**63):  # also NaN
            raise GenbenchError(f"{MEMORY_ENV}={raw[:40]!r} is not a memory size; give bytes or a number with K, M, "
                                f"G or T (e.g. 8G), or unset it")
        return int(v)
    avail = _available_bytes()
    return max(avail - max(avail // 10, 256 << 20), 0)


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_memory(need: float, what: str, fix: str) -> None:
    """Refuse a request whose estimated memory ``need`` (bytes) exceeds :func:`memory_cap`, before allocating it.

    Raises:
        GenbenchError: ``<what> needs about <need>, more than the <cap> genbench may use (...); <fix>``.
    """
    from genbench.errors import GenbenchError

    cap = memory_cap()
    if need > cap:
        src = f"{MEMORY_ENV}" if os.environ.get(MEMORY_ENV, "").strip() else \
            f"the memory available less a margin; {MEMORY_ENV} sets it"
        raise GenbenchError(f"{what} needs about {human_bytes(need)}, more than the {human_bytes(cap)} genbench may "
                            f"use ({src}); {fix}")


PROBE_TRIES = 3
PROBE_TIMEOUT = 5.0  # seconds per connection attempt: 3 tries, 1 s apart, end within 17 s
PROBE_WAIT = 1.0  # seconds between tries


def probe_tcp(host: str, port: int, what: str, fix: str, *, tries: int | None = None,
              timeout: float | None = None) -> None:
    """Open (and close) a TCP connection to ``host:port``, at most ``tries`` times, 1 s apart, each within
    ``timeout`` seconds; so an endpoint nobody listens on fails in seconds, not after a client library's own
    retries.

    Raises:
        GenbenchError: ``<what> is unreachable (<why>; <tries> tries over <s> s, genbench does not retry more);
            <fix>``.
    """
    import socket
    import time

    from genbench.errors import GenbenchError

    tries = PROBE_TRIES if tries is None else tries
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    t0, why = time.monotonic(), ""
    for i in range(max(1, tries)):
        if i:
            time.sleep(PROBE_WAIT)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except socket.gaierror as e:
            why = f"host {host!r} not found: {e.strerror or e}"
            break  # a name that does not resolve will not resolve a second later
        except (OSError, ValueError, OverflowError) as e:
            why = (e.strerror if isinstance(e, OSError) and e.strerror else None) or str(e) or type(e).__name__
            if isinstance(e, TimeoutError) or isinstance(e, socket.timeout):
                why = f"no answer within {timeout:g} s"
    n = i + 1
    raise GenbenchError(f"{what} is unreachable ({why}; {n} tr{'y' if n == 1 else 'ies'} over "
                        f"{time.monotonic() - t0:.1f} s, no more retries); {fix}")


def check_url(url, what: str, schemes: tuple[str, ...], fix: str, *, host_needed: bool = True):
    """``url`` parsed (``urllib.parse.urlsplit``) when its scheme is one of ``schemes`` and, for network schemes,
    it names a host (and a port in 1..65535 if one is given). Control characters and spaces are refused too.

    Raises:
        GenbenchError: ``<what> '<url>': <problem>; give <schemes> URL (<fix>)``.
    """
    from urllib.parse import urlsplit

    from genbench.errors import GenbenchError

    want = " or ".join(f"{s}://" for s in schemes) if len(schemes) <= 2 else \
        f"{', '.join(schemes[:-1])} or {schemes[-1]}"

    def bad(problem: str) -> GenbenchError:
        return GenbenchError(f"{what} {shown(str(url))}: {problem}; give a {want} URL ({fix})")

    if not isinstance(url, str) or not url.strip():
        raise bad("empty")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise bad("it holds a space or a control character")
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise bad(f"not a URL ({str(e)[:60]})") from None
    if not u.scheme or "://" not in url:
        raise bad("no scheme")
    if u.scheme.lower() not in schemes:
        raise bad(f"unknown scheme '{u.scheme[:20]}'")
    if host_needed and not u.hostname:
        raise bad("no host")
    if port is not None and not 1 <= port <= 65535:
        raise bad(f"port {port} is not in 1..65535")
    return u
