"""The sampler of shortcut models (Frans et al. 2024, arXiv 2410.12557, sec. 3: sampling).

With K steps (K a power of two, 1 <= K <= the model's ``max_steps``), d = 1 / K and t_k = k d:

    x_{k+1} = x_k + d s(x_k, t_k, d),   k = 0 .. K - 1,

from noise x_0 (t = 0) to an image (t = 1). NFE = K (x2 under classifier-free guidance). The last step is
evaluated at t = 1 - d, never at t = 1 (see :mod:`genbench.sampling.flow`). K = max_steps is Euler on the
flow-matching velocity (the model's finest step, :mod:`genbench.models.shortcut`).

Classifier-free guidance combines the conditional and unconditional shortcuts, s_u + w (s_c - s_u) (Ho & Salimans
2022, eq. 6, applied to s at the step size of the sampler; Frans et al. 2024 guide the same way), through the shared
:func:`genbench.sampling.diffusion.guided` with d bound to the sampler's step size.
"""

from __future__ import annotations

import torch

from genbench.errors import GenbenchError
from genbench.sampling.diffusion import guided

SHORTCUT_SAMPLERS = ("shortcut",)


def check_steps(steps, max_steps: int, where: str = "steps") -> None:
    """Refuse a step count the shortcut model was not trained for.

    Raises:
        GenbenchError: ``steps`` not a power of two in 1..max_steps (one line naming the allowed values).
    """
    ok = isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= max_steps
    if not (ok and steps & (steps - 1) == 0):
        allowed = ", ".join(str(2 ** j) for j in range(max_steps.bit_length()))
        raise GenbenchError(f"{where}: a shortcut model samples with a power of two of steps up to its max_steps="
                            f"{max_steps} (the step sizes it was trained on), got {steps!r}; use one of {allowed}")


class _AtStep:
    """``model(x, t, y)`` with the step size d bound, the call :func:`guided` makes (it doubles the batch under
    guidance, so d is expanded to whatever batch it receives)."""

    def __init__(self, model, d: float):
        self.model, self.d, self.num_classes = model, d, getattr(model, "num_classes", 0)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.model(x_t, t, y, d=torch.full((x_t.shape[0],), self.d, device=x_t.device))


@torch.no_grad()
def shortcut_loop(model, x_0: torch.Tensor, *, y: torch.Tensor | None, steps: int = 2,
                  guidance_scale: float = 1.0) -> torch.Tensor:
    """K shortcut steps from noise ``x_0`` (t = 0) to t = 1.

    Args:
        model: ``model(x_t, t, y, d=d)`` -> shortcut, t and d float (n,) in [0, 1]; ``num_classes`` and
            ``max_steps`` attributes. E.g. :class:`genbench.models.shortcut.ShortcutModel`.
        x_0: float32 (n, C, H, W) standard normal.
        y: int64 (n,) labels or None.
        steps: K, a power of two in 1..model.max_steps (NFE = K; x2 with guidance).
        guidance_scale: classifier-free guidance w >= 0.

    Returns:
        float32 (n, C, H, W) at t = 1, not clamped.

    Raises:
        GenbenchError: ``steps`` not a power of two in 1..max_steps.
    """
    check_steps(steps, model.max_steps)
    n, d = x_0.shape[0], 1.0 / steps
    step = _AtStep(model, d)
    x = x_0
    for k in range(steps):
        s = guided(step, x, torch.full((n,), k * d, device=x.device), y, guidance_scale)
        x = x + d * s
    return x
