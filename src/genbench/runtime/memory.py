"""Seconds and peak memory per pipeline stage (issue 26): what users of a benchmark tool read beside the metrics.

Peak resident memory on Linux is the kernel's high-water mark ``VmHWM`` of ``/proc/self/status`` (kibibytes). Writing
``5`` to ``/proc/self/clear_refs`` resets it to the current resident size (Linux >= 4.0, ``Documentation/
admin-guide/mm/soft-dirty.rst``), so each stage's peak is its own. Where that reset is refused (another OS, or a
kernel without it) the peak is the process's since it started (``resource.getrusage``'s ``ru_maxrss``), and the
record says so (``peak_scope``). On CUDA the stage's peak allocated tensor memory is added
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")
MIB = 2 ** 20


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size in bytes (``VmHWM``; else ``ru_maxrss``), or None where neither is
    available."""
    try:
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    try:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r) if sys.platform == "darwin" else int(r) * 1024  # macOS: bytes, Linux: KiB
    except (ImportError, OSError):
        return None


def reset_peak() -> bool:
    """Reset the peak-RSS high-water mark to the current resident size; False where the OS does not allow it."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def _cuda():
    try:
        import torch

        return torch.cuda if torch.cuda.is_available() else None
    except ImportError:
        return None


@contextmanager
def stage(name: str, record: dict):
    """Measure the block as stage ``name``: on exit ``record[name]`` holds ``seconds`` (wall), ``peak_rss_mib``
    (MiB, of this stage when ``peak_scope`` is ``"stage"``, else since the process started: ``"process"``), and on
    CUDA ``peak_cuda_mib`` (peak allocated tensor memory of the stage)."""
    scope = "stage" if reset_peak() else "process"
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        peak = peak_rss_bytes()
        entry = {"seconds": time.perf_counter() - t0,
                 "peak_rss_mib": None if peak is None else round(peak / MIB, 1), "peak_scope": scope}
        if cuda is not None:
            entry["peak_cuda_mib"] = round(cuda.max_memory_allocated() / MIB, 1)
        record[name] = entry
