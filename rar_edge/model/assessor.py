"""The latent quality assessor (LQA): quality score, degradation probabilities, conditioning.

It reads the latent at three scales and pools each with its mean and its mean absolute value.
The mean absolute value of a learned (high-pass) feature map is a local energy statistic: local
degradations such as noise, blur and JPEG show up there, where a plain global mean washes
them out (the prototype's assessor saw only global cues; see DESIGN.md). Absolute rather than
squared energy, because squares of large activations made training diverge. |h| is written as
relu(h) + relu(-h), which every backend lowers.

The conditioning embedding is bounded to (-1, 1) (2 sigmoid(x) - 1): it scales the restorer's
features through FiLM, and an unbounded embedding let one bad batch blow the restorer up.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage, downsample


class Assessor(nn.Module):
    """Latent -> (quality (N,1) in dB, degradation logits (N,D), conditioning embedding (N,E))."""

    #: quality = QUALITY_OFFSET + QUALITY_SCALE * head: the head works in units of 10 dB around 30 dB,
    #: so Adam's per-step moves (~lr) cover the 10-50 dB range in hundreds of steps, not tens of thousands.
    QUALITY_OFFSET, QUALITY_SCALE = 30.0, 10.0

    def __init__(self, latent_channels: int, width: int, depth: int, cond_dim: int, num_degradations: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.scales = nn.ModuleList()
        self.downs = nn.ModuleList()
        widths = [width, width * 2, width * 4]
        for i, w in enumerate(widths):
            self.scales.append(Stage(w, depth))
            if i + 1 < len(widths):
                self.downs.append(downsample(w, widths[i + 1]))
        pooled = 2 * sum(widths)
        hidden = max(64, cond_dim * 2)
        self.mlp = nn.Sequential(nn.Linear(pooled, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.quality = nn.Linear(hidden, 1)
        self.degradation = nn.Linear(hidden, num_degradations)
        self.cond = nn.Linear(hidden, cond_dim)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The IQA trunk: pooled multi-scale statistics through the MLP, (N, hidden)."""
        h = torch.relu(self.stem(z))
        stats = []
        for i, stage in enumerate(self.scales):
            h = stage(h)
            stats.append(h.mean(dim=(2, 3)))
            stats.append((torch.relu(h) + torch.relu(-h)).mean(dim=(2, 3)))
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.mlp(torch.cat(stats, dim=1))

    def heads(self, feat: torch.Tensor, cond_feat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quality, degradation logits and embedding from trunk features.

        Training passes ``cond_feat = feat.detach()``: the trunk learns quality and degradations
        only (an IQA model), and the embedding head is the adapter the restore losses train, as
        in RAR, where adapters read a fixed IQA model into the restorer's conditioning.
        """
        quality = self.QUALITY_OFFSET + self.QUALITY_SCALE * self.quality(feat)
        cond = 2 * torch.sigmoid(self.cond(feat if cond_feat is None else cond_feat)) - 1
        return quality, self.degradation(feat), cond

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.features(z))
