"""The ``likelihood`` family: any model that minimises one scalar ``training_losses(x, y)["loss"]`` with one Adam
and draws with its own ``sample`` (outside models that are neither VAEs nor GANs); the generic metrics only."""

from genbench.families.base import Family
from genbench.training.objectives import likelihood_step

LIKELIHOOD = Family(
    name="likelihood", doc="one scalar loss, one Adam, draws with its own sample()", step=likelihood_step)
