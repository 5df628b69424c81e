"""The ``vae`` family: the ELBO objective (Kingma & Welling 2014, eq. 3; beta: Higgins et al. 2017) through the
model's ``training_losses``, one decoder pass to draw, and genbench's VAE interface, which gives the VAE family
metrics (ELBO, IWAE bound, active units) and the VAE experiments."""

from genbench.families.base import Family
from genbench.models.vae import ConvVAE
from genbench.training.objectives import likelihood_step

VAE = Family(
    name="vae", doc="variational autoencoder (ELBO with beta; conv/mlp/row-GRU encoders)", step=likelihood_step,
    kinds={"vae": ConvVAE},
    loss_keys=("loss", "recon", "kl"),
    fills_classes=True,  # `conditional: true` makes a CVAE, num_classes from the dataset
    methods=("training_losses", "sample", "encode", "decode", "decode_logits", "log_px_z"),
    attributes=("latent_dim", "beta", "likelihood", "encoder_kind"),
)
