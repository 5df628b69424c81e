"""User input that becomes a path (issue 29): name checks, paths kept inside their root, deletion only of
genbench's own files, and regular-file checks before a file is opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

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


def shown(value: Any) -> str:
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
        raise GenbenchError(f"{what} {shown(value)} cannot name a file ({why}); give a plain name without '/', "
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
        raise GenbenchError(f"{what} {shown(str(p))} cannot be used ({type(e).__name__}); give a plain name") \
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
        raise GenbenchError(f"{what} {shown(str(p))} is not a usable path (it holds a NUL character); {fix}") \
            from None
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a file")
        raise GenbenchError(f"{what} {p} is {kind}, not a regular file; {fix}")
    return p
