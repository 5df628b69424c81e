"""DDPM (Ho et al. 2020): a U-Net, a noise schedule, and the denoising objective.

Two network parameterisations share the schedule and every sampler:

- ``epsilon`` / ``v_prediction``: the U-Net predicts the noise eps (Ho et al. 2020, eq. 14) or v (Salimans & Ho
  2022), optionally Min-SNR-weighted (Hang et al. 2023). With eps-prediction the loss at high SNR (small t) is
  nearly free to ignore: Min-SNR-5 left the quick MNIST model at eps-MSE 0.63 at t = 5 against 0.20 unweighted,
  and its deterministic samplers stopped improving past 20 steps (docs/RESULTS.md).
- ``edm``: EDM's preconditioning, noise distribution and loss weight (Karras et al. 2022, sec. 5 and Table 1),
  which train every noise level with an effective weight 1 on the network's own output. The VP state
  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps is the EDM state x = x0 + sigma n scaled by sqrt(abar_t), with
  sigma_t = sqrt((1 - abar_t) / abar_t) (Karras et al. 2022, eq. 4 with s(t) = sqrt(abar_t)), so

      D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))        (Karras et al., eq. 7)
      c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
      c_in = 1 / sqrt(sigma^2 + sigma_data^2)                                             (Table 1, "EDM")

  and training draws ln sigma ~ N(P_mean, P_std^2) (P_mean = -1.2, P_std = 1.2) with loss weight
  lambda(sigma) = 1 / c_out^2, i.e. E ||F - (x0 - c_skip x) / c_out||^2 (eq. 8 with Table 1). c_noise is the VP
  column's: the continuous timestep t(sigma) on the model's own schedule (Table 1, "VP": c_noise = (M - 1) t), so
  the U-Net's time embedding sees the same 0..T-1 range as with eps-prediction; sigma is clamped to the schedule's
  range [sigma_0, sigma_{T-1}] (0.010 to 157 for the linear 1e-4..0.02 schedule), the only noise levels a sampler
  visits. The network returns D (the x0 estimate), so the diffusers schedulers run with
  ``prediction_type="sample"``, and every sampler works unchanged.

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

from genbench.runtime.device import randint, randn
from genbench.models.unet import UNet, drop_labels


PREDICTION_TYPES = ("epsilon", "v_prediction", "edm")


class DDPM(nn.Module):
    """Denoising diffusion model.

    Args:
        widths, attention, dropout: U-Net settings (see :class:`UNet`).
        num_classes: 0 = unconditional; >0 = class-conditional with label dropout ``p_uncond``.
        timesteps: T.
        beta_start, beta_end, beta_schedule: noise schedule (diffusers names: "linear", "squaredcos_cap_v2").
        prediction_type: "epsilon" (Ho et al. 2020, eq. 14), "v_prediction" (Salimans & Ho 2022) or "edm"
            (Karras et al. 2022 preconditioning: the model returns the x0 estimate D; module docstring).
        p_uncond: probability of replacing a label by the null label in training (Ho & Salimans 2022).
        min_snr_gamma: None = the plain L_simple (every timestep weighted 1); a number gamma > 0 = Min-SNR-gamma
            loss weighting (Hang et al. 2023, eq. 7-8: weight min(SNR_t, gamma) / SNR_t for epsilon-prediction,
            min(SNR_t, gamma) / (SNR_t + 1) for v-prediction; gamma = 5 in the paper), which stops the
            high-SNR timesteps from dominating the gradient and converges faster. Not with "edm" (its own weight).
        sigma_data, p_mean, p_std: EDM's data standard deviation and log-normal training noise (Karras et al.
            2022, Table 1: 0.5, -1.2, 1.2); used by "edm" only.
        image_shape: (C, H, W).

    Raises:
        ValueError: an unknown prediction_type, min_snr_gamma <= 0, min_snr_gamma with "edm", sigma_data or
            p_std <= 0.

    Forward: the network, x_t float32 (B, C, H, W), t int64 (B,) in [0, T), y int64 (B,) or None (index
    ``num_classes`` = null label) -> eps, v or (``edm``) the x0 estimate D, float32 (B, C, H, W).
    """

    genbench_family = "diffusion"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, widths=(32, 64, 64), attention: bool = True, dropout: float = 0.0,
                 num_classes: int = 0, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 beta_schedule: str = "linear", prediction_type: str = "epsilon", p_uncond: float = 0.1,
                 min_snr_gamma: float | None = None, sigma_data: float = 0.5, p_mean: float = -1.2,
                 p_std: float = 1.2, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.p_uncond = p_uncond
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be a number > 0 or null, got {min_snr_gamma!r}")
        if min_snr_gamma is not None and prediction_type == "edm":
            raise ValueError("min_snr_gamma does not apply to prediction_type edm (EDM has its own loss weight); "
                             "set min_snr_gamma: null")
        if not (sigma_data > 0 and p_std > 0):
            raise ValueError(f"sigma_data and p_std must be > 0, got {sigma_data!r}, {p_std!r}")
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.prediction_type = prediction_type
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)
        self.schedule_config = dict(num_train_timesteps=timesteps, beta_start=beta_start, beta_end=beta_end,
                                    beta_schedule=beta_schedule,
                                    prediction_type="sample" if prediction_type == "edm" else prediction_type)
        self.scheduler = DDPMScheduler(**self.schedule_config)
        ab = self.scheduler.alphas_cumprod.double()
        # ln sigma_t of the EDM view (increasing in t), float64 on the CPU (not a buffer: a dtype cast of the model
        # must not round it); :meth:`_ls` moves it to the batch's device
        self._log_sigmas = 0.5 * torch.log((1 - ab) / ab)
        self.unet = UNet(channels=image_shape[0], widths=tuple(widths), num_classes=num_classes,
                         attention=attention, dropout=dropout)

    @property
    def timesteps(self) -> int:
        return self.schedule_config["num_train_timesteps"]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.prediction_type != "edm":
            return self.unet(x_t, t, y).float()
        log_sigma = self._ls(t.device)[t]
        ab = torch.sigmoid(-2 * log_sigma).float().view(-1, 1, 1, 1)  # 1 / (1 + sigma^2) = abar_t
        return self.denoise(x_t / ab.sqrt(), log_sigma.exp().float(), y)

    def _ls(self, device) -> torch.Tensor:
        return self._log_sigmas.to(device)  # no copy on the CPU

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """EDM's preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) (Karras et al. 2022,
        eq. 7, Table 1; c_noise = the continuous timestep t(sigma) of this schedule, module docstring).

        x float32 (B, C, H, W): x0 + sigma n (the EDM state, NOT scaled by sqrt(abar)); sigma float32 (B,) > 0;
        y as in forward. Returns the x0 estimate, float32 (B, C, H, W)."""
        sd2, s = self.sigma_data ** 2, sigma.float().view(-1, 1, 1, 1)
        c_skip = sd2 / (s ** 2 + sd2)
        c_out = s * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in = 1 / (s ** 2 + sd2).sqrt()
        return c_skip * x + c_out * self.unet(c_in * x, self.noise_label(sigma), y).float()

    def noise_label(self, sigma: torch.Tensor) -> torch.Tensor:
        """c_noise: the continuous timestep t in [0, T - 1] with sigma_t = sigma, linear in log sigma between the
        schedule's integer timesteps (Karras et al. 2022, Table 1, VP column). sigma (B,) > 0 -> float32 (B,);
        sigma outside the schedule's range maps to 0 or T - 1."""
        ls = self._ls(sigma.device)
        q = sigma.double().log().clamp(ls[0], ls[-1])
        i = torch.searchsorted(ls, q).clamp(1, len(ls) - 1)
        lo, hi = ls[i - 1], ls[i]
        return ((i - 1) + (q - lo) / (hi - lo)).float()

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The network's noise estimate eps_hat(x_t, t) whatever the parameterisation (x_t, t, y as in forward;
        eps from x0: (x_t - sqrt(abar) x0) / sqrt(1 - abar); from v: sqrt(abar) v + sqrt(1 - abar) x_t, Salimans &
        Ho 2022, sec. 4). For per-timestep loss curves (benchmarks/ddpm_per_t.py). Returns float32 like x_t."""
        out = self(x_t, t, y)
        ab = self.scheduler.alphas_cumprod.to(x_t.device)[t].float().view(-1, 1, 1, 1)
        if self.prediction_type == "edm":
            return (x_t - ab.sqrt() * out) / (1 - ab).sqrt()
        if self.prediction_type == "v_prediction":
            return ab.sqrt() * out + (1 - ab).sqrt() * x_t
        return out

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Simple loss L_simple = E ||target - model(x_t, t)||^2 (Ho et al. 2020, eq. 14), target eps or v,
        optionally Min-SNR-weighted per sample (``min_snr_gamma``; Hang et al. 2023).

        x float32 (B, C, H, W) in [-1, 1]; t ~ U{0..T-1}; labels dropped to the null label with p_uncond.
        Returns {"loss": scalar float32} (the weighted mean squared error per pixel). ``edm``: see
        :meth:`edm_losses`.
        """
        if self.prediction_type == "edm":
            return self.edm_losses(x, y, generator=generator)
        b = x.shape[0]
        t = randint(self.timesteps, (b,), generator, x.device)
        noise = randn(x.shape, generator, x.device)
        x_t = self.scheduler.add_noise(x, noise, t)
        y = drop_labels(y, self.num_classes, self.p_uncond, generator, x.device)
        if self.schedule_config["prediction_type"] == "v_prediction":
            target = self.scheduler.get_velocity(x, noise, t)
        else:
            target = noise
        pred = self.unet(x_t, t, y)
        if self.min_snr_gamma is None:
            return {"loss": F.mse_loss(pred.float(), target)}
        per_sample = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))  # (B,)
        return {"loss": (self.min_snr_weight(t) * per_sample).mean()}

    def edm_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """EDM's loss (Karras et al. 2022, eq. 8 with Table 1): ln sigma ~ N(p_mean, p_std^2), clamped to the
        schedule's sigma range; n ~ N(0, I); loss = mean lambda(sigma) ||D(x + sigma n; sigma) - x||^2 with
        lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2, which is the plain mean squared
        error of the U-Net's output F against (x - c_skip (x + sigma n)) / c_out.

        x float32 (B, C, H, W) in [-1, 1]; y int64 (B,) or None (dropped to the null label with p_uncond). Draws, in
        order: ln sigma (B,), n (B, C, H, W), the label-dropout mask (B,). Returns {"loss": scalar float32}."""
        b = x.shape[0]
        ls = self._log_sigmas
        log_sigma = (self.p_mean + self.p_std * randn((b,), generator, x.device)).clamp(float(ls[0]), float(ls[-1]))
        sigma = log_sigma.exp()
        noise = randn(x.shape, generator, x.device)
        y = drop_labels(y, self.num_classes, self.p_uncond, generator, x.device)
        s = sigma.view(-1, 1, 1, 1)
        weight = (s ** 2 + self.sigma_data ** 2) / (s * self.sigma_data) ** 2
        denoised = self.denoise(x + s * noise, sigma, y)
        return {"loss": (weight * (denoised - x) ** 2).mean()}

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
