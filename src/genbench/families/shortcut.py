"""The ``shortcut`` family: shortcut models (Frans et al. 2024, arXiv 2410.12557), a flow-matching network also
conditioned on the step size and trained by the model's ``training_losses`` (flow matching + self-consistency),
drawn in K = 1, 2, 4, ... steps of size 1/K (:mod:`genbench.sampling.shortcut`)."""

from genbench.families.base import Family, Samplers
from genbench.models.shortcut import DEFAULT_MAX_STEPS, ShortcutModel
from genbench.sampling.shortcut import SHORTCUT_SAMPLERS, check_steps, shortcut_loop
from genbench.training.objectives import likelihood_step


def _loop(model, x, *, y, generator, settings):
    return shortcut_loop(model, x, y=y, steps=settings["steps"], guidance_scale=settings["guidance_scale"])


def _check(s: dict, max_steps: int, where: str) -> None:
    """K must be a power of two no larger than the model's ``max_steps`` (the step sizes it was trained on)."""
    check_steps(s["steps"], max_steps, f"{where}.steps")


SHORTCUT = Family(
    name="shortcut", doc="shortcut models (U-Net conditioned on t and step size; 1, 2, 4, ... step sampler)",
    step=likelihood_step, kinds={"shortcut": ShortcutModel},
    samplers=Samplers(names=SHORTCUT_SAMPLERS,
                      defaults={"sampler": "shortcut", "steps": 2, "guidance_scale": 1.0, "eta": 0.0},
                      loop=_loop, check=_check, sweep_steps={"shortcut": [1, 2, 4, 8]},
                      reference=("shortcut", DEFAULT_MAX_STEPS), limit=("max_steps", DEFAULT_MAX_STEPS)),
    loss_keys=("loss", "loss_fm", "loss_sc"), methods=(), base=ShortcutModel,
)
