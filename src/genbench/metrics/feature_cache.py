"""The feature cache: features of *real* images, computed once per complete key and kept under GENBENCH_HOME.

Which features (all asked for by :class:`~genbench.metrics.evaluate.EvalContext`):

- the Inception reference subset of the test split (features, mean, covariance);
- the real-data row (the held-out training images scored like a model): its classifier and Inception features;
- the classifier features (and softmax outputs) of the whole test split, the reference of ``fd_classifier``;
- the seeded train-split subset that memorisation metrics compare against (:meth:`EvalContext.train_features`).

Generated images are never cached: their features are computed by every evaluation.

Key. A JSON object holding the dataset's content name (``Dataset.name``), the split, N, the image shape, the
sha256 of the index array (:func:`~genbench.metrics.reference.indices_sha256`), the sha256 of the selected
images' pixels (:func:`images_sha256`: so a changed split, holdout size or dataset option can never reuse
features of other images), and the extractor: for Inception its ``key()`` (name, resize policy, precision,
backend, preprocessing version, OpenVINO version) plus the batch size and device type; for the in-domain
classifier the sha256 of its weights (:func:`weights_sha256`; the classifier cache is itself keyed by dataset,
epochs, seed, device, threads and precision), the batch size and the device type. :data:`CACHE_VERSION` is part
of every key.

Layout: ``<GENBENCH_HOME>/features/<sha256 of the key, 32 hex>.npz`` holds the arrays and a ``__meta__`` JSON
string (the key, and per array its sha256, shape and dtype); ``<same>.json`` beside it repeats the metadata for
people and tools (``what``, when, the arrays' sha256). The ``.npz`` alone is the unit of trust, so a reader never
depends on two files agreeing: one atomic write (temp file, fsync, ``os.replace``; :mod:`genbench.io`) publishes
it whole, and processes that compute the same key at once each replace the file with a complete copy.

Storage is exact: a float64 array whose values are all float32 numbers (network outputs widened, as Inception's
and the classifier's features are) is stored as float32 and widened back on read, otherwise stored as it is.
The arrays read back equal the arrays computed, bit for bit.

Verification on every read: a regular file; a readable zip (CRC) with no pickled objects; the embedded key equal
to the key asked for; exactly the arrays the metadata names, each of its recorded dtype, shape and sha256; the
shapes the caller expects (rows = the subset's N, the extractor's width). Anything else (a truncated, flipped,
zeroed, foreign or swapped file, or one holding NaN or infinity) is removed and the features are computed again,
with one log line.

Data-parallel (``dist`` active): rank 0 alone reads, removes and writes; it broadcasts whether the cache holds the
key. On a miss every rank takes part in the (sharded) computation; on a hit only rank 0 gets the arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from genbench.io import atomic_savez, atomic_write_json, remove_inside
from genbench.runtime.distributed import Dist

CACHE_VERSION = 1
"""Part of every key: raise it when what a cached array means changes."""
FOLDER = "features"
"""The cache's folder under GENBENCH_HOME."""
SIZE_ENV = "GENBENCH_FEATURE_CACHE_MB"
"""The cache's size cap in MiB (default :data:`DEFAULT_CAP_MB`): after each write the least recently used files
(by modification time, which a cache hit refreshes) are removed until the folder's ``.npz`` files fit; the file
just written is always kept. ``0`` means no cap."""
DEFAULT_CAP_MB = 4096
META = "__meta__"


