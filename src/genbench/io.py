"""Atomic file writes and hashing.

Every file genbench writes (checkpoints, histories, sample banks, metrics, figures) goes through one of these
functions: the bytes land in a temporary file in the same directory, are fsync'ed, then ``os.replace``d over
the destination, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``). Creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to memory, then write atomically. Load back with ``torch.load(weights_only=True)``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync (an append-only log: a crash can lose at most the last line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file of objects (``[]`` if it does not exist), skipping a torn last line left by a
    crash.

    Raises:
        GenbenchError: the file cannot be read, or a line other than the last is not a JSON object (the file
            was damaged by something other than a crash during an append).
    """
    from genbench.errors import GenbenchError

    p = Path(path)
    if not p.exists():
        return []
    regular_file(p, "history file", "delete it, or retrain with --overwrite")
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise GenbenchError(f"cannot read {p} ({type(e).__name__}); check the path and its permissions") from e
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            rec = None
        if not isinstance(rec, dict):
            if i == len(lines) - 1:
                break  # torn by a crash mid-append
            raise GenbenchError(f"{p} line {i + 1} is not a JSON object, so the file is damaged; delete that "
                                f"line, or retrain with --overwrite")
        out.append(rec)
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    regular_file(path, "file", "give the regular file genbench expects there")  # a FIFO must not block the hash
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Check, before any work, that folder ``path`` exists or can be made and can be written into.

    Walks up to the first existing ancestor: it must be a folder, and a temporary file must be creatable in it
    (a real probe: permission bits say nothing to root, and a read-only mount shows only on a write).

    Args:
        what: how the user gave the path, for the message (``--out``, ``GENBENCH_HOME``).

    Raises:
        GenbenchError: one line naming the path and what is wrong with it.
    """
    from genbench.errors import GenbenchError

    p = Path(path).expanduser()
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        where = "" if anc == p else f" (inside {anc}, which is a file)"
        raise GenbenchError(f"{what} {p} is not a folder{where}; give a folder path")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise GenbenchError(f"{what} {p}: cannot write into {anc} ({e.strerror or type(e).__name__}); give a "
                            f"writable folder or fix its permissions") from None
    return p


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str):
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created, with its folder) for the ``with`` block.

    Raises:
        GenbenchError: another process holds the lock; the message is ``busy``.
    """
    import fcntl

    from genbench.errors import GenbenchError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # not open(path, "w"): a planted symlink must neither be followed nor its target truncated
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                     0o644)
    except OSError as e:
        raise GenbenchError(f"cannot use the lock file {path} ({e.strerror or type(e).__name__}: a symlink, a FIFO "
                            f"or a folder?); delete it and run again") from None
    with os.fdopen(fd, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise GenbenchError(busy) from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------------------------
# User input that becomes a path (issue 29). Every name a user gives (study, model, dataset, class, score row,
# tracker run) that genbench turns into a file or folder name goes through `safe_name`; every path built from
# one is checked with `inside` (it must resolve inside its root: GENBENCH_HOME, the cache, --out); every file
# genbench deletes goes through `remove_inside` (never through a symlink out, never a folder); every folder
# genbench cleans up in is first checked with `own_folder` (absent, empty, or holding files genbench writes);
# every file given where a regular file is expected is checked with `regular_file` before it is opened.

NAME_MAX_BYTES = 255  # one path component on every common file system


def name_problem(value: Any) -> str | None:
    """Why ``value`` cannot be one file or folder name (None when it can): not a string, empty, ``.``/``..``,
    a path separator (``/``, ``\\``: so no absolute path either), NUL or another control character, or longer
    than :data:`NAME_MAX_BYTES` bytes."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}, not a name"
    if not value:
        return "empty"
    if "\x00" in value:
        return "it holds a NUL character"
    if "/" in value or "\\" in value or (os.altsep and os.altsep in value):
        return "it holds a path separator"
    if value in (".", ".."):
        return "'.' and '..' name folders, not a new name"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "it holds a control character"
    if len(value.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        return f"longer than {NAME_MAX_BYTES} bytes"
    return None


def _show(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def safe_name(value: Any, what: str) -> str:
    """``value`` if it can become ONE file or folder name (:func:`name_problem`), else one line.

    Args:
        what: how the user gave it, for the message (``--name``, ``data.classes``, ``quickdraw class``).

    Raises:
        GenbenchError: ``<what> '<value>' cannot name a file (<why>); give a plain name without '/', '\\', '..'
            or NUL``.
    """
    from genbench.errors import GenbenchError

    why = name_problem(value)
    if why is not None:
        raise GenbenchError(f"{what} {_show(value)} cannot name a file ({why}); give a plain name without '/', "
                            f"'\\', '..' or NUL")
    return value


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str) -> Path:
    """``path`` (returned as given) after checking that it resolves inside ``root``: symlinks and ``..`` are
    followed for the check, so a name or a planted link cannot lead out of ``root``.

    Raises:
        GenbenchError: ``<what> <path> leads outside <root>; ...``.
    """
    from genbench.errors import GenbenchError

    p = Path(path)
    try:
        r = Path(root).expanduser().resolve()
        q = (r / p.expanduser()).resolve() if not p.expanduser().is_absolute() else p.expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte
        raise GenbenchError(f"{what} {_show(str(p))} cannot be used ({type(e).__name__}); give a plain name") \
            from None
    if q != r and not q.is_relative_to(r):
        raise GenbenchError(f"{what} {p} leads outside {r} (through '..', an absolute path or a symlink); genbench "
                            f"writes and deletes only inside it: give a plain name, or remove the symlink")
    return p


def remove_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Delete the file ``path`` (missing: nothing), only when its folder resolves inside ``root``; a symlink is
    removed as a link (its target stays), a folder is never removed. Returns whether something was deleted.

    Raises:
        GenbenchError: the file's folder leads outside ``root``, or ``path`` is a folder.
    """
    from genbench.errors import GenbenchError

    p = Path(path)
    inside(root, p.parent, "folder")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise GenbenchError(f"{p} is a folder where genbench keeps a file; move it away (genbench deletes no "
                            f"folders)")
    os.unlink(p)
    return True


def remove_temps(root: str | os.PathLike, folder: str | os.PathLike | None = None) -> int:
    """Delete the temp files (``.<name>.*.tmp``) that a process killed inside an atomic write left in ``folder``
    (default ``root``) and below, without entering symlinked folders. Returns how many were deleted."""
    n = 0
    for dirpath, _dirs, files in os.walk(folder or root, followlinks=False):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                n += remove_inside(root, Path(dirpath) / f)
    return n


def own_folder(path: str | os.PathLike, markers: tuple[str, ...], what: str, *,
               subfolders: tuple[str, ...] = ()) -> Path:
    """Check, before genbench writes into folder ``path`` and deletes its own files there (``--overwrite``,
    temp files), that the folder is genbench's: absent, empty, or holding one of ``markers`` (names genbench
    writes there), and that none of ``subfolders`` (which genbench cleans too) is a symlink leading out of it.

    Raises:
        GenbenchError: one line: a folder of other files (genbench would delete in it), or a symlink out.
    """
    from genbench.errors import GenbenchError

    p = Path(path)
    try:
        entries = sorted(os.listdir(p))
    except FileNotFoundError:
        return p
    except NotADirectoryError:
        raise GenbenchError(f"{what} {p} is not a folder; give a folder path") from None
    if entries and not any(m in entries for m in markers):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise GenbenchError(f"{what} {p} is a folder genbench did not write (it holds {shown}); give a new or empty "
                            f"folder (genbench deletes its own files in it)")
    for sub in subfolders:
        inside(p, p / sub, f"{what} {p}:")
    return p


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def regular_file(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` if it is a regular file (after following symlinks), checked with ``os.stat`` before it is opened,
    so a FIFO, device, socket or folder is refused at once instead of blocking or failing deep in a reader.
    A missing path is returned as is (the caller says what to do about it).

    Args:
        what: what the file is (``study file``, ``checkpoint``), fix: the end of the message (what to give).

    Raises:
        GenbenchError: ``<what> <path> is <a FIFO (named pipe) | a folder | ...>, not a regular file; <fix>``.
    """
    from genbench.errors import GenbenchError

    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return p
    except OSError as e:
        raise GenbenchError(f"cannot read {what} {p} ({e.strerror or type(e).__name__}); {fix}") from None
    except ValueError:  # an embedded NUL byte
        raise GenbenchError(f"{what} {_show(str(p))} is not a usable path (it holds a NUL character); {fix}") \
            from None
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a file")
        raise GenbenchError(f"{what} {p} is {kind}, not a regular file; {fix}")
    return p


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
        return GenbenchError(f"{what} {_show(str(url))}: {problem}; give a {want} URL ({fix})")

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
