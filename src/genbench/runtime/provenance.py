"""Where a number came from: package version, git commit, torch version, thread count, and what decides the
numerics on this machine (:func:`numerics`).

The same code, seed and thread count gave FIDs differing by 3-6x their sampling spread on two machines of the same
kind (issue 28): the CPU's instruction set picks the kernels (oneDNN and MKL choose AVX2, AVX-512 or AMX code paths
at run time, each summing in its own order), so a run records the ISA flags and library versions beside its numbers.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

import genbench


def to_yaml(obj: Any) -> str:
    """``obj`` as block-style YAML with the keys in their given order (safe dumper: plain data only)."""
    return yaml.safe_dump(obj, sort_keys=False)


ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
"""The x86 flags (Linux ``/proc/cpuinfo`` names) that change which kernels oneDNN / MKL / ATen run."""


def _cpuinfo(text: str | None = None) -> dict:
    """The CPU model and the :data:`ISA_FLAGS` present, from ``/proc/cpuinfo`` (``text``, or read here) where it
    exists; else ``platform`` only (flags None: unknown, e.g. macOS, Windows)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            text = ""
    flags = model = None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if flags is None and key in ("flags", "features"):  # x86 / aarch64
            flags = set(val.split())
        elif model is None and key in ("model name", "cpu model", "hardware"):
            model = val.strip()
    return {"model": model or platform.processor() or None, "machine": platform.machine(),
            "source": "/proc/cpuinfo" if flags is not None else "platform",
            "isa": None if flags is None else {f: f in flags for f in ISA_FLAGS}}


def _library_versions(config: str) -> dict:
    """oneDNN and MKL versions parsed from ``torch.__config__.show()`` (None where torch was built without them)."""
    dnn = re.search(r"(?:MKL-DNN|oneDNN)\D*v?(\d+(?:\.\d+)+)", config)
    mkl = re.search(r"Math Kernel Library Version (\S+?)(?:-Product|\s|$)", config)
    return {"onednn": dnn.group(1) if dnn else None, "mkl": mkl.group(1) if mkl else None}


@functools.lru_cache(maxsize=1)
def _static_numerics() -> dict:
    import torch

    try:
        config = torch.__config__.show()
    except Exception:  # noqa: BLE001 - a torch build without it: versions say None
        config = ""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older torch
        capability = None
    return {"cpu": _cpuinfo(), "torch_cpu_capability": capability, **_library_versions(config),
            "onednn_available": bool(torch.backends.mkldnn.is_available()),
            "mkl_available": bool(torch.backends.mkl.is_available()),
            "cuda": torch.version.cuda, "python": platform.python_version(), "system": platform.system()}


def numerics() -> dict:
    """What decides the low bits of every number on this machine: the CPU model and ISA flags (``/proc/cpuinfo``
    where it exists, else ``platform``), torch's CPU kernel level (``torch.backends.cpu.get_cpu_capability()``:
    DEFAULT, AVX2, AVX512...), the oneDNN and MKL versions (parsed from ``torch.__config__.show()``), the CUDA
    version torch was built for, and the thread counts (intra-op, inter-op, and ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` as set). The machine's part is read once per process; the thread counts each call.

    Returns:
        A dict of plain data (strings, bools, ints, None), for ``metrics.json`` and ``config.yaml``.
    """
    import torch

    return {**_static_numerics(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def provenance() -> dict:
    """Package version, git commit (if run from a checkout, else None), torch version, thread count and
    :func:`numerics` (under ``numerics``)."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001 - no git, not a checkout: provenance says None
        commit = None
    return {"genbench_version": genbench.__version__, "git_commit": commit, "torch": str(torch.__version__),
            "threads": torch.get_num_threads(), "numerics": numerics()}
