"""Helpers the degradation models share: random draws, per-image kernels, library RNG seeding."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

KERNEL = 31  # odd; holds a 15 px motion path, a radius-6 disk and a 3-sigma Gaussian of sigma 4


def uniform(n: int, gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """``n`` draws uniform in [lo, hi) on the generator's device."""
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)


def lerp(lo: float, hi: float, s: torch.Tensor) -> torch.Tensor:
    """The value at severity ``s``: ``lo`` at 0, ``hi`` at 1."""
    return lo + (hi - lo) * s


def bcast(v: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N,1,1,1), to scale a batch of images."""
    return v[:, None, None, None]


def kernel_grid(n: int, device: torch.device, size: int = KERNEL) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (x, y) of an odd ``size`` kernel centred on 0, expanded to (N,K,K)."""
    r = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return xx.expand(n, -1, -1), yy.expand(n, -1, -1)


def line_kernels(length: torch.Tensor, angle: torch.Tensor, width: torch.Tensor | None = None) -> torch.Tensor:
    """Anti-aliased line segments (N,K,K) of the given lengths and widths (px) and angles (rad), unnormalised."""
    xx, yy = kernel_grid(length.shape[0], length.device)
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    along = xx * c + yy * s
    across = -xx * s + yy * c
    half_w = (width[:, None, None] / 2) if width is not None else 0.5
    inside = (length[:, None, None] / 2 + 0.5 - along.abs()).clamp(0, 1)
    return inside * (half_w + 0.5 - across.abs()).clamp(0, 1)


def filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of ``x`` (N,C,H,W) with its own kernel (N,K,K), reflect padding."""
    n, c, h, w = x.shape
    pad = kernels.shape[-1] // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.repeat_interleave(c, dim=0)[:, None]
    return F.conv2d(xp, weight, groups=n * c).reshape(n, c, h, w)


def gaussian_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, angle: torch.Tensor,
                     size: int = KERNEL) -> torch.Tensor:
    """Normalised, possibly anisotropic and rotated Gaussian kernels (N,K,K)."""
    xx, yy = kernel_grid(sigma_x.shape[0], sigma_x.device, size)
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u, v = xx * c + yy * s, -xx * s + yy * c
    k = torch.exp(-(u**2) / (2 * sigma_x[:, None, None] ** 2) - v**2 / (2 * sigma_y[:, None, None] ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def smooth_field(n: int, h: int, w: int, gen: torch.Generator, cells: int = 4) -> torch.Tensor:
    """A smooth random field (N,1,H,W) in [0,1]: bicubic upsampling of a ``cells``² grid of draws."""
    field = torch.rand((n, 1, cells, cells), generator=gen, device=gen.device)
    return F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1)


@contextlib.contextmanager
def library_rng(gen: torch.Generator) -> Iterator[None]:
    """Run a library that draws from torch's global RNG (kornia) reproducibly: seed it from ``gen``,
    and leave the caller's global RNG state as it was."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    cuda = gen.device.type == "cuda"
    with torch.random.fork_rng(devices=[gen.device] if cuda else []):
        # Only the generators fork_rng restores: torch.manual_seed would also reseed every CUDA device.
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(gen.device):
                torch.cuda.manual_seed(seed)
        yield
