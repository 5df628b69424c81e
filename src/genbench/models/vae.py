"""The VAE family (Kingma & Welling 2014): one class, with the encoder, likelihood, beta (Higgins et al. 2017),
KL annealing (Bowman et al. 2016) and conditioning (CVAE, Sohn et al. 2015) as parameters, not copies.

Encoders (``encoder=``), each ending in features (B, F) that an FC layer maps to ``hidden``:

- ``conv`` (default): C -> 32 -> 64 channels, 4x4 convs with stride 2 (S -> S/2 -> S/4), optional BatchNorm.
- ``mlp``: flatten, FC ``hidden`` + ReLU.
- ``rnn``: a bidirectional GRU that reads the image row by row: time step t is row t, its input the C*W
  pixels of that row; the features are the final hidden states of both directions (B, 2 * rnn_hidden).

One conv decoder: FC ``hidden`` -> 64 x S/4 x S/4 -> transposed convs 64 -> 32 -> C, giving per-pixel logits
(optional BatchNorm). Likelihood (``likelihood=``), on targets ``(x + 1) / 2`` in [0, 1]:

- ``bernoulli``: p(x|z) = prod Bernoulli(sigmoid(logit)); -log p = BCE summed over pixels (nats).
- ``gaussian``: p(x|z) = N(x; sigmoid(logit), gaussian_std^2 I), a fixed, stated variance;
  -log p = sum (x - m)^2 / (2 s^2) + D/2 log(2 pi s^2) (nats; a density, so it can be negative).

Conditioning: ``num_classes > 0`` concatenates a label embedding to the encoder's features and to z before
decoding; :meth:`sample` takes labels ``y``.

With the defaults (conv encoder, no BatchNorm, Bernoulli, 28 x 28) the module, its parameters and its random
draws are those of the original MNIST ``vae`` (checkpoints stay loadable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.runtime.device import randint, randn

ENCODERS = ("conv", "mlp", "rnn")
LIKELIHOODS = ("bernoulli", "gaussian")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, in nats (Kingma & Welling 2014, appendix B):
    ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``. Shapes (B, D) -> (B,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The terms of :func:`gaussian_kl` per latent dimension: (B, D) -> (B, D), nats, each >= 0."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl_between(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                        logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mu1, diag e^lv1) || N(mu2, diag e^lv2)) per row in nats (closed form for diagonal Gaussians):
    ``0.5 * sum(lv2 - lv1 + (e^lv1 + (mu1 - mu2)^2) / e^lv2 - 1)``. Shapes (B, D) -> (B,); 0 iff equal."""
    return 0.5 * torch.sum(logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2).pow(2)) / logvar2.exp() - 1, dim=1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension: (..., D) -> (...), nats."""
    return -0.5 * torch.sum(math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp(), dim=-1)


class RowGRUEncoder(nn.Module):
    """Bidirectional GRU over image rows: x (B, C, H, W) -> features (B, 2 * hidden).

    Time step t reads row t: the input sequence is (B, H, C * W) (see :meth:`rows`)."""

    def __init__(self, *, channels: int, width: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(channels * width, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    @staticmethod
    def rows(x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H, C * W): one time step per image row, all channels of that row."""
        b, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(self.rows(x).float())  # h_n: (2, B, hidden), forward and backward final states
        return torch.cat([h_n[0], h_n[1]], dim=1)


