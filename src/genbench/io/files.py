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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.io.paths import regular_file


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
