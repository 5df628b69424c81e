"""SNGAN: a convolutional GAN with the modern stabilisers, unconditional or class-conditional.

The recipe, each part with its source:

- **Spectral normalisation** of every discriminator layer (Miyato et al. 2018, eq. 8): each weight is used as
  ``W / sigma(W)``, ``sigma`` its largest singular value estimated by one power iteration per training forward
  (``torch.nn.utils.parametrizations.spectral_norm``), so D is (about) 1-Lipschitz layer by layer.
- **Hinge loss** (Lim & Ye 2017; Miyato et al. 2018, eq. 16-17)::

      L_D = E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))]          L_G = -E_z[D(G(z))]

  or, with ``loss="ns"``, the non-saturating loss (Goodfellow et al. 2014, sec. 3)::

      L_D = E_x[softplus(-D(x))] + E_z[softplus(D(G(z)))]             L_G = E_z[softplus(-D(G(z)))]

- **R1 penalty** on real data (Mescheder et al. 2018, eq. 9), added to L_D when ``r1_gamma > 0``::

      R1 = gamma / 2 * E_x[ ||grad_x D(x)||^2 ]

  computed with ``torch.autograd.grad`` w.r.t. the real batch (double backward through D). With ``r1_every = k``
  it is lazy (Karras et al. 2020, StyleGAN2 sec. 3.1): computed every k-th D step and weighted by k.
- **Projection discriminator** for the conditional model (Miyato & Koyama 2018, eq. 3)::

      D(x, y) = psi(phi(x)) + <embed(y), phi(x)>

  phi the conv trunk with global sum pooling, psi a linear layer, embed a (spectrally normalised) class embedding.
  The conditional generator uses class-conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018, sec. 4):
  BatchNorm without affine, then a per-class gain and bias.
- **EMA generator** for sampling (Yazici et al. 2019): not in this class. A study's ``ema_decay`` (e.g. 0.999)
  makes the training loop keep an EMA copy of the whole model (:class:`genbench.training.ema.EMA`), and
  :func:`genbench.families.load_trained` loads that copy for every sample, score and sweep, so :meth:`sample`
  then draws from the averaged G. Buffers are copied, not averaged: G's BatchNorm running statistics come from the
  live G (a small mismatch with the averaged weights that BigGAN's "standing statistics" would remove).

Architecture (Miyato et al. 2018, Table 3's "standard CNN", made compact for 28x28 / 32x32), for an image side S
(a multiple of 4; S0 = S / 4) and base width ``width`` = w::

    G: z (B, z_dim) -> Linear -> (4w) x S0 x S0 -> [C]BN, ReLU, ConvT 4/2 -> (2w) x 2S0 x 2S0
                    -> [C]BN, ReLU, ConvT 4/2 -> w x S x S -> [C]BN, ReLU, Conv 3/1 -> C x S x S, tanh
    D: x (B, C, S, S) -> Conv 3/1 -> w x S x S -> Conv 4/2 -> (2w) x 2S0 x 2S0 -> Conv 3/1 -> (2w) x 2S0 x 2S0
                      -> Conv 4/2 -> (4w) x S0 x S0 -> Conv 3/1 -> (4w) x S0 x S0 -> ReLU, sum over H, W = phi(x)
                      -> psi (Linear 4w -> 1) [+ <embed(y), phi(x)>]       (LeakyReLU 0.1 between the convs)

D has no BatchNorm, so real and fake batches go through it in one forward (``joint_discriminator_forward``).
The class keeps the :class:`~genbench.models.gan.MLPGAN` protocol (``generate``, ``discriminate``,
``discriminator_losses``, ``generator_losses``, the parameter groups, ``generator``/``discriminator`` and
``g_label``/``d_label`` for data-parallel training; the label embeddings live inside G and D here, so both are
None), and the adversarial step of :mod:`genbench.training.objectives` trains it unchanged.

Limits of R1 (``r1_gamma > 0``), none of which touch the default ``r1_gamma = 0``: it needs a double backward
through D, which ``compile: true`` (torch.compile's AOT autograd) does not support, and it is untested under
data-parallel training (``torch.autograd.grad`` through the DDP-wrapped D); with ``r1_every = 1`` it costs 1.4x the fp32
step (1.85 against 1.34 s at batch 128, below; ``r1_every = k`` divides the extra by k).

Cost: the conditional model at the defaults (width 32, z_dim 128; G 0.98M, D 0.35M parameters) takes 1.34 s per fp32
training step at batch 128 (median of 10 after 3 warm-up steps, 2 threads, idle 2-core AVX2-only AMD EPYC, no
AVX-512/AMX); torch.profiler puts ~90% of it in convolutions, most in the backward passes of the 4x4 stride-2
(transposed) convolutions. The width is the knob for sizing a study (the convolutions' cost grows as its square). The penalty itself is not logged: the adversarial step logs only
``loss_d`` (which includes it), ``loss_g``, ``d_x`` and ``d_g_z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genbench.models.gan import MLPGAN

LOSSES = ("hinge", "ns")


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of D (Lim & Ye 2017; Miyato et al. 2018, eq. 16): mean(relu(1 - d_real)) + mean(relu(1 + d_fake)).

    Args:
        d_real, d_fake: D's logits (B,) on real and generated images, any float dtype.
    Returns: a float32 scalar >= 0.
    """
    return F.relu(1 - d_real.float()).mean() + F.relu(1 + d_fake.float()).mean()