def images_sha256(images: torch.Tensor | np.ndarray) -> str:
    """sha256 (hex) of the images' shape and pixels (uint8 (N, C, H, W), C-contiguous bytes): which images a
    feature array belongs to."""
    a = np.ascontiguousarray(images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images))
    h = hashlib.sha256(json.dumps([list(a.shape), a.dtype.str]).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 (hex) of a module's state (every parameter and buffer: name, dtype, shape, values, in order): the
    identity of a feature extractor's weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        shape = tuple(t.shape)
        t = t.detach().cpu().contiguous().reshape(-1)  # 0-d buffers (num_batches_tracked) too
        h.update(json.dumps([name, str(t.dtype), list(shape)]).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def key_digest(key: Mapping) -> str:
    """The file name stem of ``key``: sha256 of its canonical JSON (sorted keys), first 32 hex."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:32]


def _canonical(key: Mapping) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _stored(a: np.ndarray) -> np.ndarray:
    """The array as stored: float64 holding only float32 values -> float32 (exact), else unchanged."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.float64:
        b = a.astype(np.float32)
        if np.array_equal(b.astype(np.float64), a, equal_nan=True):
            return b
    return a


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


class DamagedCache(Exception):
    """A cache file that must not be trusted (internal: :meth:`FeatureCache.read` turns it into a log line)."""


@dataclass
class FeatureCache:
    """Feature arrays of real images on disk, one ``.npz`` per key (see the module docstring).

    Attributes:
        root: the cache folder (``<GENBENCH_HOME>/features``), created on the first write.
        log: ``log(str)`` for the one line each lookup writes.
        events: one record per disk lookup, in order (:meth:`record`, for ``metrics.json``).
    """

    root: Path
    log: Callable[[str], None] = print
    events: list = field(default_factory=list)

    def path(self, key: Mapping) -> Path:
        return Path(self.root) / f"{key_digest(key)}.npz"

    def _load(self, path: Path, key: Mapping, shapes: Mapping[str, tuple] | None) -> dict[str, np.ndarray]:
        """The verified arrays at ``path`` (in their computed dtypes). Raises DamagedCache(reason) otherwise;
        FileNotFoundError when there is no file."""
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise
        except OSError as e:
            raise DamagedCache(f"unreadable: {e.strerror or type(e).__name__}") from None
        if not stat.S_ISREG(mode):
            raise DamagedCache("not a regular file")  # a FIFO must not block the reader
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z[META][()]))
                names = sorted(set(z.files) - {META})
                stored = {k: z[k] for k in names}
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, ValueError (pickle), KeyError...
            raise DamagedCache(f"unreadable: {type(e).__name__}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), dict):
            raise DamagedCache("no metadata")
        if meta.get("key") != json.loads(_canonical(key)):
            raise DamagedCache("its key is not the key asked for")
        if sorted(meta["arrays"]) != names:
            raise DamagedCache(f"arrays {names}, metadata names {sorted(meta['arrays'])}")
        out = {}
        for k, a in stored.items():
            m = meta["arrays"][k]
            if not isinstance(m, dict) or a.dtype.str != m.get("stored") or list(a.shape) != m.get("shape"):
                raise DamagedCache(f"{k}: {a.dtype} {a.shape} where the metadata says {m}")
            if _sha(a) != m.get("sha256"):
                raise DamagedCache(f"{k}: checksum mismatch")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise DamagedCache(f"{k}: non-finite values")
            want = (shapes or {}).get(k)
            if want is not None and (len(want) != a.ndim or any(w is not None and w != s for w, s in
                                                                 zip(want, a.shape))):
                raise DamagedCache(f"{k}: shape {a.shape}, expected {tuple(want)}")
            if m.get("dtype") not in (a.dtype.str, "<f8" if a.dtype.str == "<f4" else None):
                raise DamagedCache(f"{k}: stored as {a.dtype.str}, to be read as {m.get('dtype')!r}")
            out[k] = a.astype(np.dtype(m["dtype"]), copy=False)
        missing = set(shapes or {}) - set(out)
        if missing:
            raise DamagedCache(f"no {', '.join(sorted(missing))}")
        return out

    def _remove(self, path: Path) -> None:
        for p in (path, path.with_suffix(".json")):
            remove_inside(self.root, p)

    def read(self, key: Mapping, shapes: Mapping[str, tuple] | None = None,
             what: str = "features") -> dict[str, np.ndarray] | None:
        """The cached arrays of ``key``, or None when absent, or when damaged: then the file is removed, with one
        log line (``[features] <what>: cache file ... is damaged (<reason>); removed, computing them again``).

        Args:
            key: the complete key (JSON-serialisable mapping).
            shapes: per array name the expected shape (None entries: any size on that axis); an array missing,
                or of another shape, makes the file damaged.
            what: the features in words, for the log line.

        Returns:
            ``{name: array}`` in the dtypes they were computed in, or None.
        """
        return self._lookup(key, shapes, what)[0]

    def _lookup(self, key: Mapping, shapes, what: str) -> tuple[dict[str, np.ndarray] | None, bool]:
        """(the verified arrays or None, whether a damaged file was removed)."""
        path = self.path(key)
        try:
            return self._load(path, key, shapes), False
        except FileNotFoundError:
            return None, False
        except DamagedCache as e:
            self._remove(path)
            self.log(f"[features] {what}: cache file {path} is damaged ({e}); removed, computing them again")
            return None, True

    def write(self, key: Mapping, arrays: Mapping[str, np.ndarray], what: str = "") -> Path:
        """Store ``arrays`` under ``key`` (atomically; float64 holding float32 values stored as float32) and the
        JSON sidecar. Returns the ``.npz`` path."""
        path = self.path(key)
        stored = {k: _stored(np.asarray(v)) for k, v in arrays.items()}
        meta = {"key": json.loads(_canonical(key)), "what": what, "version": CACHE_VERSION,
                "arrays": {k: {"sha256": _sha(a), "shape": list(a.shape), "stored": a.dtype.str,
                               "dtype": np.asarray(arrays[k]).dtype.str} for k, a in stored.items()}}
        atomic_savez(path, **stored, **{META: np.array(json.dumps(meta))})
        atomic_write_json(path.with_suffix(".json"), {**meta, "file": path.name,
                                                      "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.prune(keep=path)
        return path

    def cap_bytes(self) -> int | None:
        """The size cap from ``$GENBENCH_FEATURE_CACHE_MB`` (None: no cap).

        Raises:
            GenbenchError: the variable is not a whole number of MiB >= 0."""
        raw = os.environ.get(SIZE_ENV, "").strip()
        if not raw:
            return DEFAULT_CAP_MB * 2**20
        if not raw.isdigit():
            from genbench.errors import GenbenchError

            raise GenbenchError(f"{SIZE_ENV}={raw!r}: give the feature cache's size cap in whole MiB (0: no cap)")
        return int(raw) * 2**20 or None

    def prune(self, keep: Path | None = None) -> list[str]:
        """Remove the least recently used cache files (``.npz`` and its ``.json``) until the ``.npz`` files fit the
        cap (:data:`SIZE_ENV`); ``keep`` is never removed. Returns the removed file names (one log line if any)."""
        cap = self.cap_bytes()
        if cap is None or not Path(self.root).is_dir():
            return []
        files = []
        for p in Path(self.root).glob("*.npz"):
            try:
                st = os.stat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        removed = []
        for _, size, p in sorted(files, key=lambda f: f[0]):  # oldest use first
            if total <= cap:
                break
            if keep is not None and p == keep:
                continue
            self._remove(p)
            total -= size
            removed.append(p.name)
        if removed:
            self.log(f"[features] cache over its {cap / 2**20:.0f} MiB cap ({SIZE_ENV}): removed the {len(removed)} "
                     f"least recently used file(s)")
        return removed

    def get(self, what: str, key: Mapping, compute: Callable[[], Mapping[str, np.ndarray]], *,
            shapes: Mapping[str, tuple] | None = None, dist: Dist | None = None) -> dict[str, np.ndarray] | None:
        """The arrays of ``key``: read from the cache, or computed by ``compute()`` and stored.

        Args:
            what: the features in words, for the log line and :meth:`record` (``Inception features of 400
                holdout images``).
            key: the complete key (module docstring).
            compute: ``compute() -> {name: array}``; under DDP a collective every rank calls on a miss.
            shapes: as :meth:`read`.
            dist: the data-parallel context (single process by default).

        Returns:
            ``{name: array}`` (the computed dtypes). Under DDP rank 0 always gets them; another rank gets them on a
            miss (what its ``compute()`` returned) and None on a hit. A cache file that cannot be written (full or
            read-only disk) leaves one log line and the computed arrays are returned all the same.

        Raises:
            GenbenchError: a folder sits where the cache file belongs (genbench deletes no folders).
        """
        dist = dist or Dist()
        t0 = time.perf_counter()
        path = self.path(key)
        got, damaged = self._lookup(key, shapes, what) if dist.main else (None, False)
        if dist.broadcast(got is not None):
            if dist.main:
                try:
                    os.utime(path)  # a use: the size cap removes the least recently used files first
                except OSError:
                    pass
                self.log(f"[features] {what}: from the cache ({path.name})")
                self._event(what, path, True, got, t0)
            return got
        if dist.main and not damaged:
            self.log(f"[features] {what}: computing (cached as {path} after this run)")
        arrays = dict(compute())
        if dist.main:
            try:
                self.write(key, arrays, what)
            except OSError as e:  # a full or read-only GENBENCH_HOME costs the reuse, not the evaluation
                self.log(f"[features] {what}: cannot write {path} ({e.strerror or type(e).__name__}); not cached")
            self._event(what, path, False, arrays, t0)
        return arrays

    def _event(self, what: str, path: Path, hit: bool, arrays: Mapping, t0: float) -> None:
        first = arrays.get("features", next(iter(arrays.values()), None))  # rows of the features, not of sigma
        rows = len(first) if first is not None and np.ndim(first) else 0
        self.events.append({"features": what, "file": path.name, "from_cache": hit, "rows": int(rows),
                            "seconds": time.perf_counter() - t0})

    def record(self) -> dict:
        """What this process's lookups did, for ``metrics.json`` (``provenance.feature_cache``): the folder, how
        many came from the cache and how many were computed, and each lookup (features, file, from_cache, rows,
        seconds)."""
        hits = sum(e["from_cache"] for e in self.events)
        return {"folder": str(self.root), "from_cache": hits, "computed": len(self.events) - hits,
                "lookups": list(self.events), "version": CACHE_VERSION}
