"""A small U-Net for 28 x 28 diffusion (Ho et al. 2020, appendix B, scaled down).

28 -> 14 -> 7 with one residual block per level, self-attention at 7 x 7 (encoder, middle, decoder), a
sinusoidal time embedding (Vaswani et al. 2017) and an optional class embedding added to it. Class index
``num_classes`` is the "null" label used for classifier-free guidance (Ho & Salimans 2022). With
``step_embedding=True`` a second sinusoidal embedding (its own MLP) of a second conditioning value, the step size
of a shortcut model (Frans et al. 2024, sec. 3: the network is conditioned on t and on d), is added to the time
embedding; with the default False the network, its parameters and its state_dict keys are those of before.

The attention block computes its softmax in float32 with autocast disabled: at 49 tokens it is cheap, and on
this CPU a bf16 attention backward made the whole step slower than fp32 (shared/MEASURED.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.runtime.device import rand


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017, sec. 3.5). t (B,) int or float -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def drop_labels(y: torch.Tensor | None, num_classes: int, p_uncond: float,
                generator: torch.Generator | None, device) -> torch.Tensor | None:
    """Classifier-free guidance's label dropout (Ho & Salimans 2022): each label of y int64 (B,) is replaced by the
    null label ``num_classes`` with probability ``p_uncond`` (one ``rand((B,))`` draw from ``generator``). Returns
    None for an unconditional model (num_classes 0), drawing nothing."""
    if not num_classes:
        return None
    drop = rand((y.shape[0],), generator, device) < p_uncond
    return torch.where(drop, torch.full_like(y, num_classes), y)


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over H*W tokens with a residual connection."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            q, k, v = self.qkv(self.norm(xf)).reshape(b, 3, c, h * w).unbind(1)  # each (B, C, HW)
            attn = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)  # (B, HW, HW)
            out = torch.einsum("bij,bcj->bci", attn, v).reshape(b, c, h, w)
            return xf + self.proj(out)


class UNet(nn.Module):
    """eps/v-predicting U-Net.

    Args:
        channels: image channels.
        widths: channels at 28, 14 and 7 pixels.
        num_classes: 0 = unconditional; >0 adds a class embedding (index ``num_classes`` = null label).
        attention: use self-attention at the lowest (7 x 7) resolution.
        dropout: dropout inside residual blocks.
        step_embedding: add a second embedding (sinusoidal + MLP, like the time embedding's) of ``step``, the
            step size of a shortcut model; False (the default) adds no parameter.

    Forward: x (B, C, 28, 28) float32, t (B,) int64 in [0, T) or float, y (B,) int64 or None, step (B,) float
    (required when ``step_embedding``, ignored otherwise: pass None) -> (B, C, 28, 28) float32.
    """

    def __init__(self, *, channels: int = 1, widths=(32, 64, 64), num_classes: int = 0, attention: bool = True,
                 dropout: float = 0.0, step_embedding: bool = False):
        super().__init__()
        c0, c1, c2 = widths
        self.num_classes, self.base = num_classes, c0
        emb = 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_emb = nn.Embedding(num_classes + 1, emb) if num_classes else None
        attn = (lambda c: SelfAttention(c)) if attention else (lambda c: nn.Identity())
        self.conv_in = nn.Conv2d(channels, c0, 3, padding=1)
        self.down0 = ResBlock(c0, c0, emb, dropout)  # c0 x 28 x 28
        self.ds0 = nn.Conv2d(c0, c0, 3, stride=2, padding=1)  # c0 x 14 x 14
        self.down1 = ResBlock(c0, c1, emb, dropout)  # c1 x 14 x 14
        self.ds1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)  # c1 x 7 x 7
        self.down2 = ResBlock(c1, c2, emb, dropout)
        self.down2_attn = attn(c2)  # c2 x 7 x 7
        self.mid1 = ResBlock(c2, c2, emb, dropout)
        self.mid_attn = attn(c2)
        self.mid2 = ResBlock(c2, c2, emb, dropout)
        self.up2 = ResBlock(c2 + c2, c2, emb, dropout)
        self.up2_attn = attn(c2)  # c2 x 7 x 7
        self.us2 = nn.Conv2d(c2, c2, 3, padding=1)  # after nearest upsample: c2 x 14 x 14
        self.up1 = ResBlock(c2 + c1, c1, emb, dropout)  # c1 x 14 x 14
        self.us1 = nn.Conv2d(c1, c1, 3, padding=1)  # c1 x 28 x 28
        self.up0 = ResBlock(c1 + c0, c0, emb, dropout)  # c0 x 28 x 28
        self.out = nn.Sequential(nn.GroupNorm(_groups(c0), c0), nn.SiLU(), nn.Conv2d(c0, channels, 3, padding=1))
        # built last, so the other layers draw the same initial weights as without it; None adds no state_dict key
        self.step_mlp = (nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb)) if step_embedding
                         else None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                step: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base))
        if self.step_mlp is not None:
            assert step is not None, "a U-Net with step_embedding needs the step argument"
            emb = emb + self.step_mlp(timestep_embedding(step, self.base))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.class_emb(y)
        h0 = self.down0(self.conv_in(x), emb)
        h1 = self.down1(self.ds0(h0), emb)
        h2 = self.down2_attn(self.down2(self.ds1(h1), emb))
        m = self.mid2(self.mid_attn(self.mid1(h2, emb)), emb)
        u = self.up2_attn(self.up2(torch.cat([m, h2], 1), emb))
        u = self.us2(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.up1(torch.cat([u, h1], 1), emb)
        u = self.us1(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.up0(torch.cat([u, h0], 1), emb)
        return self.out(u).float()
