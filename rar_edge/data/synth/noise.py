"""Sensor noise models. Severity maps sigma from 1 (barely visible) to 50 on the 0-255 scale."""

from __future__ import annotations

import torch

from .common import bcast, filter2d, gaussian_kernels, lerp, uniform

SIGMA = (1.0, 50.0)  # on 0-255, at severity 0 and 1


def _sigma(s: torch.Tensor) -> torch.Tensor:
    return lerp(*SIGMA, s)


def gaussian(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """White Gaussian noise, independent per pixel and channel."""
    sigma = _sigma(s)
    return x + torch.randn(x.shape, generator=gen, device=x.device) * bcast(sigma / 255), sigma


def poisson_gaussian(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal-dependent noise, variance a*x + b: shot noise share 30-90 %, sigma exact at mid-grey."""
    sigma = bcast(_sigma(s) / 255)
    shot = bcast(uniform(x.shape[0], gen, 0.3, 0.9))
    var = sigma**2 * ((1 - shot) + shot * 2 * x.clamp(min=0))  # at x = 0.5 the two parts add to sigma²
    return x + torch.randn(x.shape, generator=gen, device=x.device) * var.sqrt(), _sigma(s)


def correlated(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatially correlated noise, as a demosaic or a phone's denoiser leaves it: white noise blurred by a
    Gaussian of 0.5-1.5 px, rescaled to the target sigma."""
    n = x.shape[0]
    width = uniform(n, gen, 0.5, 1.5)
    k = gaussian_kernels(width, width, torch.zeros_like(width), size=9)
    white = torch.randn(x.shape, generator=gen, device=x.device)
    coloured = filter2d(white, k) / k.pow(2).sum(dim=(1, 2)).sqrt()[:, None, None, None]  # unit variance again
    return x + coloured * bcast(_sigma(s) / 255), _sigma(s)


def chroma(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour (chroma) noise stronger than luma noise: luma at 25-60 % of the chroma's strength, blotchy
    chroma (blurred 1-2 px), mixed back into RGB and scaled so the RGB noise has standard deviation sigma."""
    n, _, h, w = x.shape
    sigma = bcast(_sigma(s) / 255)
    luma_share = bcast(uniform(n, gen, 0.25, 0.6))
    luma = torch.randn((n, 1, h, w), generator=gen, device=x.device) * sigma * luma_share
    width = uniform(n, gen, 1.0, 2.0)
    k = gaussian_kernels(width, width, torch.zeros_like(width), size=9)
    cbcr = filter2d(torch.randn((n, 2, h, w), generator=gen, device=x.device), k)
    cbcr = cbcr / k.pow(2).sum(dim=(1, 2)).sqrt()[:, None, None, None] * sigma
    cb, cr = cbcr[:, :1], cbcr[:, 1:]
    # YCbCr (BT.601) -> RGB for the noise alone.
    noise = torch.cat([luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr, luma + 1.772 * cb], dim=1)
    noise = noise * sigma / noise.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
    return x + noise, _sigma(s)


MODELS = {"gaussian": gaussian, "poisson_gaussian": poisson_gaussian, "correlated": correlated, "chroma": chroma}
