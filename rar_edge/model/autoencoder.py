"""The compact autoencoder: image <-> latent at 1/stride resolution.

Pixel (un)shuffle makes the latent a rearrangement of the pixels plus a learned correction, so
``decode(encode(x)) ~= x`` is easy to learn and a clean image passes through unharmed.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage


def init_linear_path(encoder_skip: nn.Conv2d, decoder_skip: nn.Conv2d, body_heads: list[nn.Conv2d]) -> None:
    """Start the autoencoder as an (almost) perfect linear code of the pixels.

    The encoder's skip is a semi-orthogonal projection of the packed pixels and the decoder's is
    its transpose, so with latent_channels >= 3 * stride**2 ``decode(encode(x)) == x`` from step 0;
    the convolutional bodies start at zero and only learn corrections.
    """
    out_c, in_c = encoder_skip.weight.shape[:2]
    w = torch.empty(max(out_c, in_c), min(out_c, in_c))
    nn.init.orthogonal_(w)
    w = w if out_c >= in_c else w.T  # (out_c, in_c) with orthonormal rows or columns
    with torch.no_grad():
        encoder_skip.weight.copy_(w[:, :, None, None])
        encoder_skip.bias.zero_()
        decoder_skip.weight.copy_(w.T[:, :, None, None])
        decoder_skip.bias.zero_()
        for head in body_heads:
            head.weight.zero_()
            head.bias.zero_()


class Encoder(nn.Module):
    """Image (N,3,H,W) in [0,1] -> latent (N,latent_channels,H/stride,W/stride)."""

    def __init__(self, latent_channels: int, width: int, depth: int, stride: int = 4, block: str = "naf") -> None:
        super().__init__()
        packed = 3 * stride * stride
        self.unshuffle = nn.PixelUnshuffle(stride)
        self.skip = nn.Conv2d(packed, latent_channels, 1)
        self.stem = nn.Conv2d(packed, width, 3, padding=1)
        self.body = Stage(width, depth, block=block)
        self.head = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        u = self.unshuffle(image - 0.5)
        return self.skip(u) + self.head(self.body(self.stem(u)))


class Decoder(nn.Module):
    """Latent -> image (N,3,H,W), nominally in [0,1] (not clamped: clamp after the graph)."""

    def __init__(self, latent_channels: int, width: int, depth: int, stride: int = 4, block: str = "naf") -> None:
        super().__init__()
        packed = 3 * stride * stride
        self.skip = nn.Conv2d(latent_channels, packed, 1)
        self.stem = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.body = Stage(width, depth, block=block)
        self.head = nn.Conv2d(width, packed, 3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.skip(z) + self.head(self.body(self.stem(z)))) + 0.5
