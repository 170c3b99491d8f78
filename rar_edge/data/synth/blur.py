"""Blur models: per-image kernels up to ~15 px across (31x31 support), reflect padding.

Severity maps each model's size linearly; ``param`` is the kernel's extent in px (Gaussian: 2 sigma
of the long axis; defocus: the disk's diameter; motion: the path's length)."""

from __future__ import annotations

import math

import torch

from .common import filter2d, gaussian_kernels, kernel_grid, lerp, line_kernels, uniform


def gaussian(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian, sigma 0.6-3.5 px."""
    sigma = lerp(0.6, 3.5, s)
    return filter2d(x, gaussian_kernels(sigma, sigma, torch.zeros_like(sigma))), 2 * sigma


def anisotropic(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Anisotropic Gaussian: long-axis sigma 0.8-4 px, short axis 25-100 % of it, any angle."""
    n = x.shape[0]
    long = lerp(0.8, 4.0, s)
    short = long * uniform(n, gen, 0.25, 1.0)
    angle = uniform(n, gen, 0.0, math.pi)
    return filter2d(x, gaussian_kernels(long, short, angle)), 2 * long


def defocus(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A defocus disk (anti-aliased edge), radius 1-6 px."""
    radius = lerp(1.0, 6.0, s)
    xx, yy = kernel_grid(x.shape[0], x.device)
    k = (radius[:, None, None] + 0.5 - torch.sqrt(xx**2 + yy**2)).clamp(0, 1)
    return filter2d(x, k / k.sum(dim=(1, 2), keepdim=True)), 2 * radius


def linear_motion(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight camera motion, 3-15 px at any angle."""
    length = lerp(3.0, 15.0, s)
    k = line_kernels(length, uniform(x.shape[0], gen, 0.0, math.pi))
    return filter2d(x, k / k.sum(dim=(1, 2), keepdim=True)), length


def curved_motion(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand shake: a quadratic Bezier path whose chord is 3-15 px (bent by up to half of it; ``param`` is the
    chord), splatted bilinearly into the kernel with a random speed profile along it."""
    n, dev = x.shape[0], x.device
    length = lerp(3.0, 15.0, s)
    angle = uniform(n, gen, 0.0, 2 * math.pi)
    bend = uniform(n, gen, -0.5, 0.5) * length
    half = length[:, None] / 2
    t = torch.linspace(0, 1, 64, device=dev)[None]
    ex, ey = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    # Control point off the chord's middle by ``bend``, perpendicular to it.
    px = (1 - t) ** 2 * (-half * ex) + 2 * t * (1 - t) * (-bend[:, None] * ey) + t**2 * (half * ex)
    py = (1 - t) ** 2 * (-half * ey) + 2 * t * (1 - t) * (bend[:, None] * ex) + t**2 * (half * ey)
    weight = 0.5 + uniform(n * 64, gen).reshape(n, 64)  # uneven speed: more exposure where slower
    size = kernel_grid(1, dev)[0].shape[-1]
    c = size // 2
    k = torch.zeros(n, size * size, device=dev)
    fx, fy = px + c, py + c
    x0, y0 = fx.floor(), fy.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            wx = (1 - (fx - x0 - dx).abs()).clamp(min=0)
            wy = (1 - (fy - y0 - dy).abs()).clamp(min=0)
            idx = ((y0 + dy).clamp(0, size - 1) * size + (x0 + dx).clamp(0, size - 1)).long()
            k.scatter_add_(1, idx, weight * wx * wy)
    k = k.reshape(n, size, size)
    return filter2d(x, k / k.sum(dim=(1, 2), keepdim=True)), length


MODELS = {"gaussian": gaussian, "anisotropic": anisotropic, "defocus": defocus,
          "linear_motion": linear_motion, "curved_motion": curved_motion}