def hinge_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of G (Miyato et al. 2018, eq. 17): -mean(d_fake), d_fake D's logits (B,). A float32 scalar."""
    return -d_fake.float().mean()


def ns_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of D (Goodfellow et al. 2014, eq. 1 on logits): mean(softplus(-d_real)) +
    mean(softplus(d_fake)), i.e. BCE with targets 1 (real) and 0 (fake). A float32 scalar >= 0."""
    return F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()


def ns_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss -log sigmoid(d_fake) = softplus(-d_fake) (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-d_fake.float()).mean()


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 = gamma / 2 * E_x[||grad_x D(x)||^2] (Mescheder et al. 2018, eq. 9).

    Args:
        d_real: D's logits (B,) computed from ``x_real`` (which must require grad).
        x_real: the real images (B, C, H, W) the logits came from.
        gamma: the penalty weight (>= 0).
    Returns: a float32 scalar that gradients flow through to D's parameters (``create_graph=True``).
    """
    (grad,) = torch.autograd.grad(d_real.float().sum(), x_real, create_graph=True)
    return 0.5 * gamma * grad.float().pow(2).flatten(1).sum(1).mean()


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d with a per-class gain and bias (de Vries et al. 2017): ``gamma[y] * BN(h) + beta[y]``;
    plain affine BatchNorm2d when ``num_classes == 0``. h (B, F, H, W), y int64 (B,) or None."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(features, affine=not num_classes)
        self.gain = self.bias = None
        if num_classes:
            self.gain = nn.Embedding(num_classes, features)
            self.bias = nn.Embedding(num_classes, features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(h)
        if self.gain is None:
            return h
        return h * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class SNGenerator(nn.Module):
    """z (B, z_dim) [+ y (B,)] -> images (B, C, S, S) in [-1, 1] (see the module docstring)."""

    def __init__(self, *, z_dim: int, width: int, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c, s, _ = image_shape
        self.s0, self.w4 = s // 4, 4 * width
        self.fc = nn.Linear(z_dim, self.w4 * self.s0 * self.s0)
        self.bn0 = ConditionalBatchNorm2d(4 * width, num_classes)
        self.up1 = nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1)
        self.bn1 = ConditionalBatchNorm2d(2 * width, num_classes)
        self.up2 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)
        self.bn2 = ConditionalBatchNorm2d(width, num_classes)
        self.out = nn.Conv2d(width, c, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(-1, self.w4, self.s0, self.s0)  # (4w) x S0 x S0
        h = self.up1(F.relu(self.bn0(h, y)))  # (2w) x 2S0 x 2S0
        h = self.up2(F.relu(self.bn1(h, y)))  # w x S x S
        return torch.tanh(self.out(F.relu(self.bn2(h, y))))  # C x S x S


class SNDiscriminator(nn.Module):
    """x (B, C, S, S) [+ y (B,)] -> logits (B,): spectrally normalised conv trunk, sum pooling, linear head and,
    when conditional, the projection term (Miyato & Koyama 2018, eq. 3)."""

    def __init__(self, *, width: int, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c = image_shape[0]
        w = width
        self.convs = nn.ModuleList([spectral_norm(m) for m in (
            nn.Conv2d(c, w, 3, 1, 1),           # w x S x S
            nn.Conv2d(w, 2 * w, 4, 2, 1),       # (2w) x 2S0 x 2S0
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),   # (4w) x S0 x S0
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1),
        )])
        self.psi = spectral_norm(nn.Linear(4 * w, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, 4 * w)) if num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, 4w), the trunk's activations summed over H and W."""
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            h = F.leaky_relu(h, 0.1) if i < len(self.convs) - 1 else F.relu(h)
        return h.sum((2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        out = self.psi(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * phi).sum(1)  # projection <embed(y), phi(x)>
        return out


class SNGAN(MLPGAN):
    """Spectrally normalised conv GAN with hinge loss, optional R1, and a projection discriminator when
    conditional (see the module docstring for the recipe and its papers).

    Args:
        z_dim: noise size.
        width: base width w of G and D (channels w, 2w, 4w).
        num_classes: 0 = unconditional; > 0 = conditional BatchNorm in G and the projection discriminator.
        loss: "hinge" (default) or "ns" (non-saturating).
        r1_gamma: weight gamma of the R1 penalty on real data (0 = off, no double backward).
        r1_every: compute R1 every this many D steps, weighted by it (lazy regularisation; 1 = every step).
        image_shape: (C, S, S) with S a multiple of 4 (28 or 32), any C.

    Raises:
        ValueError: a non-square image, a side not divisible by 4, an unknown loss, a negative r1_gamma or
            r1_every < 1.
    """

    joint_discriminator_forward = True  # D has no batch statistics: [real; fake] in one forward

    def __init__(self, *, z_dim: int = 128, width: int = 32, num_classes: int = 0, loss: str = "hinge",
                 r1_gamma: float = 0.0, r1_every: int = 1, image_shape: tuple[int, int, int] = (1, 28, 28)):
        nn.Module.__init__(self)
        c, h, w = image_shape
        if h != w or h % 4:
            raise ValueError(f"SNGAN needs square images with a side divisible by 4, got {tuple(image_shape)}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if r1_gamma < 0 or r1_every < 1:
            raise ValueError(f"need r1_gamma >= 0 and r1_every >= 1, got {r1_gamma} and {r1_every}")
        self.z_dim, self.num_classes, self.loss = z_dim, num_classes, loss
        self.r1_gamma, self.r1_every = float(r1_gamma), int(r1_every)
        self.real_label = 1.0  # MLPGAN's attribute; unused by these losses
        self.g_label = self.d_label = None  # the class embeddings live inside G and D
        self.generator = SNGenerator(z_dim=z_dim, width=width, image_shape=tuple(image_shape),
                                     num_classes=num_classes)
        self.discriminator = SNDiscriminator(width=width, image_shape=tuple(image_shape), num_classes=num_classes)
        # D steps taken, for lazy R1; a buffer so that a resumed run keeps the R1 schedule
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.int64))

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, z_dim), y int64 (B,) or None -> images (B, C, S, S) in [-1, 1] (tanh)."""
        return self.generator(z, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, S, S) in [-1, 1], y int64 (B,) or None -> logits (B,)."""
        return self.discriminator(x, y)

    def _r1_now(self) -> bool:
        if self.r1_gamma <= 0 or not torch.is_grad_enabled():
            return False
        if self.r1_every == 1:
            return True
        return int(self.d_steps) % self.r1_every == 0

    def discriminator_losses(self, x: torch.Tensor, y: torch.Tensor | None, fake: torch.Tensor,
                             y_fake: torch.Tensor | None, *, discriminate=None) -> dict[str, torch.Tensor]:
        """L_D (hinge or NS) + R1 when due, with one D forward on [real; fake].

        Args:
            x: real images (B, C, S, S) in [-1, 1]; y: their labels (B,) or None.
            fake: G's images (B, C, S, S) (detached here); y_fake: their labels or None.
            discriminate: the callable computing D's logits, default :meth:`discriminate` (data-parallel training
                passes the DDP-wrapped one).
        Returns:
            ``loss`` (scalar), ``d_x`` and ``d_g_z`` (mean sigmoid of D's logits on real and fake: the BCE GANs'
            diagnostics, Radford et al. 2016; with the hinge loss a logit of +-1 reads 0.73 / 0.27), and ``r1``
            (the penalty added, 0 when not computed this step).
        """
        disc = discriminate or self.discriminate
        r1_now = self._r1_now()
        x_real = x.to(fake.dtype).detach().requires_grad_(r1_now)
        both = disc(torch.cat([x_real, fake.detach()]), None if y is None else torch.cat([y, y_fake])).float()
        d_real, d_fake = both[: x.shape[0]], both[x.shape[0]:]
        loss = hinge_d_loss(d_real, d_fake) if self.loss == "hinge" else ns_d_loss(d_real, d_fake)
        r1 = torch.zeros((), device=loss.device)
        if r1_now:
            r1 = r1_penalty(d_real, x_real, self.r1_gamma * self.r1_every)
            loss = loss + r1
        if torch.is_grad_enabled():
            self.d_steps += 1
        return {"loss": loss, "d_x": torch.sigmoid(d_real).mean(), "d_g_z": torch.sigmoid(d_fake).mean(),
                "r1": r1.detach()}

    def generator_losses(self, fake: torch.Tensor, y_fake: torch.Tensor | None, *,
                         discriminate=None) -> dict[str, torch.Tensor]:
        """L_G: hinge -mean(D(G(z))) or NS softplus(-D(G(z))); ``discriminate`` as in :meth:`discriminator_losses`."""
        d = (discriminate or self.discriminate)(fake, y_fake).float()
        return {"loss": hinge_g_loss(d) if self.loss == "hinge" else ns_g_loss(d)}
