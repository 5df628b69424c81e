"""DCGAN (Radford et al. 2016): transposed-conv generator and strided-conv discriminator with BatchNorm.

It keeps the :class:`~genbench.models.gan.MLPGAN` protocol (``generate``, ``discriminate``,
``generator_parameters``, ``discriminator_parameters``) and inherits its losses, so the one adversarial
training step of :mod:`genbench.training.objectives` trains it, with the diagnostics D(x) and D(G(z)).

Generator, for an image side S (a multiple of 4; S0 = S / 4)::

    z (B, z_dim, 1, 1) -> ConvT(S0) -> (ngf*4) x S0 x S0 -> ConvT 4/2 -> (ngf*2) x 2S0 x 2S0
                       -> ConvT 4/2 -> C x S x S, tanh                (BatchNorm + ReLU between)

Discriminator::

    x (B, C, S, S) -> Conv 4/2 -> ndf x 2S0 x 2S0 (LeakyReLU 0.2) -> Conv 4/2 -> (ndf*2) x S0 x S0 (BN, LReLU)
                   -> Conv(S0) -> 1 logit

Weights initialised N(0, 0.02) (BatchNorm weights N(1, 0.02)), as in the paper, sec. 4.
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.models.gan import MLPGAN


def _dcgan_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class DCGAN(MLPGAN):
    """Unconditional DCGAN.

    Args:
        z_dim: noise size (100 in the paper).
        ngf, ndf: base widths of generator and discriminator.
        image_shape: (C, S, S) with S a multiple of 4 (28 or 32).
        real_label: target for real images in the discriminator loss (1.0; 0.9 = one-sided label smoothing).

    Raises:
        ValueError: a non-square image or a side that is not a multiple of 4.
    """

    joint_discriminator_forward = False  # D has BatchNorm: real and fake batches go through separately

    def __init__(self, *, z_dim: int = 100, ngf: int = 64, ndf: int = 64,
                 image_shape: tuple[int, int, int] = (3, 32, 32), real_label: float = 1.0):
        nn.Module.__init__(self)
        c, h, w = image_shape
        if h != w or h % 4:
            raise ValueError(f"DCGAN needs square images with a side divisible by 4, got {tuple(image_shape)}")
        s0 = h // 4
        self.z_dim, self.num_classes, self.real_label = z_dim, 0, real_label
        self.g_label = self.d_label = None
        self.generator = nn.Sequential(
            nn.ConvTranspose2d(z_dim, ngf * 4, s0, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            # state size: (ngf*4) x S0 x S0
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            # state size: (ngf*2) x 2S0 x 2S0
            nn.ConvTranspose2d(ngf * 2, c, 4, 2, 1, bias=False), nn.Tanh(),
            # state size: C x S x S
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(c, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),  # ndf x 2S0 x 2S0
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            # state size: (ndf*2) x S0 x S0
            nn.Conv2d(ndf * 2, 1, s0, 1, 0, bias=False),  # 1 x 1 x 1
        )
        self.apply(_dcgan_init)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, z_dim) -> images (B, C, S, S) in [-1, 1] (tanh)."""
        return self.generator(z.view(z.shape[0], self.z_dim, 1, 1))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, S, S) in [-1, 1] -> logits (B,)."""
        return self.discriminator(x).view(-1)
