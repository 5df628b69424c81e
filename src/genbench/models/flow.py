"""Conditional flow matching with straight paths (Lipman et al. 2023; Liu et al. 2023, rectified flow): a
U-Net that predicts the velocity of the path from noise to data, and its training loss.

Convention (Lipman et al. 2023, sec. 4.1 with sigma_min = 0, i.e. rectified flow): t in [0, 1] runs from noise
to data, x_t = (1 - t) x_0 + t x_1 with x_0 ~ N(0, I) and x_1 a data image, and the network regresses the
conditional velocity u_t = x_1 - x_0 (eq. 23). Sampling integrates dx/dt = v(x, t) from t = 0 to 1
(:mod:`genbench.sampling.flow`). diffusers' FlowMatch schedulers use the reverse direction (sigma = 1 - t from
noise 1 to data 0, velocity x_0 - x_1); this module does not depend on them.

The network is the DDPM's U-Net (:class:`genbench.models.unet.UNet`); its sinusoidal time embedding receives
``time_scale * t`` so that its frequencies see the same 0..1000 range as the DDPM's integer timesteps.
Classifier-free guidance: labels dropped to the null label ``num_classes`` with probability ``p_uncond``
(Ho & Salimans 2022); the guided velocity is combined at sampling time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genbench.models.unet import UNet, drop_labels
from genbench.runtime.device import rand, randn


class FlowMatching(nn.Module):
    """Flow-matching model: network + path + loss (no sampler; see :mod:`genbench.sampling.flow`).

    Args:
        widths, attention, dropout: U-Net settings (see :class:`UNet`).
        num_classes: 0 = unconditional; > 0 = class-conditional with label dropout ``p_uncond``.
        p_uncond: probability of replacing a label by the null label in training (Ho & Salimans 2022).
        time_scale: the U-Net's time embedding receives ``time_scale * t``.
        time_sampling: how training draws t: "uniform" (t ~ U[0, 1], Lipman et al. 2023) or "logit_normal"
            (t = sigmoid(u), u ~ N(0, 1): Esser et al. 2024, sec. 3.1, eq. 19 with m = 0, s = 1), which puts more
            training on the middle of the path, where the velocity is hardest to predict.
        image_shape: (C, H, W).
    """

    genbench_family = "flow"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, widths=(32, 64, 64), attention: bool = True, dropout: float = 0.0,
                 num_classes: int = 0, p_uncond: float = 0.1, time_scale: float = 1000.0,
                 time_sampling: str = "uniform", image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        if time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling must be uniform or logit_normal, got {time_sampling!r}")
        self.time_sampling = time_sampling
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.p_uncond, self.time_scale = p_uncond, float(time_scale)
        self.unet = UNet(channels=image_shape[0], widths=tuple(widths), num_classes=num_classes,
                         attention=attention, dropout=dropout)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity v(x_t, t): x_t float32 (B, C, H, W), t float (B,) in [0, 1], y int64 (B,) or None
        (index ``num_classes`` = null label) -> float32 (B, C, H, W)."""
        return self.unet(x_t, t.float() * self.time_scale, y)

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Conditional flow-matching loss E_{t, x_0, x_1} ||v(x_t, t) - (x_1 - x_0)||^2 (Lipman et al. 2023,
        eq. 23 with sigma_min = 0), t ~ U[0, 1] or logit-normal (``time_sampling``).

        Args:
            x: float32 (B, C, H, W) data in [-1, 1] (x_1).
            y: int64 (B,) labels (conditional models) or None.
            generator: draws t, the noise x_0 and the label-dropout mask.

        Returns:
            {"loss": scalar float32} (mean squared error per pixel).
        """
        b = x.shape[0]
        if self.time_sampling == "logit_normal":
            t = torch.sigmoid(randn((b,), generator, x.device))
        else:
            t = rand((b,), generator, x.device)
        x0 = randn(x.shape, generator, x.device)
        tb = t.view(b, 1, 1, 1)
        x_t = (1 - tb) * x0 + tb * x  # shape (B, C, H, W)
        y = drop_labels(y, self.num_classes, self.p_uncond, generator, x.device)
        pred = self(x_t, t, y)
        return {"loss": F.mse_loss(pred.float(), x - x0)}
