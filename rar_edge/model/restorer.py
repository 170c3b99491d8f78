"""The latent restorer (UIR): one restoration step, shared across iterations.

A 3-level U-Net of conditioned blocks on the latent (NAF blocks, or dense conv blocks: blocks.BLOCKS).
It predicts a velocity ``v`` and the step is ``z + v``: trained flow-style (see
rar_edge/train/losses.py), ``v`` points from any latent on the straight path degraded -> clean toward
the clean end, so every intermediate latent is a valid latent the assessor can re-read.

Optionally a global path adds a per-image linear map of the latent, set by the assessor's
embedding (GlobalStep): a map over the whole image that a U-Net of local blocks only builds slowly.
Measured at equal training time it helps noise (and so composites) most (BENCHMARKS.md, "The
restorer's global path").
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage, Upsample, downsample


class GlobalStep(nn.Module):
    """z -> Q((1 + s(cond)) * P z) + b(cond): a linear map of the latent that the embedding sets per image.

    Why: the latent is nearly an orthonormal code of 4x4 pixel patches (Encoder), so a linear map of it
    is a filter over the whole image: a gain and offset per colour (haze I = J t + A (1 - t) and
    under-exposure are that, to first order) or a shrinkage of the patch components noise fills. P
    (to_basis) and Q (from_basis), 1x1 convs, learn a basis of ``rank`` channels (below the latent's to
    keep a preset within its compute limit); the embedding sets the gains s and the offset b. Q and b
    start at zero: the path adds nothing until training uses it, and ``--init`` from a model without it
    is exact. Ops: 1x1 conv, linear, broadcast mul and add (XNNPACK, Core ML, ONNX).
    """

    def __init__(self, latent_channels: int, rank: int, cond_dim: int) -> None:
        super().__init__()
        self.to_basis = nn.Conv2d(latent_channels, rank, 1, bias=False)
        self.from_basis = nn.Conv2d(rank, latent_channels, 1, bias=False)
        self.gain = nn.Linear(cond_dim, rank)
        self.offset = nn.Linear(cond_dim, latent_channels)
        for layer in (self.from_basis, self.gain, self.offset):
            for t in layer.parameters():
                nn.init.zeros_(t)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = self.gain(cond)[:, :, None, None]
        return self.from_basis(self.to_basis(z) * (1 + gain)) + self.offset(cond)[:, :, None, None]


class Restorer(nn.Module):
    """(latent (N,C,h,w), cond (N,E)) -> next latent (N,C,h,w). h and w must be multiples of 4.

    ``block`` picks the stages' block kind (blocks.BLOCKS): NAF blocks, or dense conv blocks for int8.
    """

    def __init__(self, latent_channels: int, width: int, depths: tuple[int, int, int], cond_dim: int,
                 global_rank: int = 0, block: str = "naf") -> None:
        super().__init__()
        self.global_step = GlobalStep(latent_channels, global_rank, cond_dim) if global_rank else None
        w1, w2, w3 = width, width * 2, width * 4
        self.stem = nn.Conv2d(latent_channels, w1, 1)  # 1x1: the blocks' depthwise convs give the context
        self.enc1 = Stage(w1, depths[0], cond_dim, block)
        self.down1 = downsample(w1, w2)
        self.enc2 = Stage(w2, depths[1], cond_dim, block)
        self.down2 = downsample(w2, w3)
        self.mid = Stage(w3, depths[2], cond_dim, block)
        self.up2 = Upsample(w3, w2)
        self.dec2 = Stage(w2, depths[1], cond_dim, block)
        self.up1 = Upsample(w2, w1)
        self.dec1 = Stage(w1, depths[0], cond_dim, block)
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
        out = z + self.head(d1)
        return out if self.global_step is None else out + self.global_step(z, cond)
