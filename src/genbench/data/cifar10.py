"""CIFAR-10 (Krizhevsky 2009) from the official ``cifar-10-batches-py`` pickles: ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``. Each batch is a pickle (``encoding="bytes"``) of a dict
with ``b"data"`` uint8 (N, 3072) (1024 red, 1024 green, 1024 blue values, rows of 32) and ``b"labels"`` (N ints
0..9). Nothing is downloaded, and the pickles are read with numpy arrays as the only allowed globals (a
file cannot run code).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genbench.data.mnist import _one_line, safe_pickle_load
from genbench.errors import AssetError

ENV = "GENBENCH_CIFAR10_DIR"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = safe_pickle_load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
        raise AssetError(f"{path}: not a CIFAR-10 python batch ({_one_line(e)}); replace it with the "
                         f"original") from e
    if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise AssetError(f"{path}: data {x.shape} / labels {y.shape}, expected (N, 3072) and (N,); replace it "
                         f"with the original")
    if len(y) and not (y.min() >= 0 and y.max() <= 9):
        raise AssetError(f"{path}: labels outside 0..9; replace it with the original")
    return x.reshape(-1, 3, 32, 32), y


def load_cifar10(data_dir: str | None) -> dict[str, np.ndarray]:
    """x_train uint8 (50000, 3, 32, 32), y_train int64, x_test (10000, 3, 32, 32), y_test, class names.

    ``data_dir``: ``$GENBENCH_CIFAR10_DIR`` if set, else this argument; either the ``cifar-10-batches-py``
    folder or its parent.

    Raises:
        AssetError: a file is missing (one line: directory, expected files) or malformed.
    """
    d = Path(os.environ.get(ENV) or data_dir or "data/cifar10").expanduser()
    if not (d / "test_batch").exists() and (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    missing = [f for f in FILES if not (d / f).exists()]
    if missing:
        raise AssetError(f"CIFAR-10: {d} lacks {', '.join(missing)} (the official cifar-10-batches-py files); "
                         f"put them there, or set data.data_dir in the study file or ${ENV}")
    parts = [_read_batch(d / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_batch(d / "test_batch")
    try:
        with open(d / "batches.meta", "rb") as f:
            meta = safe_pickle_load(f, encoding="bytes")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
        raise AssetError(f"{d / 'batches.meta'}: not a CIFAR-10 meta file ({_one_line(e)}); replace it with the "
                         f"original") from e
    return {"x_train": np.concatenate([p[0] for p in parts]), "y_train": np.concatenate([p[1] for p in parts]),
            "x_test": x_test, "y_test": y_test, "class_names": np.array(names)}
