"""The ``diffusion`` family: DDPM (Ho et al. 2020) trained by the model's ``training_losses`` (a network and a
noise schedule), drawn by the reverse-process loop over a diffusers scheduler (DDPM ancestral, DDIM, DPM-Solver++
2M; :mod:`genbench.sampling.diffusion`)."""

from genbench.errors import GenbenchError
from genbench.families.base import Family, Samplers
from genbench.models.ddpm import DDPM
from genbench.sampling.diffusion import SAMPLERS, diffusion_loop
from genbench.training.objectives import likelihood_step


def _loop(model, x, *, y, generator, settings):
    return diffusion_loop(model, x, y=y, generator=generator, sampler=settings["sampler"], steps=settings["steps"],
                          guidance_scale=settings["guidance_scale"], eta=settings["eta"])


def _check(s: dict, timesteps: int, where: str) -> None:
    """DDIM walks every (T / steps)-th timestep, so steps must divide T."""
    if s["sampler"] == "ddim" and timesteps % s["steps"]:
        divisors = [d for d in (10, 20, 25, 50, 100, 250, 500, 1000) if timesteps % d == 0]
        raise GenbenchError(f"{where}.steps: DDIM with {s['steps']} steps needs a divisor of T={timesteps} (the "
                            f"step would leave the timestep list); e.g. {', '.join(map(str, divisors))}")


DIFFUSION = Family(
    name="diffusion", doc="denoising diffusion (DDPM on a U-Net; DDPM/DDIM/DPM-Solver++ samplers)",
    step=likelihood_step, kinds={"ddpm": DDPM},
    samplers=Samplers(names=SAMPLERS, defaults={"sampler": "ddim", "steps": 50, "guidance_scale": 1.0, "eta": 0.0},
                      loop=_loop, check=_check, fixed_steps=("ddpm",),
                      sweep_steps={"ddim": [10, 20, 50, 100], "dpm_solver": [10, 20, 50, 100]},
                      reference=("ddpm", 1000)),
    methods=(), base=DDPM,
)
