"""Degradation synthesis: batched torch (CPU or CUDA), reproducible from a seed.

Every type maps a severity ``s`` in [0, 1] linearly onto a documented parameter range (the
table is in docs/degradations.md and in ``PARAM_RANGES`` below). Composites of 2-3 types are
applied in a physically sensible order: the scene's atmosphere first (haze, rain), then the
optics (blur), then the sensor (low light's exposure, noise), then the codec (JPEG).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rar_edge import DEGRADATIONS

#: Parameter of each type at severity 0 and at severity 1 (what ``params`` reports).
PARAM_RANGES: dict[str, tuple[float, float, str]] = {
    "noise": (5.0, 50.0, "noise sigma on the 0-255 scale (Gaussian, or Poisson-Gaussian with that sigma at mid-grey)"),
    "blur": (0.0, 1.0, "blur size: Gaussian sigma 0.8-3.0 px, defocus radius 1-4 px or motion length 3-15 px"),
    "jpeg": (60.0, 10.0, "JPEG quality"),
    "rain": (0.001, 0.006, "streak seed density (streaks per pixel); length 10-30 px, angle +-20 deg"),
    "haze": (0.5, 3.0, "scattering coefficient beta of t = exp(-beta * depth), depth proxy in [0, 1]"),
    "low_light": (0.5, 0.08, "exposure factor applied after gamma 1.0-1.6, with shot noise"),
}

#: Application order for composites (atmosphere -> optics -> sensor -> codec).
APPLY_ORDER: tuple[str, ...] = ("haze", "rain", "blur", "low_light", "noise", "jpeg")
BLUR_KINDS: tuple[str, ...] = ("gaussian", "defocus", "motion")
_KERNEL = 31  # odd; holds a 15 px motion streak, a radius-4 disk and a 3-sigma Gaussian of sigma 3


@dataclass
class DegradedBatch:
    """A degraded batch with its ground truth."""

    degraded: torch.Tensor  # (N,3,H,W) in [0,1]
    clean: torch.Tensor  # (N,3,H,W) in [0,1]
    labels: torch.Tensor  # (N,D) float 0/1, in DEGRADATIONS order
    severity: torch.Tensor  # (N,D) in [0,1]; 0 where the type is absent
    params: torch.Tensor  # (N,D) physical parameter of each applied type (PARAM_RANGES); 0 where absent


def _lerp(name: str, s: torch.Tensor) -> torch.Tensor:
    lo, hi, _ = PARAM_RANGES[name]
    return lo + (hi - lo) * s


def _uniform(n: int, gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)


def _kernel_grid(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(_KERNEL, device=device, dtype=torch.float32) - _KERNEL // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return xx.expand(n, -1, -1), yy.expand(n, -1, -1)


def _line_kernels(length: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Anti-aliased line segments (N,K,K) of the given lengths (px) and angles (rad), unnormalised."""
    xx, yy = _kernel_grid(length.shape[0], length.device)
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    along = xx * c + yy * s
    across = -xx * s + yy * c
    inside = (length[:, None, None] / 2 + 0.5 - along.abs()).clamp(0, 1)
    return inside * (1 - across.abs()).clamp(0, 1)


