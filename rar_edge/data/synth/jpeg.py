"""JPEG models: real libjpeg round trips through Pillow, on the CPU whatever the device.

Severity maps the (last) quality from 90 to 10; ``param`` is that quality."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .common import lerp, uniform

QUALITY = (90.0, 10.0)
#: Pillow's ``subsampling``: 0 is 4:4:4, 2 is 4:2:0.
SUBSAMPLING = {"444": 0, "420": 2}


def _round_trip(arr: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return np.asarray(Image.open(buf).convert("RGB"))


def _compress(x: torch.Tensor, passes: list[list[tuple[int, int]]]) -> torch.Tensor:
    """Each image through its own list of (quality, subsampling) passes."""
    arrays = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for arr, steps in zip(arrays, passes):
        for q, sub in steps:
            arr = _round_trip(arr, q, sub)
        out.append(arr)
    return torch.from_numpy(np.stack(out)).to(x.device).permute(0, 3, 1, 2).float() / 255.0


def _quality(s: torch.Tensor) -> torch.Tensor:
    return lerp(*QUALITY, s).round()


def jpeg_420(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One compression, chroma subsampled 4:2:0 (cameras' and most encoders' default)."""
    q = _quality(s)
    return _compress(x, [[(int(v), SUBSAMPLING["420"])] for v in q.tolist()]), q


def jpeg_444(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One compression, full-resolution chroma (4:4:4)."""
    q = _quality(s)
    return _compress(x, [[(int(v), SUBSAMPLING["444"])] for v in q.tolist()]), q


def double(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Compressed twice, as a shared photo is: first at quality 50-95 (either subsampling), then at the
    severity's quality with 4:2:0."""
    q = _quality(s)
    first = uniform(x.shape[0], gen, 50.0, 95.0).round()
    sub = (uniform(x.shape[0], gen) < 0.5).long() * 2
    passes = [[(int(a), int(b)), (int(c), SUBSAMPLING["420"])] for a, b, c in zip(first.tolist(), sub.tolist(), q.tolist())]
    return _compress(x, passes), q


MODELS = {"jpeg_420": jpeg_420, "jpeg_444": jpeg_444, "double": double}
