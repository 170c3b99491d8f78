"""The latent restorer (UIR): one restoration step, shared across iterations.

A 3-level U-Net of conditioned NAFBlocks on the latent. It predicts a velocity ``v`` and the
step is ``z + v``: trained flow-style (see rar_edge/train/losses.py), ``v`` points from any
latent on the straight path degraded -> clean toward the clean end, so every intermediate
latent is a valid latent the assessor can re-read.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage, Upsample, downsample


class Restorer(nn.Module):
    """(latent (N,C,h,w), cond (N,E)) -> next latent (N,C,h,w). h and w must be multiples of 4."""

    def __init__(self, latent_channels: int, width: int, depths: tuple[int, int, int], cond_dim: int) -> None:
        super().__init__()
        w1, w2, w3 = width, width * 2, width * 4
        self.stem = nn.Conv2d(latent_channels, w1, 1)  # 1x1: the blocks' depthwise convs give the context
        self.enc1 = Stage(w1, depths[0], cond_dim)
        self.down1 = downsample(w1, w2)
        self.enc2 = Stage(w2, depths[1], cond_dim)
        self.down2 = downsample(w2, w3)
        self.mid = Stage(w3, depths[2], cond_dim)
        self.up2 = Upsample(w3, w2)
        self.dec2 = Stage(w2, depths[1], cond_dim)
        self.up1 = Upsample(w2, w1)
        self.dec1 = Stage(w1, depths[0], cond_dim)
        self.head = nn.Conv2d(w1, latent_channels, 3, padding=1)
        # Zero velocity at start: an untrained restorer is the identity, never a corruption.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h1 = self.enc1(self.stem(z), cond)
        h2 = self.enc2(self.down1(h1), cond)
        h3 = self.mid(self.down2(h2), cond)
        d2 = self.dec2(self.up2(h3) + h2, cond)
        d1 = self.dec1(self.up1(d2) + h1, cond)
        return z + self.head(d1)
