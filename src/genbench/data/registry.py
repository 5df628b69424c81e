"""Dataset registry: name -> loader returning uint8 arrays held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from genbench.data.mnist import load_mnist
from genbench.errors import GenbenchError


@dataclass
class Dataset:
    """A dataset split held in memory.

    Attributes:
        x: uint8 tensor (N, C, H, W), values 0..255.
        y: int64 tensor (N,), class labels 0..num_classes-1.
        num_classes: number of classes.
        name: dataset name.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: slice | torch.Tensor) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.name)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]


def _mnist_splits(holdout: int) -> dict[str, Dataset]:
    a = load_mnist()
    xt, yt = torch.from_numpy(a["x_train"]), torch.from_numpy(a["y_train"])
    n_train = len(xt) - holdout
    return {
        "train": Dataset(xt[:n_train], yt[:n_train], 10, "mnist"),
        "holdout": Dataset(xt[n_train:], yt[n_train:], 10, "mnist"),
        "test": Dataset(torch.from_numpy(a["x_test"]), torch.from_numpy(a["y_test"]), 10, "mnist"),
    }


def _splits(name: str, a: dict, num_classes: int, holdout: int) -> dict[str, Dataset]:
    xt, yt = torch.from_numpy(a["x_train"]), torch.from_numpy(a["y_train"])
    n_train = len(xt) - min(holdout, len(xt))
    return {
        "train": Dataset(xt[:n_train], yt[:n_train], num_classes, name),
        "holdout": Dataset(xt[n_train:], yt[n_train:], num_classes, name),
        "test": Dataset(torch.from_numpy(a["x_test"]), torch.from_numpy(a["y_test"]), num_classes, name),
    }


def _fashion_mnist_splits(holdout: int, data_dir: str | None = None) -> dict[str, Dataset]:
    from genbench.data.fashion_mnist import load_fashion_mnist

    return _splits("fashion_mnist", load_fashion_mnist(data_dir), 10, holdout)


def _quickdraw_splits(holdout: int, data_dir: str | None = None, classes: list[str] | None = None,
                      train_per_class: int = 4000, test_per_class: int = 1000, seed: int = 0) -> dict[str, Dataset]:
    from genbench.data.quickdraw import load_quickdraw

    if not classes:
        raise GenbenchError("quickdraw: give data.classes in the study file (e.g. [rabbit, yoga, hand])")
    a = load_quickdraw(data_dir, list(classes), train_per_class=train_per_class, test_per_class=test_per_class,
                       seed=seed)
    # classes are stored block by block; the holdout takes the last images of every class, not one class
    perm = torch.randperm(len(a["x_train"]), generator=torch.Generator().manual_seed(seed)).numpy()
    a["x_train"], a["y_train"] = a["x_train"][perm], a["y_train"][perm]
    return _splits("quickdraw", a, len(classes), holdout)


def _cifar10_splits(holdout: int, data_dir: str | None = None) -> dict[str, Dataset]:
    from genbench.data.cifar10 import load_cifar10

    return _splits("cifar10", load_cifar10(data_dir), 10, holdout)


DATASETS: dict[str, Callable[..., dict[str, Dataset]]] = {
    "mnist": _mnist_splits, "fashion_mnist": _fashion_mnist_splits, "quickdraw": _quickdraw_splits,
    "cifar10": _cifar10_splits}


def load_dataset(name: str | dict, *, holdout: int = 5000, **options) -> dict[str, Dataset]:
    """Load ``name`` as splits ``train``, ``holdout`` (the last ``holdout`` training images, never trained
    on: the real-data floor of every metric) and ``test``. ``options`` go to the dataset's loader (``data_dir``
    for fashion_mnist / cifar10; ``data_dir``, ``classes``, ``train_per_class``, ``test_per_class``, ``seed``
    for quickdraw). A mapping ``{kind: folder | npz, path: ...}`` is a study's own dataset
    (:func:`genbench.data.custom.load_custom`; no options).

    Raises:
        GenbenchError: unknown dataset name or option; AssetError: the dataset's files are missing or corrupt.
    """
    if isinstance(name, dict):
        from genbench.data.custom import load_custom

        return load_custom(name, holdout)
    if name not in DATASETS:
        raise GenbenchError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    try:
        return DATASETS[name](holdout, **options) if options else DATASETS[name](holdout)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise GenbenchError(f"dataset {name!r}: {e}; see the study file's `data` section") from e


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (``x / 127.5 - 1``)."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding (not truncating) after clamping. The only door into metrics
    and image files."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def batches(ds: Dataset, batch_size: int, generator: torch.Generator, *, drop_last: bool = True,
            shard: tuple[int, int] | None = None):
    """Yield ``(x float32 [-1,1] (B,C,H,W), y int64 (B,))`` batches from one permutation per epoch.

    Batches are sliced from the uint8 tensor in memory and converted on the fly: no per-sample Python work.
    ``shard=(rank, world)`` (data-parallel training): ``batch_size`` is the global batch; every rank draws the
    same permutation from its identically seeded ``generator`` and gets rows ``[rank * b, (rank + 1) * b)`` of
    each global batch, ``b = batch_size // world`` (``batch_size`` must be a multiple of ``world``).
    """
    n = len(ds)
    perm = torch.randperm(n, generator=generator)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(0, stop, batch_size):
        idx = perm[i : i + batch_size]
        if shard is not None:
            rank, world = shard
            b = batch_size // world
            idx = idx[rank * b:(rank + 1) * b]
        yield to_float(ds.x[idx]), ds.y[idx]


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


__all__ = ["Dataset", "DATASETS", "load_dataset", "to_float", "to_uint8", "batches", "num_batches"]
