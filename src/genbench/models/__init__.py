"""Model families. Every model follows one protocol (STYLE.md, convention 2):

- ``num_classes`` (0 = unconditional),
- ``sample(n, y=None, generator=None) -> float32 (n, C, H, W) in [-1, 1]``,
- and either ``training_losses(x, y=None) -> dict`` (VAE, DDPM) or the adversarial pair
  ``discriminator_losses`` / ``generator_losses`` (GAN).
"""

from genbench.models.registry import MODEL_KINDS, build_model

__all__ = ["MODEL_KINDS", "build_model"]
