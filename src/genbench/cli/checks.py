"""The checks of the ``genbench`` command's options, run before any heavy import: counts and bounds, devices,
option combinations, trackers, memory estimates, and the one-line form of click's usage errors.

Each raises :class:`~genbench.errors.GenbenchError` with one line naming the option and the fix.
"""

from __future__ import annotations

import os
from typing import Optional

from genbench.errors import GenbenchError
# the run's checks (seeds, trackers, memory) live in the light module that `genbench run` and genbench.run() share
from genbench.studies.launch import ACTIVATION_FLOATS


MAX_THREADS = 1024


def check_device(device: str) -> None:
    """``--device``: auto, cpu, cuda or cuda:N of a GPU that exists; set for the whole process."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,3})?", device):
        raise GenbenchError(f"--device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    from genbench.runtime.device import get_device

    before = os.environ.get("GENBENCH_DEVICE")
    os.environ["GENBENCH_DEVICE"] = device
    try:
        dev = get_device()  # a CUDA device without CUDA: one line
        if dev.type == "cuda" and dev.index is not None:
            import torch

            if dev.index >= torch.cuda.device_count():
                raise GenbenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                                    f"device(s), numbered from 0")
    except GenbenchError:
        if before is None:  # a refused device leaves the environment as it was
            os.environ.pop("GENBENCH_DEVICE", None)
        else:
            os.environ["GENBENCH_DEVICE"] = before
        raise


def positive(value: Optional[int], option: str, hi: int = 1_000_000) -> None:
    """A count option must be 1..hi when given (0 used to be ignored, negatives crashed late)."""
    if value is not None and not 1 <= value <= hi:
        raise GenbenchError(f"{option} {value}: give an integer in 1..{hi:,}")


MAX_GUIDANCE = 1000.0  # as a model's guidance_scale parameter (studies/schema.py)


def check_memory_sample(n: int, batch: int, numel: int) -> None:
    """``genbench sample``: the uint8 images (twice: the batches and their concatenation), the PNG grid (and its
    encoding, ~3x) and one batch's float work, estimated before any image is drawn."""
    from genbench.io import check_memory

    need = n * numel * 5 + batch * numel * 4 * ACTIVATION_FLOATS
    fix = (f"lower --batch (e.g. --batch {max(1, min(batch, 1000))})" if batch * numel * 4 * ACTIVATION_FLOATS
           > n * numel * 5 else "lower --n")
    check_memory(need, f"--n {n} --batch {batch} ({numel:,} values per image)", fix)


def combination(flag: bool, message: str) -> None:
    """An option that another option (or the study) overrides or ignores is refused, never silently dropped."""
    if flag:
        raise GenbenchError(message)


def image_numel(model, ck) -> int:
    """Values per image of a trained model (its image_shape, else its dataset's; 3x64x64 when neither says)."""
    shape = getattr(model, "image_shape", None)
    try:
        if shape is None:
            from genbench.data.info import dataset_info

            shape = dataset_info(ck["config"]["dataset"]).image_shape
        c, h, w = (int(v) for v in shape)
        return c * h * w
    except Exception:  # noqa: BLE001 - a custom dataset or an outside model without image_shape
        return 3 * 64 * 64


def error_kind(e: BaseException) -> str | None:
    """'usage', 'abort' or 'exit' for the exceptions of click and of the click typer bundles (typer 0.29 ships
    its own copy, ``typer._click``, whose classes are not click's): matched by class name along the MRO, so
    whichever click resolves, its usage errors are caught."""
    names = {c.__name__ for c in type(e).__mro__}
    if "ClickException" in names or "UsageError" in names:
        return "usage"
    if "Abort" in names:
        return "abort"
    if "Exit" in names and hasattr(e, "exit_code"):
        return "exit"
    return None


def usage_line(e: BaseException) -> str:
    """One line for a usage error: the problem and where the help is."""
    ctx = getattr(e, "ctx", None)
    cmd = getattr(ctx, "command_path", None) or "genbench"
    if "NoArgsIsHelpError" in {c.__name__ for c in type(e).__mro__}:
        group = getattr(ctx, "command", None)
        names = ", ".join(getattr(group, "commands", {}) or ()) if group is not None else ""
        return f"missing command; run `{cmd} --help`" + (f" (commands: {names})" if names else "")
    msg = e.format_message() if hasattr(e, "format_message") else str(e)
    msg = " ".join(msg.split()) or type(e).__name__
    return f"{msg} (see `{cmd} --help`)"
