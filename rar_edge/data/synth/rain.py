"""Rain models. Severity maps the streak density from 0.0005 to 0.006 streaks per pixel; ``param`` is it."""

from __future__ import annotations

import math

import torch

from .common import bcast, filter2d, gaussian_kernels, kernel_grid, lerp, library_rng, line_kernels, uniform

DENSITY = (0.0005, 0.006)


def _streak_layer(n: int, h: int, w: int, density: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A rain layer (N,1,H,W) in [0,1]: seeds drawn at ``density``, smeared into streaks 1-3 px wide,
    10-40 px long, within 30 degrees of vertical, then softened by 0-1.5 px of blur."""
    dev = gen.device
    seeds = (torch.rand((n, 1, h, w), generator=gen, device=dev) < bcast(density)).float()
    seeds = seeds * bcast(uniform(n, gen, 0.5, 1.0)) + seeds * 0.5 * torch.rand((n, 1, h, w), generator=gen, device=dev)
    length, width = uniform(n, gen, 10.0, 40.0), uniform(n, gen, 1.0, 3.0)
    angle = math.pi / 2 + uniform(n, gen, -math.radians(30), math.radians(30))
    k = line_kernels(length, angle, width)
    layer = filter2d(seeds, k / k.amax(dim=(1, 2), keepdim=True)).clamp(0, 1)
    soft = uniform(n, gen, 0.3, 1.5)
    return filter2d(layer, gaussian_kernels(soft, soft, torch.zeros_like(soft), size=9))


def _drops(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Splashes on the lens: a few blurred discs (N,1,H,W) in [0,1], on about a third of the images."""
    dev = gen.device
    seeds = (torch.rand((n, 1, h, w), generator=gen, device=dev) < 0.0004).float()
    seeds = seeds * bcast((uniform(n, gen) < 0.35).float())
    radius = uniform(n, gen, 1.5, 4.0)
    xx, yy = kernel_grid(n, dev)
    disc = (radius[:, None, None] + 0.5 - torch.sqrt(xx**2 + yy**2)).clamp(0, 1)
    return filter2d(seeds, disc).clamp(0, 1) * 0.5


def streaks(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Streaks (and sometimes drops) of brightness 0.3-0.9, screen- or additively blended (half each)."""
    n, _, h, w = x.shape
    density = lerp(*DENSITY, s)
    layer = (_streak_layer(n, h, w, density, gen) + _drops(n, h, w, gen)).clamp(0, 1)
    layer = layer * bcast(uniform(n, gen, 0.3, 0.9))
    tint = 1 - bcast(uniform(n, gen, 0.0, 0.1)) * torch.tensor([1.0, 0.5, 0.0], device=x.device)[None, :, None, None]
    layer = layer * tint  # rain lit by the scene: from white to slightly blue
    screen = 1 - (1 - x) * (1 - layer)
    additive = x + layer
    return torch.where(bcast(uniform(n, gen) < 0.5), screen, additive), density


def kornia_drops(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """kornia.augmentation.RandomRain: thin straight drops 5-25 px tall; drops = density * pixels / 2."""
    from kornia.augmentation import RandomRain

    n, _, h, w = x.shape
    density = lerp(*DENSITY, s)
    out = []
    with library_rng(gen):
        for img, d in zip(x, density.tolist()):
            drops = max(1, int(d * h * w / 2))
            aug = RandomRain(number_of_drops=(drops, drops + 1), drop_height=(5, 25), drop_width=(-4, 4), p=1.0)
            out.append(aug(img[None].clamp(0, 1))[0])
    return torch.stack(out), density


def overcast(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rain under an overcast sky: the scene dimmed to 95 -> 60 % of its light (heavier rain, darker sky)
    and softened by the wet air (Gaussian 0.3-1.2 px), then ``streaks``' rain over it."""
    n = x.shape[0]
    soft = uniform(n, gen, 0.3, 1.2)
    dim = filter2d(x, gaussian_kernels(soft, soft, torch.zeros_like(soft), size=9)) * bcast(lerp(0.95, 0.6, s))
    return streaks(dim, s, gen)


MODELS = {"streaks": streaks, "kornia_drops": kornia_drops}
#: Synthesis v3 adds rain under an overcast sky (a dimmer, softer scene behind the streaks).
MODELS_V3 = {**MODELS, "overcast": overcast}
