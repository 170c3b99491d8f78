"""Small building blocks shared by the autoencoder, the assessor and the restorer.

Every op here lowers in ExecuTorch/XNNPACK, Core ML and ONNX: 1x1 / 3x3 / depthwise 3x3 / strided
convs, pixel shuffle, mean, mul, add, relu, sigmoid, linear. NAFNet's LayerNorm2d is left out on
purpose (it needs sqrt/div per pixel, quantizes badly, and its GroupNorm stand-in would make a
tile's output depend on the whole tile). Without a norm, NAFNet's products (simple gate a * b,
channel attention x * W mean(x)) are quadratic in the activations and a stack of them diverged
in training; so the gate and the attention go through a sigmoid (a * sigmoid(b), as in GLU;
x * sigmoid(W mean(x)), as in squeeze-excitation), which keeps each block at most linear in its
input. Zero-initialised residual scales make every block start as the identity.
"""

from __future__ import annotations

import torch
from torch import nn


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two channel halves of x (dim 1) as static slices: ExecuTorch's XNNPACK delegate takes those but
    not ``split_with_sizes`` (what ``chunk`` becomes), and each split outside it cut the graph into pieces
    with layout copies between them (fixed 512² ExecuTorch fp32 bundle, 2 steps: 80 -> 65 ms;
    BENCHMARKS.md, Latency)."""
    half = x.shape[1] // 2
    return x[:, :half], x[:, half:]


class SigmoidGate(nn.Module):
    """Split the channels in two halves a, b (``halves``) and return a * sigmoid(b) (NAFNet's gate, bounded)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = halves(x)
        return a * torch.sigmoid(b)


class ChannelAttention(nn.Module):
    """Channel attention: global mean, a 1x1 conv and a sigmoid, as a per-channel scale in (0, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.proj(x.mean(dim=(2, 3), keepdim=True)))


class NAFBlock(nn.Module):
    """NAFNet block without normalisation, with optional FiLM conditioning.

    Args:
        channels: width of the block.
        cond_dim: size of the conditioning embedding; 0 for an unconditioned block.
    """

    def __init__(self, channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        c2 = channels * 2
        self.expand = nn.Conv2d(channels, c2, 1)
        self.dwconv = nn.Conv2d(c2, c2, 3, padding=1, groups=c2)
        self.gate = SigmoidGate()
        self.attn = ChannelAttention(channels)
        self.project = nn.Conv2d(channels, channels, 1)
        self.ffn_in = nn.Conv2d(channels, c2, 1)
        self.ffn_out = nn.Conv2d(channels, channels, 1)
        # Residual scales start at zero: every block begins as the identity.
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        # FiLM from the assessor's embedding: scale and shift before the feed-forward half.
        self.film = nn.Linear(cond_dim, c2) if cond_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        y = self.gate(self.dwconv(self.expand(x)))
        y = x + self.project(self.attn(y)) * self.beta
        h = y
        if self.film is not None:
            if cond is None:
                raise ValueError("this block is conditioned: pass the assessor's embedding")
            scale, shift = halves(self.film(cond)[:, :, None, None])
            h = h * (1 + scale) + shift
        h = self.ffn_out(self.gate(self.ffn_in(h)))
        return y + h * self.gamma


class ConvBlock(nn.Module):
    """A residual block of dense convolutions: x + W2 relu(W1 x + shift(cond)), W1 3x3 and W2 1x1.

    Why a second block kind: int8 pays for dense convolutions and not for elementwise work. A NAFBlock is
    pointwise and depthwise convs between gates, channel attention, FiLM and residual scales, and XNNPACK's
    int8 multiply costs twice its fp32 one, so rar-edge-s's restore step runs only 1.4x faster in int8 than
    in fp32; this block is two convolutions, a relu and two adds (the embedding's shift, the residual), and
    at rar-edge-s's layout it runs about 2x faster in int8 than in fp32 and faster than the NAF restorer in
    both precisions although it holds 1.3x the MACs (BENCHMARKS.md, "A restorer of dense convolutions").
    The embedding shifts the hidden features before the relu (an additive FiLM: it selects which features
    fire, with no multiply).
    W2 starts at zero: the block begins as the identity.
    """

    def __init__(self, channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.shift = nn.Linear(cond_dim, channels) if cond_dim else None
        if self.shift is not None:
            nn.init.zeros_(self.shift.weight)
            nn.init.zeros_(self.shift.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x)
        if self.shift is not None:
            if cond is None:
                raise ValueError("this block is conditioned: pass the assessor's embedding")
            h = h + self.shift(cond)[:, :, None, None]
        return x + self.out(torch.relu(h))


#: Block kinds a part may be built of (RARConfig's ae_block, assess_block, restore_block).
BLOCKS: dict[str, type[nn.Module]] = {"naf": NAFBlock, "conv": ConvBlock}


class Stage(nn.Module):
    """A sequence of blocks of one kind (``BLOCKS``) at one resolution, all sharing the same conditioning."""

    def __init__(self, channels: int, depth: int, cond_dim: int = 0, block: str = "naf") -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block kind {block!r}; choose from {', '.join(BLOCKS)}")
        self.blocks = nn.ModuleList(BLOCKS[block](channels, cond_dim) for _ in range(depth))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, cond)
        return x


def downsample(channels_in: int, channels_out: int) -> nn.Module:
    """Halve the resolution with a 2x2 stride-2 conv (cheaper than pooling + conv, exports everywhere)."""
    return nn.Conv2d(channels_in, channels_out, 2, stride=2)


class Upsample(nn.Module):
    """Double the resolution: a 1x1 conv to 4x channels, then pixel shuffle."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out * 4, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
