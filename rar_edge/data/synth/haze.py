"""Haze: ``I = J t + A (1 - t)``, ``t = exp(-beta d)``, with coloured airlight and several depth proxies.

Severity maps the target mean transmission from 0.9 (light haze) to 0.3 (dense haze); beta is solved
per image from its depth map so that the mean of t meets it (where the depth map allows: a map with
large areas at depth 0 cannot get that dense); ``param`` is the mean transmission obtained."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import bcast, filter2d, gaussian_kernels, lerp, smooth_field, uniform

TRANSMISSION = (0.9, 0.3)


def _airlight(n: int, gen: torch.Generator) -> torch.Tensor:
    """Per-channel airlight (N,3,1,1): grey 0.7-1.0, tinted warm (dust, smog) or blue (mist), up to 15 %."""
    base = uniform(n, gen, 0.7, 1.0)
    tint = uniform(n, gen, -0.15, 0.15)  # < 0 warm, > 0 blue
    rgb = torch.stack([base * (1 - tint.clamp(min=0)), base * (1 - tint.abs() / 2), base * (1 + tint.clamp(max=0))], 1)
    return rgb.clamp(0, 1)[:, :, None, None]


def solve_beta(depth: torch.Tensor, target: torch.Tensor, iters: int = 40) -> torch.Tensor:
    """Per image, the beta whose mean transmission ``mean(exp(-beta d))`` equals ``target`` (bisection on a
    64² copy of the depth map: the mean is monotone in beta). ``-log(target) / mean(d)`` would undershoot:
    the mean of the exponential is at least the exponential of the mean (Jensen)."""
    d = F.interpolate(depth, size=(64, 64), mode="area") if depth.shape[-1] * depth.shape[-2] > 4096 else depth
    lo, hi = torch.zeros_like(target), torch.full_like(target, 60.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_clear = torch.exp(-bcast(mid) * d).mean(dim=(1, 2, 3)) > target
        lo, hi = torch.where(too_clear, mid, lo), torch.where(too_clear, hi, mid)
    return (lo + hi) / 2


def _apply(x: torch.Tensor, s: torch.Tensor, depth: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    target = lerp(*TRANSMISSION, s)
    d = depth.clamp(0, 1)
    beta = solve_beta(d, target)
    t = torch.exp(-bcast(beta) * d)
    return x * t + _airlight(x.shape[0], gen) * (1 - t), t.mean(dim=(1, 2, 3))


def _ramp(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Far at the top: a vertical ramp whose horizon sits anywhere in the upper 60 %."""
    y = torch.linspace(0.0, 1.0, h, device=gen.device)[None, None, :, None]
    horizon = bcast(uniform(n, gen, 0.0, 0.6))
    return (1 - (y - horizon).clamp(min=0) / (1 - horizon)).expand(n, 1, h, w)


def vertical(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth from a vertical ramp (the ground plane) plus 30 % of a smooth random field."""
    n, _, h, w = x.shape
    return _apply(x, s, 0.7 * _ramp(n, h, w, gen) + 0.3 * smooth_field(n, h, w, gen), gen)


def field(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Patchy fog: depth is a smooth random field of 3-6 cells a side."""
    n, _, h, w = x.shape
    cells = int(torch.randint(3, 7, (1,), generator=gen, device=gen.device))
    return _apply(x, s, smooth_field(n, h, w, gen, cells), gen)


def image_derived(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth from the image: bright, low-saturation regions (sky, distance) far, dark saturated ones near,
    blurred so edges stay scene-like, mixed with a vertical ramp."""
    n, _, h, w = x.shape
    lum = x.mean(1, keepdim=True)
    sat = x.amax(1, keepdim=True) - x.amin(1, keepdim=True)
    cue = (lum - sat).clamp(0, 1)
    small = F.interpolate(cue, scale_factor=0.25, mode="area") if min(h, w) >= 32 else cue
    sigma = torch.full((n,), 2.0, device=x.device)
    small = filter2d(small, gaussian_kernels(sigma, sigma, torch.zeros_like(sigma), size=13))
    cue = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    lo = cue.amin(dim=(2, 3), keepdim=True)
    cue = (cue - lo) / (cue.amax(dim=(2, 3), keepdim=True) - lo).clamp(min=1e-3)
    return _apply(x, s, 0.6 * cue + 0.4 * _ramp(n, h, w, gen), gen)


MODELS = {"vertical": vertical, "field": field, "image_derived": image_derived}
