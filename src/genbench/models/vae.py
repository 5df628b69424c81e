"""Convolutional VAE (Kingma & Welling 2014) with beta (Higgins et al. 2017) and optional conditioning.

Encoder: 1 -> 32 -> 64 channels, 4x4 convs with stride 2 (28 -> 14 -> 7), FC 256, heads for mu and
log-variance. Decoder mirrors it and ends in a sigmoid: Bernoulli means in [0, 1].
Conditioning (CVAE, Sohn et al. 2015) is a parameter: ``num_classes > 0`` adds a label embedding to the
encoder's FC input and to z before decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genbench.device import randint, randn


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, in nats (Kingma & Welling 2014, appendix B):
    ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``. Shapes (B, D) -> (B,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


class ConvVAE(nn.Module):
    """Conv VAE for 1 x 28 x 28 images.

    Args:
        latent_dim: size of z.
        hidden: width of the FC layer.
        beta: weight of the KL term (1 = the ELBO; beta-VAE otherwise).
        num_classes: 0 for a plain VAE, >0 for a conditional VAE.
        label_dim: size of the label embedding when conditional.
        channels: image channels.
    """

    def __init__(self, *, latent_dim: int = 20, hidden: int = 256, beta: float = 1.0, num_classes: int = 0,
                 label_dim: int = 10, channels: int = 1):
        super().__init__()
        self.latent_dim, self.beta, self.num_classes, self.channels = latent_dim, beta, num_classes, channels
        cond = label_dim if num_classes > 0 else 0
        self.label_emb = nn.Embedding(num_classes, label_dim) if num_classes > 0 else None
        self.enc = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # 32 x 14 x 14
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),  # 64 x 7 x 7
            nn.Flatten(),
        )
        self.enc_fc = nn.Sequential(nn.Linear(64 * 7 * 7 + cond, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.dec_fc = nn.Sequential(nn.Linear(latent_dim + cond, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 64 * 7 * 7), nn.ReLU())
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # 32 x 14 x 14
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # C x 28 x 28 (logits)
        )

    def _cond(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.label_emb is None:
            return h
        if y is None:
            raise ValueError("this VAE is conditional (num_classes > 0): pass labels y")
        return torch.cat([h, self.label_emb(y)], dim=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x float32 (B, C, 28, 28) in [-1, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = self.enc_fc(self._cond(self.enc(x), y))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> Bernoulli logits (B, C, 28, 28)."""
        h = self.dec_fc(self._cond(z, y)).view(-1, 64, 7, 7)
        return self.dec(h)

    def training_losses(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative beta-ELBO per image, in nats (Kingma & Welling 2014, eq. 10; Higgins et al. 2017, eq. 4).

        ``recon`` = BCE summed over pixels against targets ``(x + 1) / 2`` in [0, 1]; ``kl`` = KL term;
        ``loss`` = recon + beta * kl. All are means over the batch (nats per image).
        """
        mu, logvar = self.encode(x, y)
        eps = randn(mu.shape, generator, mu.device, mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick
        logits = self.decode_logits(z, y).float()
        target = (x.float() + 1) / 2
        recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        kl = gaussian_kl(mu.float(), logvar.float())
        loss = recon + self.beta * kl
        return {"loss": loss.mean(), "recon": recon.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Decode z ~ N(0, I): float32 (n, C, 28, 28) in [-1, 1] (Bernoulli means mapped by 2p - 1)."""
        device = next(self.parameters()).device
        z = randn((n, self.latent_dim), generator, device)
        if self.num_classes and y is None:
            y = randint(self.num_classes, (n,), generator, device)
        if y is not None:
            y = y.to(device)
        return torch.sigmoid(self.decode_logits(z, y).float()) * 2 - 1
