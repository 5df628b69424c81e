"""Batches and the one tensor convention: uint8 [0, 255] in memory, float32 [-1, 1] inside models.

:func:`to_uint8` (round, never truncate) is the only door into metrics and image files; :func:`batches` slices
batches from a :class:`~genbench.data.base.Dataset`'s uint8 tensor in memory.
"""

from __future__ import annotations

import torch

from genbench.data.base import Dataset


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
