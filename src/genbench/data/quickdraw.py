"""QuickDraw (Ha & Eck 2017) from Google's per-class ``numpy_bitmap`` files: ``<class>.npy`` (as served under
``quickdraw_dataset/full/numpy_bitmap/``; ``full_numpy_bitmap_<class>.npy`` is accepted too), each a uint8
array (N, 784) of 28 x 28 bitmaps, 0 = background. ``genbench data fetch quickdraw`` downloads them from
Google's bucket into ``$GENBENCH_HOME/assets/quickdraw/`` (:mod:`genbench.data.sources`; no checksum is published
for them, so the sha256 of what was fetched is recorded then and checked on every load).

Where the files come from, in this order: ``$GENBENCH_QUICKDRAW_DIR``; the study's ``data.data_dir`` when it
holds every class; the fetched cache.

Split, reproducible: per class, a permutation of its rows by ``numpy.random.default_rng([seed, class index])``;
the first ``train_per_class`` rows are train, the next ``test_per_class`` test. Labels are the classes' indices
in the order given.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genbench.errors import AssetError
from genbench.io import regular_file, safe_name

ENV = "GENBENCH_QUICKDRAW_DIR"


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
        from genbench.data.sources import quickdraw_cache, verify_quickdraw_cache

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