class ConvVAE(nn.Module):
    """The genbench VAE (every VAE kind is this class with other parameters).

    Args:
        latent_dim: size of z.
        hidden: width of the encoder/decoder FC layer.
        beta: weight of the KL term (1 = the ELBO; beta-VAE otherwise, Higgins et al. 2017, eq. 4).
        num_classes: 0 for a plain VAE, >0 for a conditional VAE.
        label_dim: size of the label embedding when conditional.
        channels: image channels C.
        image_size: image side S (a multiple of 4): 28 for MNIST-like data, 32 for CIFAR-10.
        encoder: ``conv``, ``mlp`` or ``rnn`` (see the module docstring).
        batchnorm: BatchNorm after each conv / transposed conv but the last (conv encoder and the decoder).
        likelihood: ``bernoulli`` or ``gaussian``.
        gaussian_std: the fixed standard deviation of the Gaussian likelihood, in [0, 1] pixel units.
        kl_anneal_steps: 0 = none; else the KL weight rises linearly from 0 to ``beta`` over this many
            training steps (Bowman et al. 2016, sec. 3.1). The step count is a buffer, saved in checkpoints.
        rnn_hidden: GRU width per direction (``encoder="rnn"``).

    Raises:
        ValueError: an unknown encoder or likelihood, or an image size that is not a multiple of 4.
    """

    genbench_family = "vae"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, latent_dim: int = 20, hidden: int = 256, beta: float = 1.0, num_classes: int = 0,
                 label_dim: int = 10, channels: int = 1, image_size: int = 28, encoder: str = "conv",
                 batchnorm: bool = False, likelihood: str = "bernoulli", gaussian_std: float = 0.1,
                 kl_anneal_steps: int = 0, rnn_hidden: int = 128):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder {encoder!r}: choose one of {', '.join(ENCODERS)}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r}: choose one of {', '.join(LIKELIHOODS)}")
        if image_size % 4:
            raise ValueError(f"image_size {image_size} must be a multiple of 4")
        self.latent_dim, self.beta, self.num_classes, self.channels = latent_dim, beta, num_classes, channels
        self.image_size, self.encoder_kind, self.likelihood = image_size, encoder, likelihood
        self.gaussian_std, self.kl_anneal_steps = gaussian_std, kl_anneal_steps
        s = image_size // 4
        self._s = s
        cond = label_dim if num_classes > 0 else 0
        self.label_emb = nn.Embedding(num_classes, label_dim) if num_classes > 0 else None

        def bn(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batchnorm else []

        if encoder == "conv":
            self.enc = nn.Sequential(
                nn.Conv2d(channels, 32, 4, 2, 1), *bn(32), nn.ReLU(),  # 32 x S/2 x S/2
                nn.Conv2d(32, 64, 4, 2, 1), *bn(64), nn.ReLU(),  # 64 x S/4 x S/4
                nn.Flatten(),
            )
            feat = 64 * s * s
        elif encoder == "mlp":
            self.enc = nn.Flatten()  # C*S*S
            feat = channels * image_size * image_size
        else:
            self.enc = RowGRUEncoder(channels=channels, width=image_size, hidden=rnn_hidden)
            feat = self.enc.out_dim
        self.enc_fc = nn.Sequential(nn.Linear(feat + cond, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.dec_fc = nn.Sequential(nn.Linear(latent_dim + cond, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 64 * s * s), nn.ReLU())
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), *bn(32), nn.ReLU(),  # 32 x S/2 x S/2
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # C x S x S (logits)
        )
        if kl_anneal_steps > 0:
            self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))

    def _cond(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.label_emb is None:
            return h
        if y is None:
            raise ValueError("this VAE is conditional (num_classes > 0): pass labels y")
        return torch.cat([h, self.label_emb(y)], dim=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x[, y]): x float32 (B, C, S, S) in [-1, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = self.enc_fc(self._cond(self.enc(x), y))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> per-pixel logits (B, C, S, S); the mean image is ``sigmoid(logits)``."""
        h = self.dec_fc(self._cond(z, y)).view(-1, 64, self._s, self._s)
        return self.dec(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> mean images float32 (B, C, S, S) in [-1, 1] (``2 sigmoid(logits) - 1``)."""
        return torch.sigmoid(self.decode_logits(z, y).float()) * 2 - 1

    def log_px_z(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image in nats: logits (..., C, S, S), x in [-1, 1] broadcastable -> (...)."""
        target = (x.float() + 1) / 2
        logits = logits.float()
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, target.expand_as(logits),
                                                       reduction="none").flatten(-3).sum(-1)
        s2 = self.gaussian_std ** 2
        d = logits.shape[-3:].numel()
        sq = (torch.sigmoid(logits) - target).pow(2).flatten(-3).sum(-1)
        return -sq / (2 * s2) - 0.5 * d * math.log(2 * math.pi * s2)

    def kl_weight(self) -> float:
        """The KL weight of the current training step: ``beta``, or ``beta * min(1, step / kl_anneal_steps)``."""
        if self.kl_anneal_steps <= 0:
            return self.beta
        return self.beta * min(1.0, float(self.anneal_step) / self.kl_anneal_steps)

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative beta-ELBO per image, in nats (Kingma & Welling 2014, eq. 10; Higgins et al. 2017, eq. 4).

        ``recon`` = -log p(x|z) for one z ~ q(z|x) (BCE summed over pixels for the Bernoulli likelihood);
        ``kl`` = KL(q(z|x) || N(0, I)); ``loss`` = recon + w * kl with w = :meth:`kl_weight` (``beta`` unless
        annealing). All are means over the batch (nats per image). With annealing, ``kl_weight`` is logged and
        each call in training mode advances the step count.
        """
        mu, logvar = self.encode(x, y)
        eps = randn(mu.shape, generator, mu.device, mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick
        logits = self.decode_logits(z, y)
        recon = -self.log_px_z(logits, x)
        kl = gaussian_kl(mu.float(), logvar.float())
        w = self.kl_weight()
        loss = recon + w * kl
        out = {"loss": loss.mean(), "recon": recon.mean(), "kl": kl.mean()}
        if self.kl_anneal_steps > 0:
            out["kl_weight"] = torch.tensor(w)
            if self.training:
                self.anneal_step += 1
        return out

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Decode z ~ N(0, I): float32 (n, C, S, S) in [-1, 1] (Bernoulli/Gaussian means mapped by 2p - 1).
        A conditional VAE takes labels ``y`` int64 (n,), drawn uniformly when None."""
        device = next(self.parameters()).device
        z = randn((n, self.latent_dim), generator, device)
        if self.num_classes and y is None:
            y = randint(self.num_classes, (n,), generator, device)
        if y is not None:
            y = y.to(device)
        return torch.sigmoid(self.decode_logits(z, y).float()) * 2 - 1
