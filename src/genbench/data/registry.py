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


DATASETS: dict[str, Callable[[int], dict[str, Dataset]]] = {"mnist": _mnist_splits}


def load_dataset(name: str, *, holdout: int = 5000) -> dict[str, Dataset]:
    """Load ``name`` as splits ``train``, ``holdout`` (the last ``holdout`` training images, never trained
    on: the real-data floor of every metric) and ``test``.

    Raises:
        GenbenchError: unknown dataset name.
    """
    if name not in DATASETS:
        raise GenbenchError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](holdout)


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (``x / 127.5 - 1``)."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding (not truncating) after clamping. The only door into metrics
    and image files."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def batches(ds: Dataset, batch_size: int, generator: torch.Generator, *, drop_last: bool = True):
    """Yield ``(x float32 [-1,1] (B,C,H,W), y int64 (B,))`` batches from one permutation per epoch.

    Batches are sliced from the uint8 tensor in memory and converted on the fly: no per-sample Python work.
    """
    n = len(ds)
    perm = torch.randperm(n, generator=generator)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(0, stop, batch_size):
        idx = perm[i : i + batch_size]
        yield to_float(ds.x[idx]), ds.y[idx]


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


__all__ = ["Dataset", "DATASETS", "load_dataset", "to_float", "to_uint8", "batches", "num_batches"]
