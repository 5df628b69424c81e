"""The ``gan`` family: the adversarial pair (Goodfellow et al. 2014, Alg. 1 with k = 1), two Adams (G and D), one
generator pass to draw. Each model class supplies its own losses (non-saturating BCE for ``gan``/``cgan``/``dcgan``;
hinge with optional R1 for ``sngan``). DDP wraps G and D separately, each with its label embedding (None when the
embeddings live inside G and D, as in SNGAN), behind ``generate`` / ``discriminate``, one per optimizer.

Kinds: ``gan`` / ``cgan`` the seed's MLP pair (:class:`~genbench.models.gan.MLPGAN`), ``dcgan``
(:class:`~genbench.models.dcgan.DCGAN`), ``sngan`` the modern conv recipe, conditional with ``num_classes > 0``
(:class:`~genbench.models.sngan.SNGAN`: spectral norm, hinge loss, R1, projection discriminator)."""

from genbench.families.base import Family
from genbench.models.dcgan import DCGAN
from genbench.models.gan import MLPGAN
from genbench.models.sngan import SNGAN
from genbench.training.objectives import adversarial_step


def _parts(model) -> dict:
    return {"g": model.generator_parameters(), "d": model.discriminator_parameters()}


def _ddp(model) -> dict:
    return {
        "generate": (model.generate, {"generator": model.generator, "g_label": getattr(model, "g_label", None)},
                     list(model.generator_parameters())),
        "discriminate": (model.discriminate, {"discriminator": model.discriminator,
                                              "d_label": getattr(model, "d_label", None)},
                         list(model.discriminator_parameters())),
    }


GAN = Family(
    name="gan", doc="generative adversarial network (MLP GAN, cGAN, DCGAN, SNGAN)", step=adversarial_step,
    kinds={"gan": MLPGAN, "cgan": MLPGAN, "dcgan": DCGAN, "sngan": SNGAN},
    parts=_parts, ddp=_ddp,
    loss_keys=("loss_g", "loss_d"), stability_keys=("loss_g", "loss_d"),
    methods=("sample", "generate", "discriminator_losses", "generator_losses", "generator_parameters",
             "discriminator_parameters"),
    attributes=("z_dim",),
)
