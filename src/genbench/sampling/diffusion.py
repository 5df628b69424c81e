"""Diffusion sampling loops: DDPM ancestral (Ho et al. 2020, Alg. 2), DDIM (Song et al. 2021, eq. 12) and
DPM-Solver++(2M) (Lu et al. 2022), each a diffusers scheduler built from the model's own training schedule.

The loop is written out once: for each timestep of the scheduler's list, evaluate the (guided) model and call
``scheduler.step``. Timesteps come only from ``scheduler.timesteps``.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from genbench.errors import GenbenchError

SAMPLERS = ("ddpm", "ddim", "dpm_solver")


def make_scheduler(model, sampler: str, steps: int):
    """A diffusers scheduler for ``sampler`` on the model's schedule, with ``steps`` inference steps
    (DDPM ancestral always uses all T steps). The returned ``scheduler.timesteps`` is the one list the sampling
    loop follows.

    Raises:
        GenbenchError: unknown sampler, or DDIM steps that do not divide T (see :func:`_check_ddim_list`).
    """
    cfg = dict(model.schedule_config)
    if sampler == "ddpm":
        sch = DDPMScheduler(**cfg, clip_sample=True)
        sch.set_timesteps(cfg["num_train_timesteps"])
    elif sampler == "ddim":
        sch = DDIMScheduler(**cfg, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
        sch.set_timesteps(steps)
        _check_ddim_list(sch, cfg["num_train_timesteps"], steps)
    elif sampler == "dpm_solver":
        sch = DPMSolverMultistepScheduler(**cfg, algorithm_type="dpmsolver++", solver_order=2,
                                          timestep_spacing="trailing")
        sch.set_timesteps(steps)
    else:
        raise GenbenchError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return sch


def _check_ddim_list(sch, T: int, steps: int) -> None:
    """diffusers' DDIM step computes its previous timestep as ``t - T // steps`` instead of reading the list.
    Sampling is correct only when that equals the next entry of ``sch.timesteps`` (and the last step lands
    below 0, i.e. on alpha_bar = 1). Refuse settings where the two would differ.

    Raises:
        GenbenchError: ``steps`` does not divide ``T``.
    """
    ts = [int(t) for t in sch.timesteps]
    derived = [t - T // steps for t in ts]
    if derived[:-1] != ts[1:] or derived[-1] >= 0:
        divisors = [d for d in (10, 20, 25, 50, 100, 250, 500, 1000) if T % d == 0]
        raise GenbenchError(f"DDIM with {steps} steps on T={T}: the step would leave the timestep list; "
                            f"choose steps dividing {T} (e.g. {', '.join(map(str, divisors))})")


@torch.no_grad()
def sample_diffusion(model, n: int, *, y: torch.Tensor | None, generator: torch.Generator | None,
                     sampler: str = "ddim", steps: int = 50, guidance_scale: float = 1.0,
                     eta: float = 0.0) -> torch.Tensor:
    """Run the reverse process from x_T ~ N(0, I).

    Args:
        model: a :class:`genbench.models.ddpm.DDPM` (eval mode; pass the EMA copy for evaluation).
        n: number of images.
        y: int64 (n,) labels or None.
        generator: seeds x_T and every stochastic step.
        sampler: "ddpm" | "ddim" | "dpm_solver".
        steps: inference steps (ignored by "ddpm").
        guidance_scale: classifier-free guidance w.
        eta: DDIM stochasticity (0 = deterministic).

    Returns:
        float32 (n, C, H, W) in [-1, 1].
    """
    device = next(model.parameters()).device
    sch = make_scheduler(model, sampler, steps)
    x = torch.randn((n, *model.image_shape), generator=generator).to(device)
    x = x * sch.init_noise_sigma
    kw = {"eta": eta} if sampler == "ddim" else {}
    for t in sch.timesteps:
        tt = torch.full((n,), int(t), device=device, dtype=torch.long)
        out = model.guided_output(x, tt, y, guidance_scale).float()
        if sampler == "dpm_solver":
            x = sch.step(out, t, x, generator=generator).prev_sample
        else:
            x = sch.step(out, t, x, generator=generator, **kw).prev_sample
    return x.clamp(-1, 1)
