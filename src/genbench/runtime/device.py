"""Device selection and device-independent random draws.

``GENBENCH_DEVICE`` (or ``genbench --device``) picks the device: ``auto`` (default: CUDA when available, else
CPU), ``cpu``, ``cuda``, ``cuda:1``... Random tensors are always drawn from CPU ``torch.Generator``s and then
moved, so a seeded run draws the same numbers on any device (and CPU results are unchanged by this module).
"""

from __future__ import annotations

import os

import torch

from genbench.errors import GenbenchError


def get_device() -> torch.device:
    name = os.environ.get("GENBENCH_DEVICE", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise GenbenchError(f"GENBENCH_DEVICE={name!r} is not a device; use auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenbenchError(f"device {name} requested but CUDA is not available; use --device cpu")
    return dev


def autocast(device: torch.device, precision: str):
    """bf16 autocast on the device's type, or a no-op for fp32."""
    import contextlib

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class BatchShard:
    """Stands in for a ``torch.Generator`` in data-parallel training: every draw is made for the global batch
    (``shape[0] * world`` rows) from ``generator`` and this rank's rows ``[rank * b, (rank + 1) * b)`` are
    returned. All ranks draw the same numbers, so each sample of a global batch gets the noise a single process
    would give it, and the generator advances as in a single process. Draws must be batch-first."""

    def __init__(self, generator: torch.Generator, rank: int, world: int):
        self.generator, self.rank, self.world = generator, rank, world

    def draw(self, fn, shape, **kw) -> torch.Tensor:
        shape = tuple(shape)
        b = shape[0]
        full = fn((b * self.world, *shape[1:]), generator=self.generator, **kw)
        return full[self.rank * b:(self.rank + 1) * b]


def randn(shape, generator, device, dtype=None) -> torch.Tensor:
    if isinstance(generator, BatchShard):
        return generator.draw(torch.randn, shape, dtype=dtype).to(device)
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def randint(high: int, shape, generator, device) -> torch.Tensor:
    if isinstance(generator, BatchShard):
        return generator.draw(lambda s, **kw: torch.randint(0, high, s, **kw), shape).to(device)
    return torch.randint(0, high, shape, generator=generator).to(device)


def rand(shape, generator, device) -> torch.Tensor:
    if isinstance(generator, BatchShard):
        return generator.draw(torch.rand, shape).to(device)
    return torch.rand(shape, generator=generator).to(device)
