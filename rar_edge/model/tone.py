"""The exposure stage: a global per-channel tone curve estimated from a thumbnail (the torch side).

Low light loses most of what it loses globally: one function of the pixel value per channel undoes it
(BENCHMARKS.md, "A global tone curve before the loop": the oracle curve +15 / +19 dB on the held-out low-light
crops, where the restore loop gains +1.75 / +0.25). ``ToneHead`` estimates such a curve blind: an MLP on the
64² thumbnail's per-channel mean, spread and 16-bin soft histogram returns Zero-DCE's iterated curve
``y + alpha y (1 - y)`` (``ITERS`` steps per channel, alpha in (-1, 1)), then a per-channel gain and offset,
plus one logit, "this photo is under-exposed". The runtime (rar_edge/runtime/tone.py) evaluates the same head
in numpy and applies the curve as a lookup table; tests/test_tone.py holds the two to each other.

What the head cannot do is tell an under-exposed photo from a dark scene taken as metered (the thumbnail
holds no exposure data), which is why the stage is opt-in (``rar-edge restore --tone``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ITERS, THUMB, BINS = 8, 64, 16
#: Numbers per image: per channel ITERS alphas, then a log gain and an offset.
CURVE_PARAMS = 3 * ITERS + 6
FEATURES = 6 + 3 * BINS


def features(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean, standard deviation and soft histogram of the 64² thumbnail (N, FEATURES)."""
    return thumbnail_features(F.adaptive_avg_pool2d(x, THUMB))


def thumbnail_features(t: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """``features`` of a thumbnail itself (N,3,T,T): what a bundle's tone graph reads (export/tone.py)."""
    centers = torch.linspace(0, 1, bins).view(1, 1, bins, 1)
    hist = torch.relu(1 - (t.flatten(2)[:, :, None, :] - centers).abs() * (bins - 1)).mean(3).flatten(1)
    return torch.cat([t.mean((2, 3)), t.std((2, 3)), hist], 1)


class ToneHead(nn.Module):
    """Thumbnail statistics -> curve parameters (N, CURVE_PARAMS) and the "under-exposed" logit (N,)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = hidden
        self.mlp = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, CURVE_PARAMS + 1))
        nn.init.zeros_(self.mlp[-1].weight)  # starts as the identity curve, "not under-exposed" at 50 %
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.mlp(features(x))
        return p[:, :-1], p[:, -1]


def apply_curve(x: torch.Tensor, p: torch.Tensor, iters: int = ITERS) -> torch.Tensor:
    """``x`` (N,3,H,W) through each image's curve: ``iters`` steps ``y + alpha y (1 - y)``, then ``gain y + offset``."""
    n = x.shape[0]
    alpha = torch.tanh(p[:, : 3 * iters]).view(n, iters, 3, 1, 1)
    gain = torch.exp(p[:, 3 * iters : 3 * iters + 3]).view(n, 3, 1, 1)
    offset = p[:, 3 * iters + 3 :].view(n, 3, 1, 1)
    y = x.clamp(0, 1)
    for k in range(iters):
        y = y + alpha[:, k] * y * (1 - y)
    return (gain * y + offset).clamp(0, 1)
