"""Diffusion sampling loops: DDPM ancestral (Ho et al. 2020, Alg. 2), DDIM (Song et al. 2021, eq. 12) and
DPM-Solver++(2M) (Lu et al. 2022), each a diffusers scheduler built from the model's own training schedule.

The loop is written out once: for each timestep of the scheduler's list, evaluate the (guided) network and call
``scheduler.step``. Timesteps come only from ``scheduler.timesteps``.

Clipping of the predicted x0 (why none in the deterministic samplers). DDIM with eta = 0 and DPM-Solver++ are
discretisations of the probability-flow ODE (Song et al. 2021b, eq. 13); with more steps they converge to its
solution, which ``tests/test_samplers.py`` checks against the exact solution for Gaussian data. diffusers' DDIM
with ``clip_sample=True`` clips x0 but, unless ``step(..., use_clipped_model_output=True)``, keeps the
unclipped eps in the direction term: x_{t-1} = sqrt(abar_prev) clip(x0) + sqrt(1 - abar_prev) eps mixes two
different x0 and leaves the trajectory a little at every step, so more steps drift more (issue 14: a 4-epoch
MNIST DDPM, w = 1.5, 200 images: conditional accuracy 0.960 at 10 steps, 0.675 at 100). At 100 steps the two
consistent choices measured the same within the binomial error (clip + re-derived eps 0.945, no clipping
0.950). No clipping is taken because it is the ODE itself (the known-answer test applies without caveat) and
because DPM-Solver++ (``thresholding=False``, diffusers' default) does not clip either, so the two
deterministic samplers converge to one solution. The only clamp is the final one to the image range,
:func:`genbench.families.draw`.

DDPM ancestral keeps ``clip_sample=True``: its step uses the clipped x0 in both terms of the posterior mean
(Ho et al. 2020, eq. 7; their reference code clips the same way), so it has no such inconsistency.
DPM-Solver++: ``lower_order_final=True`` (first order in the last steps when fewer than 15, diffusers' default,
stable at few steps) and ``final_sigmas_type="zero"`` (the last step lands on sigma = 0, i.e. x0).

Step placement. ``ddim`` and ``dpm_solver`` walk timesteps uniform in t ("trailing": at 10 steps 999, 899, ...,
99), so their last step jumps from t = T/steps (noise std ~0.17 at 20 of 1,000 linear-beta steps) straight to x0
and returns the posterior mean: with the exact denoiser of Gaussian data (tests/test_samplers_gaussian.py) both are
34-37% off in relative 2-Wasserstein distance at 20 steps. ``dpm_solver_lu`` is the same DPM-Solver++(2M) on steps
uniform in the log-SNR lambda (Lu et al. 2022, sec. 3.4, their recommendation; diffusers' ``use_lu_lambdas``:
at 10 steps 999, 886, 757, 603, 410, 202, 73, 22, 5, 0), which puts steps where the data's detail is resolved:
1.2% at 20 steps in the same test.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from genbench.errors import GenbenchError

SAMPLERS = ("ddpm", "ddim", "dpm_solver", "dpm_solver_lu")


def make_scheduler(model, sampler: str, steps: int):
    """A diffusers scheduler for ``sampler`` on the model's schedule (``model.schedule_config``), with
    ``steps`` inference steps (DDPM ancestral always uses all T steps). The returned ``scheduler.timesteps`` is
    the one list the sampling loop follows.

    Raises:
        GenbenchError: unknown sampler, or DDIM steps that do not divide T (see :func:`_check_ddim_list`).
    """
    cfg = dict(model.schedule_config)
    if sampler == "ddpm":
        sch = DDPMScheduler(**cfg, clip_sample=True)
        sch.set_timesteps(cfg["num_train_timesteps"])
    elif sampler == "ddim":
        sch = DDIMScheduler(**cfg, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
        sch.set_timesteps(steps)
        _check_ddim_list(sch, cfg["num_train_timesteps"], steps)
    elif sampler == "dpm_solver":
        sch = DPMSolverMultistepScheduler(**cfg, algorithm_type="dpmsolver++", solver_order=2,
                                          timestep_spacing="trailing", thresholding=False,
                                          lower_order_final=True, final_sigmas_type="zero")
        sch.set_timesteps(steps)
    elif sampler == "dpm_solver_lu":  # the same solver on steps uniform in log-SNR lambda (Lu et al. 2022, sec. 3.4)
        sch = _lu_scheduler(cfg, steps)
        if not _strictly_decreasing(sch.timesteps):
            raise GenbenchError(f"dpm_solver_lu with {steps} steps repeats timesteps of this model's "
                                f"T={cfg['num_train_timesteps']} schedule (log-SNR-uniform steps crowd t = 0 onto the "
                                f"same integer timestep); use at most {max_lu_steps(cfg)} steps, or dpm_solver")
    else:
        raise GenbenchError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return sch


def _lu_scheduler(cfg: dict, steps: int):
    import warnings

    sch = DPMSolverMultistepScheduler(**cfg, algorithm_type="dpmsolver++", solver_order=2, use_lu_lambdas=True,
                                      thresholding=False, lower_order_final=True, final_sigmas_type="zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers warns about the repeated timesteps checked for below
        sch.set_timesteps(steps)
    return sch


def _strictly_decreasing(ts) -> bool:
    ts = [int(t) for t in ts]
    return all(a > b for a, b in zip(ts, ts[1:]))


def max_lu_steps(cfg: dict) -> int:
    """The most ``dpm_solver_lu`` steps whose log-SNR-uniform timesteps are all distinct integers on the schedule
    ``cfg`` (``model.schedule_config``; 38 on 1,000 linear-beta steps from 1e-4 to 0.02)."""
    k = 2
    while k < cfg["num_train_timesteps"] and _strictly_decreasing(_lu_scheduler(cfg, k + 1).timesteps):
        k += 1
    return k


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


def guided(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, w: float) -> torch.Tensor:
    """Network output with classifier-free guidance: out_u + w (out_c - out_u) (Ho & Salimans 2022, eq. 6).

    ``model(x_t, t, y)`` is the network (eps, v or velocity); label ``model.num_classes`` is the null label.
    w = 1 (or an unconditional model, or y None) costs one network evaluation, w = 0 one (null label);
    otherwise two, batched. Returns float32 of x_t's shape.
    """
    k = getattr(model, "num_classes", 0)
    if not k or y is None or w == 1.0:
        return model(x_t, t, y if k else None).float()
    null = torch.full_like(y, k)
    if w == 0.0:
        return model(x_t, t, null).float()
    out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).float()
    out_c, out_u = out.chunk(2)
    return out_u + w * (out_c - out_u)


@torch.no_grad()
def diffusion_loop(model, x_T: torch.Tensor, *, y: torch.Tensor | None, generator: torch.Generator | None,
                   sampler: str = "ddim", steps: int = 50, guidance_scale: float = 1.0,
                   eta: float = 0.0) -> torch.Tensor:
    """Run the reverse process from a given x_T (the same x_T for every sampler: paired comparisons).

    Args:
        model: a network ``model(x_t, t, y)`` predicting eps (or v) with ``schedule_config`` (diffusers
            scheduler arguments) and ``num_classes``; e.g. :class:`genbench.models.ddpm.DDPM` in eval mode.
        x_T: float32 (n, C, H, W), standard normal.
        y: int64 (n,) labels or None.
        generator: draws the noise of the stochastic steps (DDPM, DDIM with eta > 0).
        sampler: "ddpm" | "ddim" | "dpm_solver" | "dpm_solver_lu".
        steps: inference steps (ignored by "ddpm", which takes all T).
        guidance_scale: classifier-free guidance w (>= 0).
        eta: DDIM stochasticity (0 = deterministic, 1 = DDPM posterior variance).

    Returns:
        float32 (n, C, H, W): the sampler's x_0, NOT clamped (values outside [-1, 1] are possible; see the
        module notes); :func:`genbench.families.draw` clamps to the image range.
    """
    sch = make_scheduler(model, sampler, steps)
    x = x_T * sch.init_noise_sigma
    n = x.shape[0]
    kw = {"eta": eta} if sampler == "ddim" else {}
    for t in sch.timesteps:
        tt = torch.full((n,), int(t), device=x.device, dtype=torch.long)
        out = guided(model, x, tt, y, guidance_scale)
        x = sch.step(out, t, x, generator=generator, **kw).prev_sample
    return x
