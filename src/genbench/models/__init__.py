"""Model networks, one module per model (``vae``, ``gan``, ``dcgan``, ``sngan``, ``unet``, ``ddpm``, ``flow``,
``shortcut``, ``classifier``).

Every model follows one protocol (STYLE.md, convention 2; docs/BRING_YOUR_OWN.md):

- ``num_classes`` (0 = unconditional),
- ``sample(n, y=None, generator=None) -> float32 (n, C, H, W) in [-1, 1]`` (one-pass models),
- a class attribute ``genbench_family`` naming its :class:`~genbench.families.Family` (``likelihood``, ``vae``,
  ``gan``, ``diffusion``, ``flow``, ``shortcut``, or a plugin's): the training objective, samplers and family
  metrics,
- and either ``training_losses(x, y=None) -> dict`` (VAE, DDPM, flow, shortcut, likelihood) or the adversarial pair
  ``discriminator_losses`` / ``generator_losses`` (GAN), or its own ``genbench_step``.

Which class a study's ``kind`` names, and how it is built, is the families layer's job
(:func:`genbench.families.resolve_kind`, :func:`genbench.families.build_model`); this layer knows no family table.
"""
