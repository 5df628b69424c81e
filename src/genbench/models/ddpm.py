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
        min_snr_gamma: None = the plain L_simple (every timestep weighted 1); a number gamma > 0 = Min-SNR-gamma
            loss weighting (Hang et al. 2023, eq. 7-8: weight min(SNR_t, gamma) / SNR_t for epsilon-prediction,
            min(SNR_t, gamma) / (SNR_t + 1) for v-prediction; gamma = 5 in the paper), which stops the
            high-SNR timesteps from dominating the gradient and converges faster.
        image_shape: (C, H, W).

    Forward: the network, x_t float32 (B, C, H, W), t int64 (B,) in [0, T), y int64 (B,) or None (index
    ``num_classes`` = null label) -> eps or v, float32 (B, C, H, W).
    """

    genbench_family = "diffusion"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, widths=(32, 64, 64), attention: bool = True, dropout: float = 0.0,
                 num_classes: int = 0, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 beta_schedule: str = "linear", prediction_type: str = "epsilon", p_uncond: float = 0.1,
                 min_snr_gamma: float | None = None, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.p_uncond = p_uncond
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon or v_prediction, got {prediction_type!r}")
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be a number > 0 or null, got {min_snr_gamma!r}")
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
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
        """Simple loss L_simple = E ||target - model(x_t, t)||^2 (Ho et al. 2020, eq. 14), target eps or v,
        optionally Min-SNR-weighted per sample (``min_snr_gamma``; Hang et al. 2023).

        x float32 (B, C, H, W) in [-1, 1]; t ~ U{0..T-1}; labels dropped to the null label with p_uncond.
        Returns {"loss": scalar float32} (the weighted mean squared error per pixel).
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
        if self.min_snr_gamma is None:
            return {"loss": F.mse_loss(pred.float(), target)}
        per_sample = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))  # (B,)
        return {"loss": (self.min_snr_weight(t) * per_sample).mean()}

    def min_snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma weights (Hang et al. 2023, eq. 7-8) for int64 timesteps t (B,) -> float32 (B,):
        min(SNR, gamma) / SNR (epsilon-prediction) or min(SNR, gamma) / (SNR + 1) (v-prediction), where
        SNR_t = alpha_bar_t / (1 - alpha_bar_t)."""
        ab = self.scheduler.alphas_cumprod.to(t.device)[t].float()
        snr = ab / (1 - ab)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.schedule_config["prediction_type"] == "v_prediction":
            return clipped / (snr + 1)
        return clipped / snr
