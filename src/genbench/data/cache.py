"""Converted dataset arrays cached as ``$GENBENCH_HOME/datasets/<name>.npz``, each with a checksum record.

An array cache is written only from a verified asset, and beside it ``<name>.npz.json`` records the sha256 of
the arrays' contents (names, dtypes, shapes and bytes, so it does not depend on the zip container's time
stamps) and the source they came from. :func:`load_arrays` recomputes that checksum and refuses a cache that
lacks its record or differs from it (an all-zero ``mnist.npz`` of the right shapes, a truncated file): the
caller rebuilds it from the verified asset and says so on stderr.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from genbench.data.assets import cache_home
from genbench.io import atomic_savez, atomic_write_json, remove_inside, safe_name

KEYS = ("x_train", "y_train", "x_test", "y_test")


def array_path(name: str) -> Path:
    return cache_home() / "datasets" / f"{safe_name(name, 'dataset name')}.npz"


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and C-order bytes, in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays(name: str, arrays: dict[str, np.ndarray], source: str) -> Path:
    """Write the arrays (atomically) and their checksum record. ``source`` says which verified asset they
    were converted from."""
    p = atomic_savez(array_path(name), **arrays)
    atomic_write_json(p.with_name(p.name + ".json"), {"arrays_sha256": arrays_sha256(arrays), "source": source})
    return p


def load_arrays(name: str, keys: tuple[str, ...] = KEYS) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``name`` if the cache exists and matches its checksum record, else None (a cache
    that exists but fails is reported on stderr as being rebuilt; the caller rebuilds it)."""
    p = array_path(name)
    if not p.exists():
        return None
    why = None
    try:
        rec = json.loads(p.with_name(p.name + ".json").read_text())
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys}
        if arrays_sha256(arrays) != rec["arrays_sha256"]:
            why = "its contents differ from the checksum recorded when it was written"
    except FileNotFoundError:
        why = "no checksum record"
    except Exception as e:  # noqa: BLE001 - unreadable / truncated / not an npz: rebuilt by the caller
        why = f"unreadable: {type(e).__name__}"
    if why is None:
        return arrays
    print(f"genbench: cache {p} ({why}); rebuilding it from the verified source", file=sys.stderr)
    return None


def drop_arrays(name: str) -> None:
    """Delete the cached arrays of ``name`` and their record (``genbench data fetch --force``)."""
    p = array_path(name)
    for q in (p, p.with_name(p.name + ".json")):
        remove_inside(p.parent, q)
