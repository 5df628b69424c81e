"""Training layer: one step function per objective (ELBO, adversarial, denoising), EMA, checkpoints, the loop."""