def blur_kernels(kind: torch.Tensor, size: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Normalised blur kernels (N,K,K): kind 0 Gaussian, 1 defocus disk, 2 motion; ``size`` in [0,1]."""
    xx, yy = _kernel_grid(size.shape[0], size.device)
    r = torch.sqrt(xx * xx + yy * yy)
    sigma = (0.8 + 2.2 * size)[:, None, None]
    gauss = torch.exp(-(r * r) / (2 * sigma * sigma))
    radius = (1.0 + 3.0 * size)[:, None, None]
    disk = (radius + 0.5 - r).clamp(0, 1)
    motion = _line_kernels(3.0 + 12.0 * size, angle)
    k = torch.where(kind[:, None, None] == 0, gauss, torch.where(kind[:, None, None] == 1, disk, motion))
    return k / k.sum(dim=(1, 2), keepdim=True)


def filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of ``x`` (N,C,H,W) with its own kernel (N,K,K), reflect padding."""
    n, c, h, w = x.shape
    pad = kernels.shape[-1] // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.repeat_interleave(c, dim=0)[:, None]
    return F.conv2d(xp, weight, groups=n * c).reshape(n, c, h, w)


def add_noise(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian (half the samples) or Poisson-Gaussian noise; sigma in PARAM_RANGES['noise']."""
    sigma = _lerp("noise", s)[:, None, None, None] / 255.0
    poisson = (_uniform(x.shape[0], gen) < 0.5)[:, None, None, None]
    # Poisson-Gaussian: half the variance is read noise, half is shot noise, equal at mid-grey.
    var = torch.where(poisson, sigma**2 / 2 + sigma**2 * x.clamp(min=0), sigma**2)
    noise = torch.randn(x.shape, generator=gen, device=x.device) * var.sqrt()
    return x + noise, _lerp("noise", s)


def add_blur(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian, defocus or motion blur (one kind per image, chosen at random)."""
    n = x.shape[0]
    kind = torch.randint(0, len(BLUR_KINDS), (n,), generator=gen, device=x.device)
    angle = _uniform(n, gen, 0.0, math.pi)
    return filter2d(x, blur_kernels(kind, s, angle)), _lerp("blur", s)


def add_jpeg(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A real JPEG round trip through libjpeg (Pillow, 4:2:0), on the CPU whatever the device."""
    quality = _lerp("jpeg", s).round()
    arrays = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for arr, q in zip(arrays, quality.tolist()):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(q))
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    y = torch.from_numpy(np.stack(out)).to(x.device).permute(0, 3, 1, 2).float() / 255.0
    return y, quality


def add_rain(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rain streaks: sparse seeds smeared along a near-vertical line, screen-blended over the image."""
    n, _, h, w = x.shape
    density = _lerp("rain", s)
    seeds = torch.rand((n, 1, h, w), generator=gen, device=x.device) < density[:, None, None, None]
    brightness = _uniform(n, gen, 0.4, 0.9)[:, None, None, None]
    length = _uniform(n, gen, 10.0, 30.0)
    angle = math.pi / 2 + _uniform(n, gen, -math.radians(20), math.radians(20))
    kernels = _line_kernels(length, angle)
    kernels = kernels / kernels.amax(dim=(1, 2), keepdim=True)
    streaks = filter2d(seeds.float(), kernels).clamp(0, 1) * brightness
    return 1 - (1 - x) * (1 - streaks), density


def depth_proxy(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """A plausible depth map (N,1,H,W) in [0,1]: far at the top, plus a smooth random field."""
    ramp = torch.linspace(1.0, 0.0, h, device=gen.device)[None, None, :, None].expand(n, 1, h, w)
    field = torch.rand((n, 1, 4, 4), generator=gen, device=gen.device)
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1)
    return 0.6 * ramp + 0.4 * field


def add_haze(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Atmospheric scattering: I = J t + A (1 - t), t = exp(-beta * depth)."""
    n, _, h, w = x.shape
    beta = _lerp("haze", s)
    airlight = _uniform(n, gen, 0.75, 1.0)[:, None, None, None]
    t = torch.exp(-beta[:, None, None, None] * depth_proxy(n, h, w, gen))
    return x * t + airlight * (1 - t), beta


def add_low_light(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Under-exposure: gamma, exposure factor, then the shot noise of few photons."""
    n = x.shape[0]
    exposure = _lerp("low_light", s)
    gamma = _uniform(n, gen, 1.0, 1.6)[:, None, None, None]
    dark = exposure[:, None, None, None] * x.clamp(min=0) ** gamma
    photons = 1000.0 / (1 + 9 * s)[:, None, None, None]  # 1000 photons at full scale down to 100
    noisy = dark + torch.randn(x.shape, generator=gen, device=x.device) * (dark / photons).sqrt()
    return noisy, exposure


_APPLY = {"noise": add_noise, "blur": add_blur, "jpeg": add_jpeg, "rain": add_rain,
          "haze": add_haze, "low_light": add_low_light}


def sample_specs(
    n: int, gen: torch.Generator, p_clean: float = 0.1, p_composite: float = 0.35,
    types: tuple[str, ...] = DEGRADATIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels (N,D) and severities (N,D): clean, one type, or a composite of 2-3 types."""
    d = len(DEGRADATIONS)
    labels = torch.zeros(n, d)
    allowed = [DEGRADATIONS.index(t) for t in types]
    cpu = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device)))
    for i in range(n):
        u = float(torch.rand(1, generator=cpu))
        if u < p_clean:
            continue
        k = 1
        if u > 1 - p_composite and len(allowed) > 1:
            k = 2 + int(torch.randint(0, 2, (1,), generator=cpu)) if len(allowed) > 2 else 2
        pick = torch.randperm(len(allowed), generator=cpu)[:k]
        labels[i, [allowed[j] for j in pick]] = 1
    severity = torch.rand(n, d, generator=cpu) * labels
    return labels, severity


def apply_degradations(clean: torch.Tensor, labels: torch.Tensor, severity: torch.Tensor, gen: torch.Generator) -> DegradedBatch:
    """Degrade ``clean`` (N,3,H,W in [0,1]) by ``labels``/``severity`` in APPLY_ORDER; clamps to [0,1]."""
    labels = labels.to(clean.device)
    severity = severity.to(clean.device)
    x = clean.clone()
    params = torch.zeros_like(severity)
    for name in APPLY_ORDER:
        j = DEGRADATIONS.index(name)
        idx = torch.nonzero(labels[:, j] > 0).flatten()
        if idx.numel() == 0:
            continue
        y, p = _APPLY[name](x[idx], severity[idx, j], gen)
        # Each stage sees a displayable image: clamp between stages, as a camera pipeline would.
        x[idx] = y.clamp(0, 1)
        params[idx, j] = p.to(params.dtype)
    return DegradedBatch(x, clean, labels, severity, params)


def degrade(clean: torch.Tensor, seed: int, **sample_kwargs) -> DegradedBatch:
    """Sample and apply degradations to a batch; the same seed (on the same device) gives the same output."""
    gen = torch.Generator(device=clean.device).manual_seed(seed)
    labels, severity = sample_specs(clean.shape[0], gen, **sample_kwargs)
    return apply_degradations(clean, labels, severity, gen)
