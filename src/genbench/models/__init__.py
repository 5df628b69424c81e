"""Model families. Every model follows one protocol (STYLE.md, convention 2; docs/BRING_YOUR_OWN.md):

- ``num_classes`` (0 = unconditional),
- ``sample(n, y=None, generator=None) -> float32 (n, C, H, W) in [-1, 1]``,
- a class attribute ``genbench_family`` (``likelihood``, ``vae``, ``gan``, ``diffusion``, ``flow``) naming its
  training objective and family metrics,
- and either ``training_losses(x, y=None) -> dict`` (VAE, DDPM, flow, likelihood) or the adversarial pair
  ``discriminator_losses`` / ``generator_losses`` (GAN), or its own ``genbench_step``.

A study names a model by built-in kind, by import path (``mypkg.models:MyVAE``) or by an installed entry point
(group ``genbench.models``): :func:`resolve_kind`.
"""

from genbench.models.registry import (
    ENTRY_POINT_GROUP, FAMILIES, MODEL_KINDS, ModelKind, build_model, family_of_kind, resolve_kind)

__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "MODEL_KINDS", "ModelKind", "build_model", "family_of_kind",
           "resolve_kind"]
