"""Low light. Severity maps the exposure factor from 0.5 to 0.05 (linear model) or 0.5 to 0.08
(the gamma model of synthesis v1), or the mean brightness ratio from 0.6 to 0.1 (the tone-curve model of
synthesis v3); ``param`` is that factor."""

from __future__ import annotations

import math

import torch

from .common import bcast, lerp, library_rng, uniform
from .legacy import low_light as gamma  # the present gamma model stays one of the choices


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def linear(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark exposure in linear light: sRGB -> linear -> exposure x0.5-0.05 -> shot noise (full well
    200-4000 photons) and read noise (sigma 0.05-0.3 % of full scale) -> a white-balance
    shift on half the images (kornia's Planckian jitter, black-body 3000-15000 K) -> sRGB."""
    n = x.shape[0]
    exposure = lerp(0.5, 0.05, s)
    lin = _srgb_to_linear(x) * bcast(exposure)
    photons = bcast(torch.exp(uniform(n, gen, 5.3, 8.3)))  # 200-4000 electrons at full scale
    read = bcast(uniform(n, gen, 0.0005, 0.003))
    var = lin.clamp(min=0) / photons + read**2
    lin = lin + torch.randn(x.shape, generator=gen, device=x.device) * var.sqrt()
    shift = uniform(n, gen) < 0.5
    if bool(shift.any()):
        from kornia.augmentation import RandomPlanckianJitter

        with library_rng(gen):
            shifted = RandomPlanckianJitter(mode="blackbody", p=1.0)(lin.clamp(0, 1))
        lin = torch.where(bcast(shift), shifted, lin)
    return _linear_to_srgb(lin), exposure


def tone_curve(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark global tone curve, as an under-exposed photo's camera response or a darkening edit makes it:
    a power law (gamma 1-3.5, log-uniform: it crushes shadows and keeps highlights), blacks crushed by an
    offset of 0-25 % on half the images, then the gain that brings the mean brightness to 0.6 -> 0.1 of
    the clean image's (capped at 1, so a steep curve may come out darker). No sensor noise: the other two
    models have it, and composites with noise add it."""
    n = x.shape[0]
    ratio = lerp(0.6, 0.1, s)
    gam = torch.exp(uniform(n, gen, 0.0, math.log(3.5)))
    y = x.clamp(0, 1) ** bcast(gam)
    offset = uniform(n, gen, 0.0, 0.25) * (uniform(n, gen) < 0.5).float()
    y = ((y - bcast(offset)) / bcast(1 - offset)).clamp(min=0)
    gain = (ratio * x.mean(dim=(1, 2, 3)) / y.mean(dim=(1, 2, 3)).clamp(min=1e-6)).clamp(max=1.0)
    return y * bcast(gain), ratio


MODELS = {"gamma": gamma, "linear": linear}
#: Synthesis v3 adds the tone curve (global darkening without a linear exposure model).
MODELS_V3 = {**MODELS, "tone_curve": tone_curve}
