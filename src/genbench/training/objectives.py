"""One optimisation step per objective. Each returns a dict of floats to log.

- ``likelihood`` (VAE, DDPM): minimise ``model.training_losses(x, y)["loss"]`` with one Adam.
- ``adversarial`` (GAN, cGAN): one discriminator step then one generator step per batch (Goodfellow et al.
  2014, Alg. 1 with k = 1), non-saturating generator loss.
"""

from __future__ import annotations

import torch

from genbench.device import randint, randn


def make_optimizers(model, family: str, opt_cfg: dict) -> dict[str, torch.optim.Optimizer]:
    lr, betas = opt_cfg["lr"], tuple(opt_cfg.get("betas", (0.9, 0.999)))
    if family == "gan":
        return {"g": torch.optim.Adam(model.generator_parameters(), lr=lr, betas=betas),
                "d": torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=betas)}
    return {"model": torch.optim.Adam(model.parameters(), lr=lr, betas=betas)}


def make_schedulers(opts: dict[str, torch.optim.Optimizer], opt_cfg: dict, total_steps: int) -> dict:
    """Per-step learning-rate schedules: ``schedule: constant`` (default) or ``cosine`` (decay from lr to 0 over
    the run, Loshchilov & Hutter 2017, eq. 5 without restarts)."""
    kind = opt_cfg.get("schedule", "constant")
    if kind == "constant":
        return {}
    if kind == "cosine":
        return {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(total_steps, 1)) for k, o in opts.items()}
    from genbench.errors import GenbenchError

    raise GenbenchError(f"optimizer.schedule: unknown schedule {kind!r}; use 'constant' or 'cosine'")


def likelihood_step(model, opts, x, y, *, generator, autocast) -> dict[str, float]:
    opt = opts["model"]
    with autocast():
        losses = model.training_losses(x, y if model.num_classes else None, generator=generator)
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    return {k: v.item() for k, v in losses.items()}


def adversarial_step(model, opts, x, y, *, generator, autocast) -> dict[str, float]:
    b = x.shape[0]
    y_real = y if model.num_classes else None
    z = randn((b, model.z_dim), generator, x.device)
    y_fake = randint(model.num_classes, (b,), generator, x.device) if model.num_classes else None
    with autocast():
        fake = model.generate(z, y_fake)
        d = model.discriminator_losses(x, y_real, fake, y_fake)
    opts["d"].zero_grad(set_to_none=True)
    d["loss"].backward()
    opts["d"].step()
    with autocast():
        g = model.generator_losses(fake, y_fake)
    opts["g"].zero_grad(set_to_none=True)
    g["loss"].backward()
    opts["g"].step()
    return {"loss_d": d["loss"].item(), "loss_g": g["loss"].item(), "d_x": d["d_x"].item(),
            "d_g_z": d["d_g_z"].item()}


STEPS = {"vae": likelihood_step, "diffusion": likelihood_step, "gan": adversarial_step}
