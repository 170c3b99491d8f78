"""Synthesis "v1": the one model per type that previews 1-6 were trained on, kept byte for byte.

It stays so that earlier figures can be reproduced and compared (issue 8's train-synthesis x
test-synthesis table), not as a training default.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from .common import bcast, filter2d, kernel_grid, lerp, line_kernels, smooth_field, uniform

#: Parameter of each type at severity 0 and at severity 1 (what ``params`` reports).
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "noise": (5.0, 50.0), "blur": (0.0, 1.0), "jpeg": (60.0, 10.0),
    "rain": (0.001, 0.006), "haze": (0.5, 3.0), "low_light": (0.5, 0.08),
}


def _param(name: str, s: torch.Tensor) -> torch.Tensor:
    return lerp(*PARAM_RANGES[name], s)


def blur_kernels(kind: torch.Tensor, size: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Normalised blur kernels (N,K,K): kind 0 Gaussian, 1 defocus disk, 2 motion; ``size`` in [0,1]."""
    xx, yy = kernel_grid(size.shape[0], size.device)
    r = torch.sqrt(xx * xx + yy * yy)
    sigma = (0.8 + 2.2 * size)[:, None, None]
    gauss = torch.exp(-(r * r) / (2 * sigma * sigma))
    radius = (1.0 + 3.0 * size)[:, None, None]
    disk = (radius + 0.5 - r).clamp(0, 1)
    motion = line_kernels(3.0 + 12.0 * size, angle)
    k = torch.where(kind[:, None, None] == 0, gauss, torch.where(kind[:, None, None] == 1, disk, motion))
    return k / k.sum(dim=(1, 2), keepdim=True)


def noise(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian (half the samples) or Poisson-Gaussian noise, sigma 5-50 on 0-255."""
    sigma = bcast(_param("noise", s)) / 255.0
    poisson = bcast(uniform(x.shape[0], gen) < 0.5)
    # Poisson-Gaussian: half the variance is read noise, half is shot noise, equal at mid-grey.
    var = torch.where(poisson, sigma**2 / 2 + sigma**2 * x.clamp(min=0), sigma**2)
    return x + torch.randn(x.shape, generator=gen, device=x.device) * var.sqrt(), _param("noise", s)


def blur(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian, defocus or motion blur (one kind per image, chosen at random); param: size 0-1."""
    n = x.shape[0]
    kind = torch.randint(0, 3, (n,), generator=gen, device=x.device)
    angle = uniform(n, gen, 0.0, math.pi)
    return filter2d(x, blur_kernels(kind, s, angle)), _param("blur", s)


def jpeg(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A libjpeg round trip through Pillow (4:2:0), quality 60-10, on the CPU whatever the device."""
    quality = _param("jpeg", s).round()
    arrays = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for arr, q in zip(arrays, quality.tolist()):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(q))
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).to(x.device).permute(0, 3, 1, 2).float() / 255.0, quality


def rain(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rain streaks: sparse seeds smeared along a near-vertical line, screen-blended over the image."""
    n, _, h, w = x.shape
    density = _param("rain", s)
    seeds = torch.rand((n, 1, h, w), generator=gen, device=x.device) < bcast(density)
    brightness = bcast(uniform(n, gen, 0.4, 0.9))
    length = uniform(n, gen, 10.0, 30.0)
    angle = math.pi / 2 + uniform(n, gen, -math.radians(20), math.radians(20))
    kernels = line_kernels(length, angle)
    kernels = kernels / kernels.amax(dim=(1, 2), keepdim=True)
    streaks = filter2d(seeds.float(), kernels).clamp(0, 1) * brightness
    return 1 - (1 - x) * (1 - streaks), density


def haze(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """I = J t + A (1 - t), t = exp(-beta * depth), grey airlight, depth = vertical ramp + smooth field."""
    n, _, h, w = x.shape
    beta = _param("haze", s)
    airlight = bcast(uniform(n, gen, 0.75, 1.0))
    ramp = torch.linspace(1.0, 0.0, h, device=gen.device)[None, None, :, None].expand(n, 1, h, w)
    depth = 0.6 * ramp + 0.4 * smooth_field(n, h, w, gen)
    t = torch.exp(-bcast(beta) * depth)
    return x * t + airlight * (1 - t), beta


def low_light(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Under-exposure: gamma 1.0-1.6, exposure factor 0.5-0.08, then the shot noise of few photons."""
    n = x.shape[0]
    exposure = _param("low_light", s)
    gamma = bcast(uniform(n, gen, 1.0, 1.6))
    dark = bcast(exposure) * x.clamp(min=0) ** gamma
    photons = bcast(1000.0 / (1 + 9 * s))  # 1000 photons at full scale down to 100
    return dark + torch.randn(x.shape, generator=gen, device=x.device) * (dark / photons).sqrt(), exposure
