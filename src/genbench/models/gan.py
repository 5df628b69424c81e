"""MLP GAN (Goodfellow et al. 2014) and its conditional variant (Mirza & Osindero 2014).

Generator z(100) -> 256 -> 512 -> 1024 -> C*H*W with BatchNorm + LeakyReLU(0.2) and a tanh output;
discriminator C*H*W -> 512 -> 256 -> 1 with LeakyReLU(0.2) and dropout. Conditioning is a parameter:
``num_classes > 0`` concatenates a learned label embedding to z and to the flattened image.
The discriminator returns logits; the losses use ``binary_cross_entropy_with_logits`` (the numerically
stable form of sigmoid + BCE).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.runtime.device import randint, randn


class Dropout(nn.Dropout):
    """Inverted dropout (Srivastava et al. 2014, sec. 10): in training, zero each element with probability p and
    scale the rest by 1 / (1 - p). Input and output: any shape and float dtype; identity in eval mode.

    On CPU the keep-mask comes from 16-bit random integers (64 random bits of torch's default generator give four
    elements), with p rounded to a multiple of 1/65536 (p = 0.3 becomes 19661/65536 = 0.300003) and the scale
    taken from that exact p. ``nn.Dropout``'s ``bernoulli_`` costs about 9 ns per element on the 2-core reference
    CPU, a quarter of an MLP-GAN training step; this mask costs about 2 (``benchmarks/train_throughput.py``).
    Other devices use ``torch.nn.functional.dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        drop = round(self.p * 65536)
        if drop >= 65536:
            return torch.zeros_like(x)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None)
        u = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
        return x * (u >= drop - 32768).to(x.dtype) * (65536 / (65536 - drop))


class MLPGenerator(nn.Module):
    def __init__(self, *, z_dim: int, widths: tuple[int, ...], out_shape: tuple[int, int, int], cond_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        d = z_dim + cond_dim
        for w in widths:
            layers += [nn.Linear(d, w), nn.BatchNorm1d(w), nn.LeakyReLU(0.2)]
            d = w
        layers += [nn.Linear(d, math.prod(out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.out_shape = out_shape

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, *, in_dim: int, widths: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for w in widths:
            layers += [nn.Linear(d, w), nn.LeakyReLU(0.2), Dropout(dropout)]
            d = w
        layers += [nn.Linear(d, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(1)


class MLPGAN(nn.Module):
    """GAN / cGAN pair.

    Args:
        z_dim: noise size.
        g_widths, d_widths: hidden widths of generator and discriminator.
        dropout: discriminator dropout.
        num_classes: 0 = GAN, >0 = cGAN.
        label_dim: label embedding size (cGAN).
        real_label: target for real images in the discriminator loss (0.9 = one-sided label smoothing,
            Salimans et al. 2016, sec. 3.4).
        image_shape: (C, H, W).
    """

    joint_discriminator_forward = True
    """D scores real and fake images in one forward on their concatenation; valid only when D has no batch
    statistics (no BatchNorm), else a model sets it False and gets two forwards."""

    genbench_family = "gan"  # its Family: objective, samplers, family metrics (genbench.families)

    def __init__(self, *, z_dim: int = 100, g_widths=(256, 512, 1024), d_widths=(512, 256), dropout: float = 0.3,
                 num_classes: int = 0, label_dim: int = 10, real_label: float = 1.0,
                 image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.z_dim, self.num_classes, self.real_label = z_dim, num_classes, real_label
        cond = label_dim if num_classes else 0
        self.g_label = nn.Embedding(num_classes, label_dim) if num_classes else None
        self.d_label = nn.Embedding(num_classes, label_dim) if num_classes else None
        self.generator = MLPGenerator(z_dim=z_dim, widths=tuple(g_widths), out_shape=tuple(image_shape),
                                      cond_dim=cond)
        self.discriminator = MLPDiscriminator(in_dim=math.prod(image_shape) + cond, widths=tuple(d_widths),
                                              dropout=dropout)

    def generator_parameters(self):
        return list(self.generator.parameters()) + (list(self.g_label.parameters()) if self.g_label else [])

    def discriminator_parameters(self):
        return list(self.discriminator.parameters()) + (list(self.d_label.parameters()) if self.d_label else [])

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """z (B, z_dim), y int64 (B,) or None -> images (B, C, H, W) in [-1, 1]."""
        h = z if self.g_label is None else torch.cat([z, self.g_label(y)], 1)
        return self.generator(h)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, H, W) in [-1, 1] -> logits (B,)."""
        h = x.flatten(1)
        if self.d_label is not None:
            h = torch.cat([h, self.d_label(y)], 1)
        return self.discriminator(h)

    def _z(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        device = next(self.parameters()).device
        return randn((n, self.z_dim), generator, device)

    def _labels(self, n: int, y, generator):
        if not self.num_classes:
            return None
        device = next(self.parameters()).device
        if y is not None:
            return y.to(device)
        return randint(self.num_classes, (n,), generator, device)

    def discriminator_losses(self, x: torch.Tensor, y: torch.Tensor | None, fake: torch.Tensor,
                             y_fake: torch.Tensor | None, *, discriminate=None) -> dict[str, torch.Tensor]:
        """BCE on real (target ``real_label``) plus fake (target 0): Goodfellow et al. 2014, eq. 1.
        Also returns D(x) and D(G(z)) as mean probabilities (diagnostics, Radford et al. 2016).

        ``discriminate``: the callable computing D's logits, default :meth:`discriminate` (data-parallel
        training passes the DDP-wrapped one, :mod:`genbench.runtime.distributed`)."""
        disc = discriminate or self.discriminate
        if self.joint_discriminator_forward:
            # one D forward on [real; fake]: D has no batch statistics, so this equals two forwards (fewer, larger ops)
            both = disc(torch.cat([x.to(fake.dtype), fake.detach()]),
                        None if y is None else torch.cat([y, y_fake])).float()
            d_real, d_fake = both[: x.shape[0]], both[x.shape[0]:]
        else:  # D has BatchNorm: real and fake batches normalised separately, as pytorch/examples' DCGAN does
            d_real = disc(x.to(fake.dtype), y).float()
            d_fake = disc(fake.detach(), y_fake).float()
        loss_real = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, self.real_label))
        loss_fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        return {"loss": loss_real + loss_fake, "d_x": torch.sigmoid(d_real).mean(),
                "d_g_z": torch.sigmoid(d_fake).mean()}

    def generator_losses(self, fake: torch.Tensor, y_fake: torch.Tensor | None, *,
                         discriminate=None) -> dict[str, torch.Tensor]:
        """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, sec. 3); ``discriminate`` as in
        :meth:`discriminator_losses`."""
        d = (discriminate or self.discriminate)(fake, y_fake).float()
        return {"loss": F.binary_cross_entropy_with_logits(d, torch.ones_like(d))}

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """float32 (n, C, H, W) in [-1, 1]. Call in eval mode (BatchNorm running statistics)."""
        z = self._z(n, generator)
        return self.generate(z, self._labels(n, y, generator)).float()
