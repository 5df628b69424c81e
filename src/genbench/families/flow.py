"""The ``flow`` family: flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) trained by the model's
``training_losses``, drawn by integrating its ODE (Euler, Heun; :mod:`genbench.sampling.flow`)."""

from genbench.families.base import Family, Samplers
from genbench.models.flow import FlowMatching
from genbench.sampling.flow import FLOW_SAMPLERS, flow_loop
from genbench.training.objectives import likelihood_step


def _loop(model, x, *, y, generator, settings):
    return flow_loop(model, x, y=y, sampler=settings["sampler"], steps=settings["steps"],
                     guidance_scale=settings["guidance_scale"])


FLOW = Family(
    name="flow", doc="flow matching (U-Net velocity field; Euler/Heun ODE samplers)", step=likelihood_step,
    kinds={"flow": FlowMatching},
    samplers=Samplers(names=FLOW_SAMPLERS, defaults={"sampler": "heun", "steps": 20, "guidance_scale": 1.0,
                                                     "eta": 0.0},
                      loop=_loop, evals_per_step={"heun": 2},
                      sweep_steps={"euler": [5, 10, 20, 50], "heun": [5, 10, 25]}, reference=("heun", 100)),
    methods=(), base=FlowMatching,
)
