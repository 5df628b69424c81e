"""The ``diffusion`` family: DDPM (Ho et al. 2020) trained by the model's ``training_losses`` (a network and a
noise schedule), drawn by the reverse-process loop over a diffusers scheduler (DDPM ancestral, DDIM, DPM-Solver++
2M; :mod:`genbench.sampling.diffusion`)."""

from genbench.errors import GenbenchError
from genbench.families.base import Family, Samplers
from genbench.models.ddpm import DDPM
from genbench.sampling.diffusion import SAMPLERS, diffusion_loop, max_lu_steps
from genbench.training.objectives import likelihood_step


def _loop(model, x, *, y, generator, settings):
    return diffusion_loop(model, x, y=y, generator=generator, sampler=settings["sampler"], steps=settings["steps"],
                          guidance_scale=settings["guidance_scale"], eta=settings["eta"])


def _check(s: dict, timesteps: int, where: str) -> None:
    """DDIM walks every (T / steps)-th timestep, so steps must divide T. ``dpm_solver_lu``'s log-SNR-uniform steps
    must land on distinct integer timesteps: checked here on the default linear schedule of T steps (DDPM's
    beta 1e-4 to 0.02), and exactly on the model's own schedule when it samples (:func:`make_scheduler`)."""
    if s["sampler"] == "dpm_solver_lu":
        most = max_lu_steps(dict(num_train_timesteps=timesteps, beta_start=1e-4, beta_end=0.02,
                                 beta_schedule="linear"))
        if s["steps"] > most:
            raise GenbenchError(f"{where}.steps: dpm_solver_lu with {s['steps']} steps repeats timesteps of T="
                                f"{timesteps} (log-SNR-uniform steps crowd t = 0); use at most {most}, or dpm_solver")
    if s["sampler"] == "ddim" and timesteps % s["steps"]:
        divisors = [d for d in (10, 20, 25, 50, 100, 250, 500, 1000) if timesteps % d == 0]
        raise GenbenchError(f"{where}.steps: DDIM with {s['steps']} steps needs a divisor of T={timesteps} (the "
                            f"step would leave the timestep list); e.g. {', '.join(map(str, divisors))}")


DIFFUSION = Family(
    name="diffusion", doc="denoising diffusion (DDPM on a U-Net; DDPM/DDIM/DPM-Solver++ samplers)",
    step=likelihood_step, kinds={"ddpm": DDPM},
    samplers=Samplers(names=SAMPLERS, defaults={"sampler": "ddim", "steps": 50, "guidance_scale": 1.0, "eta": 0.0},
                      loop=_loop, check=_check, fixed_steps=("ddpm",),
                      sweep_steps={"ddim": [10, 20, 50, 100], "dpm_solver": [10, 20, 50, 100],
                                   "dpm_solver_lu": [5, 10, 20, 30]},
                      reference=("ddpm", 1000)),
    methods=(), base=DDPM,
)
