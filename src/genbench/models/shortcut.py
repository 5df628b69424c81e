"""Shortcut models (Frans, Hafner, Levine & Abbeel 2024, "One Step Diffusion via Shortcut Models", arXiv
2410.12557): one network s(x_t, t, d) conditioned on the time t and on the step size d, trained so that one step
of size 2d equals two steps of size d; it then samples in 1, 2, 4, ... steps (:mod:`genbench.sampling.shortcut`).

Convention: that of :mod:`genbench.models.flow` (rectified flow; Frans et al. 2024, sec. 2): t in [0, 1] runs from
noise to data, x_t = (1 - t) x_0 + t x_1, x_0 ~ N(0, I), x_1 a data image, and the flow-matching target is the
velocity x_1 - x_0. A step of size d is x_{t+d} = x_t + d s(x_t, t, d) (eq. 3), so s(x_t, t, d) is the average
velocity of the exact flow over [t, t + d] and s(x_t, t, d -> 0) the instantaneous velocity v(x_t, t).

Training (sec. 3, eq. 5 and Algorithm 1): on a share ``1 - consistency_fraction`` of the batch the flow-matching
loss ||s(x_t, t, 0) - (x_1 - x_0)||^2; on the other share (the paper's k = 1/4) the self-consistency loss
||s(x_t, t, 2d) - stopgrad(s_target)||^2 with (eq. 4)

    s_target = (s(x_t, t, d) + s(x'_{t+d}, t + d, d)) / 2,   x'_{t+d} = x_t + d s(x_t, t, d),

i.e. one step of 2d regresses onto two chained steps of d. Choices, where the paper leaves room:

- The step sizes are powers of two, d in {1/M, ..., 1/2} and 2d in {2/M, ..., 1}, M = ``max_steps`` (paper:
  M = 128). The level j of a step 2^-j is drawn uniformly from 0..log2(M) - 1 for each consistency sample (the
  authors' code spreads the levels evenly over that share instead of drawing them).
- "d = 0" is the finest step 1/M. The recursion must end on a step size the flow-matching loss trains: the
  smallest target evaluations s(., ., 1/M) are exactly the network the flow-matching part trains, as in the
  authors' implementation (``targets_shortcut.py``: the flow-matching part takes ``dt_base = log2(M)``). So the
  M-step sampler is Euler on the flow-matching velocity, and every d the network sees is one of log2(M) + 1
  levels.
- t lies on the grid of the step being trained: multiples of 2d for the consistency part (so t + 2d <= 1, and t is
  a point the 1/(2d)-step sampler visits), multiples of 1/M for the flow-matching part (the authors' code does
  both). No network evaluation ever happens at t = 1, where the velocity of data on a low-dimensional set is
  undefined (see :mod:`genbench.sampling.flow`).
- The targets come from the online weights under ``torch.no_grad`` (the stopgrad of Algorithm 1), with dropout
  off. The authors' code can take them from the EMA weights (``bootstrap_ema``); here the training loop owns the
  EMA copy and the model's loss does not see it.
- Class labels are dropped to the null label ``num_classes`` with probability ``p_uncond`` on both shares, and
  each consistency target is computed with the same (possibly null) label, so the unconditional shortcuts that
  classifier-free guidance needs at d > 1/M are trained too (the authors' code keeps the true labels on the
  consistency share). No guidance inside the targets; guidance is applied at sampling only (default w = 1).
- No clipping of x'_{t+d} or of the target (the authors' code clips both to [-4, 4]; Algorithm 1 does not).

The step size enters the network as a second sinusoidal embedding (its own MLP, summed into the time embedding:
:class:`genbench.models.unet.UNet` with ``step_embedding=True``) of its level log2(1/d) scaled to
[0, ``time_scale``] (d = 1 -> 0, d = 1/M -> time_scale), the range t's embedding sees (``time_scale * t``). The
authors embed the integer level log2(1/d) the same way as t.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.models.unet import UNet, drop_labels
from genbench.runtime.device import rand, randint, randn

DEFAULT_MAX_STEPS = 128  # M, as Frans et al. 2024 train (128 steps of 1/128 at the finest)


def is_power_of_two(n) -> bool:
    """Whether ``n`` is an int (not a bool) equal to 2^j for some j >= 0."""
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n & (n - 1) == 0


class ShortcutModel(nn.Module):
    """Shortcut model: network s(x_t, t, d) + straight path + loss (no sampler; see
    :mod:`genbench.sampling.shortcut`).

    Args:
        widths, attention, dropout: U-Net settings (see :class:`UNet`).
        num_classes: 0 = unconditional; > 0 = class-conditional with label dropout ``p_uncond``.
        p_uncond: probability of replacing a label by the null label in training (Ho & Salimans 2022).
        time_scale: the U-Net's time embedding receives ``time_scale * t``, its step embedding
            ``time_scale * log2(1/d) / log2(max_steps)``.
        max_steps: M, a power of two >= 2: the finest step is 1/M (the flow-matching level), the sampler takes
            1, 2, 4, ..., M steps.
        consistency_fraction: the share k of each batch in [0, 1) trained on self-consistency targets
            (paper: 1/4); the first floor(k B) samples of a batch of B.
        image_shape: (C, H, W).

    Raises:
        ValueError: max_steps not a power of two >= 2, consistency_fraction or p_uncond outside [0, 1), or
            time_scale <= 0 (one line naming the fix).
    """

    genbench_family = "shortcut"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, widths=(32, 64, 64), attention: bool = True, dropout: float = 0.0,
                 num_classes: int = 0, p_uncond: float = 0.1, time_scale: float = 1000.0,
                 max_steps: int = DEFAULT_MAX_STEPS, consistency_fraction: float = 0.25,
                 image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        if not is_power_of_two(max_steps) or max_steps < 2:
            raise ValueError(f"max_steps must be a power of two >= 2 (e.g. 64, 128, 256), got {max_steps!r}")
        if not 0 <= consistency_fraction < 1:
            raise ValueError(f"consistency_fraction must be in [0, 1) (the paper uses 0.25), got "
                             f"{consistency_fraction!r}")
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.p_uncond, self.time_scale = p_uncond, float(time_scale)
        self.max_steps, self.consistency_fraction = int(max_steps), float(consistency_fraction)
        self.levels = int(math.log2(max_steps))  # step sizes 2^0 .. 2^-levels
        self.unet = UNet(channels=image_shape[0], widths=tuple(widths), num_classes=num_classes,
                         attention=attention, dropout=dropout, step_embedding=True)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, *,
                d: torch.Tensor | float | None = None) -> torch.Tensor:
        """The shortcut s(x_t, t, d): the step x_t + d s lands on the model's x_{t+d} (Frans et al. 2024, eq. 3).

        Args:
            x_t: float32 (B, C, H, W).
            t: float (B,) in [0, 1).
            y: int64 (B,) labels in 0..num_classes (num_classes = null label) or None.
            d: step size, float (B,) or a number, each a power of two in [1/max_steps, 1]; None = 1/max_steps
                (the flow-matching velocity, so ``model(x_t, t, y)`` is a plain flow-matching model).

        Returns:
            float32 (B, C, H, W).
        """
        if d is None:
            d = 1.0 / self.max_steps
        d = torch.as_tensor(d, dtype=torch.float32, device=x_t.device).expand(x_t.shape[0])
        level = -torch.log2(d)  # exact for powers of two: 0 (d = 1) .. levels (d = 1/M)
        return self.unet(x_t, t.float() * self.time_scale, y, step=level * (self.time_scale / self.levels))

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The shortcut objective (Frans et al. 2024, eq. 5, Algorithm 1; the choices in the module notes).

        Of a batch of B, the first n = floor(k B) samples (k = ``consistency_fraction``) get the self-consistency
        loss ||s(x_t, t, 2d) - stopgrad((s(x_t, t, d) + s(x_t + d s(x_t, t, d), t + d, d)) / 2)||^2 (eq. 4) with
        2d = 2^-j, j uniform in 0..log2(M) - 1, t uniform on {0, 2d, 4d, ..., 1 - 2d}; the other B - n get the
        flow-matching loss ||s(x_t, t, 1/M) - (x_1 - x_0)||^2 (Lipman et al. 2023, eq. 23 with sigma_min = 0),
        t uniform on {0, 1/M, ..., 1 - 1/M}. Costs one forward with gradients on B samples and two without on n.

        Args:
            x: float32 (B, C, H, W) data in [-1, 1] (x_1).
            y: int64 (B,) labels (conditional models) or None.
            generator: draws the levels, t, the noise x_0 and the label-dropout mask (every draw batch-first,
                B rows, so data-parallel training draws the global batch's numbers).

        Returns:
            {"loss": the mean squared error per pixel over all B samples (gradients flow), "loss_fm": over the
            flow-matching share, "loss_sc": over the self-consistency share (each a float32 scalar, detached;
            0 for an empty share)}. loss = ((B - n) loss_fm + n loss_sc) / B.
        """
        b = x.shape[0]
        n = int(self.consistency_fraction * b)
        j = randint(self.levels, (b,), generator, x.device)[:n]  # level of the trained step 2d = 2^-j
        u = rand((b,), generator, x.device)
        x0 = randn(x.shape, generator, x.device)
        y = drop_labels(y, self.num_classes, self.p_uncond, generator, x.device)
        # the step each sample trains: 2d on the consistency share, 1/M on the flow-matching share
        step = torch.full((b,), 1.0 / self.max_steps, device=x.device)
        step[:n] = torch.exp2(-j.float())
        t = torch.floor(u / step) * step  # a multiple of the step in [0, 1 - step]; exact (powers of two)
        tb = t.view(b, 1, 1, 1)
        x_t = (1 - tb) * x0 + tb * x  # shape (B, C, H, W)
        target = x - x0  # the flow-matching velocity; the first n rows are replaced below
        if n:
            target = torch.cat([self._consistency_target(x_t[:n], t[:n], None if y is None else y[:n],
                                                         step[:n] / 2), target[n:]])
        pred = self(x_t, t, y, d=step)
        err = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))  # shape (B,)
        loss_sc = err[:n].sum() / max(n, 1)
        loss_fm = err[n:].sum() / max(b - n, 1)
        return {"loss": err.mean(), "loss_fm": loss_fm.detach(), "loss_sc": loss_sc.detach()}

    @torch.no_grad()
    def _consistency_target(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
                            d: torch.Tensor) -> torch.Tensor:
        """stopgrad((s(x_t, t, d) + s(x_t + d s(x_t, t, d), t + d, d)) / 2) (Frans et al. 2024, eq. 4), with
        dropout off. x_t float32 (n, C, H, W), t and d float (n,) -> float32 (n, C, H, W)."""
        was = self.training
        self.eval()
        try:
            s1 = self(x_t, t, y, d=d)
            s2 = self(x_t + d.view(-1, 1, 1, 1) * s1, t + d, y, d=d)
        finally:
            self.train(was)
        return (s1 + s2) / 2
