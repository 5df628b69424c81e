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


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device | None = None) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA device with bf16 support, or a CPU with
    AVX512-BF16 or AMX tiles. Elsewhere PyTorch emulates bf16, and a bf16-autocast training step ran about 7x
    slower than fp32 (a small conv net, 2-core AVX2 EPYC; shared/MEASURED.md's 1.4-2.3x gain is on AMX)."""
    device = device or get_device()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; ``"bf16"`` and ``"fp32"`` are kept
    as asked. Runs record the resolved value, so a report says which arithmetic produced its numbers.

    Raises:
        GenbenchError: an unknown precision."""
    if precision not in PRECISIONS:
        raise GenbenchError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on the device's type, or a no-op for fp32 (``"auto"`` resolves first)."""
    import contextlib

    if resolve_precision(precision, device) == "bf16":
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
