"""Model registry: kind name -> constructor taking the config's keyword arguments."""

from __future__ import annotations

from torch import nn

from genbench.errors import GenbenchError
from genbench.models.dcgan import DCGAN
from genbench.models.ddpm import DDPM
from genbench.models.flow import FlowMatching
from genbench.models.gan import MLPGAN
from genbench.models.vae import ConvVAE

# kind -> (class, family). The family selects the training objective.
MODEL_KINDS: dict[str, tuple[type[nn.Module], str]] = {
    "vae": (ConvVAE, "vae"),
    "gan": (MLPGAN, "gan"),
    "cgan": (MLPGAN, "gan"),
    "ddpm": (DDPM, "diffusion"),
    "dcgan": (DCGAN, "gan"),
    "flow": (FlowMatching, "flow"),
}


def build_model(kind: str, params: dict) -> tuple[nn.Module, str]:
    """Instantiate model ``kind`` with ``params``; returns (module, family).

    Raises:
        GenbenchError: unknown kind, or a parameter the model does not take.
    """
    if kind not in MODEL_KINDS:
        raise GenbenchError(f"unknown model kind {kind!r}; choose one of: {', '.join(MODEL_KINDS)}")
    cls, family = MODEL_KINDS[kind]
    try:
        return cls(**params), family
    except (TypeError, ValueError) as e:
        raise GenbenchError(f"bad parameters for model {kind!r}: {e}; see the study file's `params`") from e
