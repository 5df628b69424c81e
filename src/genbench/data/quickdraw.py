"""QuickDraw (Ha & Eck 2017), the :data:`QUICKDRAW` spec, from Google's per-class ``numpy_bitmap`` files:
``<class>.npy`` (as served under ``quickdraw_dataset/full/numpy_bitmap/``; ``full_numpy_bitmap_<class>.npy`` is
accepted too), each a uint8 array (N, 784) of 28 x 28 bitmaps, 0 = background. ``genbench data fetch quickdraw`` downloads them from
Google's bucket into ``$GENBENCH_HOME/assets/quickdraw/`` (:func:`fetch_quickdraw`).

Sources (``genbench data fetch quickdraw --classes a,b``), in order: a directory (``--dir``,
``$GENBENCH_QUICKDRAW_DIR``); a mirror (``--url``, with ``--sha256 FILE=HEX`` per file); the cache; Google's bucket
(``$GENBENCH_QUICKDRAW_URL`` overrides it). QuickDraw publishes no checksum: each ``.npy`` is checked to be a uint8
(N, 784) array with at least one row (its header, parsed without pickle), and the sha256 of what was fetched is
recorded in ``assets/quickdraw/manifest.json`` and checked on every later load (trust on first use).

Where the files come from, in this order: ``$GENBENCH_QUICKDRAW_DIR``; the study's ``data.data_dir`` when it
holds every class; the fetched cache.

Split, reproducible: per class, a permutation of its rows by ``numpy.random.default_rng([seed, class index])``;
the first ``train_per_class`` rows are train, the next ``test_per_class`` test. Labels are the classes' indices
in the order given. The training images are then shuffled (seed ``seed``) before the holdout is cut, so the
real-data floor spans every class (the files hold the classes block by block).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import DATA_DIR, MAX_IMAGES, MAX_SEED, DatasetInfo, DatasetSpec, Option, Remote, int_option
from genbench.data.download import download
from genbench.data.sources import asset_dir, official_base, user_hashes
from genbench.errors import AssetError, GenbenchError
from genbench.io import atomic_write_json, inside, name_problem, regular_file, remove_inside, safe_name, sha256_file

ENV = "GENBENCH_QUICKDRAW_DIR"
REMOTE = Remote("https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/", "GENBENCH_QUICKDRAW_URL",
                {})  # files: <class>.npy, no published checksum (recorded at fetch: manifest.json)


def quickdraw_cache() -> Path:
    return asset_dir("quickdraw")


def _class_file(d: Path, name: str) -> Path | None:
    safe_name(name, "quickdraw class")  # a class names a file in d, never a path out of it
    for f in (f"{name}.npy", f"full_numpy_bitmap_{name}.npy"):
        if (d / f).exists():
            return regular_file(d / f, "QuickDraw file", "put Google's numpy_bitmap .npy file there")
    return None


def load_quickdraw(data_dir: str | None, classes: list[str], *, train_per_class: int, test_per_class: int,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """x_train uint8 (K*train_per_class, 1, 28, 28), y_train int64, x_test, y_test (K = len(classes)).

    ``data_dir``: ``$GENBENCH_QUICKDRAW_DIR`` if set, else this argument.

    Raises:
        AssetError: a class file is missing (one line: directory, expected files), unreadable, not (N, 784)
            uint8, or has fewer than train_per_class + test_per_class rows.
    """
    d = Path(os.environ.get(ENV) or data_dir or "data/quickdraw").expanduser()
    missing = [c for c in classes if _class_file(d, c) is None]
    if missing and not os.environ.get(ENV):
        cache = quickdraw_cache()
        if all(_class_file(cache, c) is not None for c in classes):
            verify_quickdraw_cache(classes)
            d, missing = cache, []
    if missing:
        raise AssetError(f"QuickDraw: {d} lacks {', '.join(f'{c}.npy' for c in missing)} (Google's numpy_bitmap "
                         f"files); run `genbench data fetch quickdraw --classes {','.join(classes)}`, or put them "
                         f"there, or set data.data_dir in the study file or ${ENV}")
    need = train_per_class + test_per_class
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for i, c in enumerate(classes):
        f = _class_file(d, c)
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any read failure is a bad file
            raise AssetError(f"{f}: not a numpy_bitmap .npy file ({type(e).__name__}); replace it with Google's "
                             f"original") from e
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 784:
            raise AssetError(f"{f}: expected a uint8 (N, 784) numpy_bitmap array, got "
                             f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}")
        if len(arr) < need:
            raise AssetError(f"{f}: {len(arr)} drawings, fewer than train_per_class + test_per_class = {need}; "
                             f"lower them in the study file")
        perm = np.random.default_rng([seed, i]).permutation(len(arr))[:need]
        for split, idx in (("train", perm[:train_per_class]), ("test", perm[train_per_class:])):
            order = np.argsort(idx)  # read the memory map in file order, then restore the permutation
            rows = np.empty((len(idx), 784), np.uint8)
            rows[order] = arr[idx[order]]
            xs[split].append(rows.reshape(-1, 1, 28, 28))
            ys[split].append(np.full(len(idx), i, np.int64))
    return {"x_train": np.concatenate(xs["train"]), "y_train": np.concatenate(ys["train"]),
            "x_test": np.concatenate(xs["test"]), "y_test": np.concatenate(ys["test"])}


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
            why = "has no fetch record" if rec is None else "changed since it was fetched"
            raise AssetError(f"cached file {p} {why}"
                             f"; run `genbench data fetch quickdraw --classes {c} --force`")


def fetch_quickdraw(*, url, sha256, force, source_dir, progress, classes=None, **_) -> str:
    """``genbench data fetch quickdraw --classes ...``: the sources of the module docstring, in order; one line.

    Raises:
        AssetError: no classes, a class that names a path, no source reachable, a file that is not a
            numpy_bitmap array, or a mirror's file failing the user's checksum (nothing of it is cached).
    """
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
        return f"quickdraw: {_classes(classes)} ({sum(rows)} drawings) from directory {d}"
    cache, man = quickdraw_cache(), _manifest()
    if force:
        for f in files:
            remove_inside(cache, cache / f)
            man.pop(f, None)
    if url:
        hashes = user_hashes("quickdraw", REMOTE, files, sha256)
        base = url
    else:
        hashes, base = {f: None for f in files}, official_base(REMOTE)
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
    return f"quickdraw: {_classes(classes)} ({n} drawings) from {src} (sha256 recorded) -> {cache}"


def _classes(classes: list[str]) -> str:
    return f"{len(classes)} class{'es' if len(classes) > 1 else ''}"


def load_quickdraw_shuffled(data_dir: str | None = None, classes: list[str] | None = None, train_per_class: int = 4000,
                            test_per_class: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """The spec's ``load``: :func:`load_quickdraw`, training images shuffled by ``seed`` (the holdout spans the
    classes).

    Raises:
        GenbenchError: no classes given; AssetError: :func:`load_quickdraw`'s.
    """
    if not classes:
        raise GenbenchError("quickdraw: give data.classes in the study file (e.g. [rabbit, yoga, hand])")
    a = load_quickdraw(data_dir, list(classes), train_per_class=train_per_class, test_per_class=test_per_class,
                       seed=seed)
    # the permutation the splits have always used (torch's generator), so the splits of earlier runs are kept
    perm = torch.randperm(len(a["x_train"]), generator=torch.Generator().manual_seed(seed)).numpy()
    a["x_train"], a["y_train"] = a["x_train"][perm], a["y_train"][perm]
    return a


def _facts(options: dict) -> DatasetInfo:
    names = tuple(str(c) for c in options.get("classes") or ())
    return DatasetInfo("quickdraw", "QuickDraw", (1, 28, 28), len(names), names, "hand-drawn sketches",
                       QUICKDRAW.citation)


CLASSES = Option(list, None, lambda v: 1 <= len(v) <= 1000 and all(name_problem(c) is None for c in v)
                 and len(set(v)) == len(v), "a list of distinct class names, each a file name (no '/', '\\', "
                 "'..' or NUL: QuickDraw reads <class>.npy)")
QUICKDRAW = DatasetSpec(
    name="quickdraw", title="QuickDraw", image_shape=(1, 28, 28), num_classes=0, class_names=(),
    content="hand-drawn sketches", citation="Google Quick, Draw! numpy_bitmap (Ha & Eck 2017)",
    load=load_quickdraw_shuffled, facts=_facts,
    options={"data_dir": DATA_DIR, "classes": CLASSES, "train_per_class": int_option(1, MAX_IMAGES, 4000),
             "test_per_class": int_option(1, MAX_IMAGES, 1000), "seed": int_option(0, MAX_SEED, 0)},
    sources=(REMOTE,), fetch=fetch_quickdraw, fetch_dir=True, fetch_classes="quickdraw_vae",
    real_floor="the last `holdout` training images after a shuffle seeded by `seed` (every class), never trained on",
)
