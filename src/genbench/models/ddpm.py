"""DDPM (Ho et al. 2020): a U-Net, a noise schedule, and the denoising objective.

The schedule (betas, alphas_cumprod, ``add_noise``) comes from diffusers' ``DDPMScheduler`` (linear
1e-4 -> 0.02 over T = 1000 by default, Ho et al. 2020 sec. 4). genbench owns the model, the loss and the
label dropout for classifier-free guidance (Ho & Salimans 2022). It knows no sampler: the sampling loops, the guided
combination of the network's outputs and the sampler settings (a study's model-level ``sampling:`` field) live
in :mod:`genbench.sampling`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from genbench.runtime.device import rand, randint, randn
from genbench.models.unet import UNet


class DDPM(nn.Module):
    """Denoising diffusion model.

    Args:
        widths, attention, dropout: U-Net settings (see :class:`UNet`).
        num_classes: 0 = unconditional; >0 = class-conditional with label dropout ``p_uncond``.
        timesteps: T.
        beta_start, beta_end, beta_schedule: noise schedule (diffusers names: "linear", "squaredcos_cap_v2").
        prediction_type: "epsilon" (Ho et al. 2020, eq. 14) or "v_prediction" (Salimans & Ho 2022).
        p_uncond: probability of replacing a label by the null label in training (Ho & Salimans 2022).
        image_shape: (C, H, W).

    Forward: the network, x_t float32 (B, C, H, W), t int64 (B,) in [0, T), y int64 (B,) or None (index
    ``num_classes`` = null label) -> eps or v, float32 (B, C, H, W).
    """

    genbench_family = "diffusion"  # the training objective and family metrics (models/registry.py)

    def __init__(self, *, widths=(32, 64, 64), attention: bool = True, dropout: float = 0.0,
                 num_classes: int = 0, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 beta_schedule: str = "linear", prediction_type: str = "epsilon", p_uncond: float = 0.1,
                 image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.p_uncond = p_uncond
        self.schedule_config = dict(num_train_timesteps=timesteps, beta_start=beta_start, beta_end=beta_end,
                                    beta_schedule=beta_schedule, prediction_type=prediction_type)
        self.scheduler = DDPMScheduler(**self.schedule_config)
        self.unet = UNet(channels=image_shape[0], widths=tuple(widths), num_classes=num_classes,
                         attention=attention, dropout=dropout)

    @property
    def timesteps(self) -> int:
        return self.schedule_config["num_train_timesteps"]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x_t, t, y).float()

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Simple loss L_simple = E ||target - model(x_t, t)||^2 (Ho et al. 2020, eq. 14), target eps or v.

        x float32 (B, C, H, W) in [-1, 1]; t ~ U{0..T-1}; labels dropped to the null label with p_uncond.
        """
        b = x.shape[0]
        t = randint(self.timesteps, (b,), generator, x.device)
        noise = randn(x.shape, generator, x.device)
        x_t = self.scheduler.add_noise(x, noise, t)
        if self.num_classes:
            drop = rand((b,), generator, x.device) < self.p_uncond
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        else:
            y = None
        if self.schedule_config["prediction_type"] == "v_prediction":
            target = self.scheduler.get_velocity(x, noise, t)
        else:
            target = noise
        pred = self.unet(x_t, t, y)
        return {"loss": F.mse_loss(pred.float(), target)}
