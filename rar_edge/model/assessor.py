"""The latent quality assessor (LQA): quality score, degradation probabilities, conditioning.

It reads the latent at three scales and pools each with its mean and its mean absolute value.
The mean absolute value of a learned (high-pass) feature map was meant as a local energy statistic,
where noise, blur and JPEG would show up and a plain global mean washes them out (the prototype's
assessor saw only global cues; see DESIGN.md); trained, it did not (below). Absolute rather than
squared energy, because squares of large activations made training diverge. |h| is computed through
relu, which every backend lowers.

With ``detail=True`` the trunk's statistics are joined by fixed (untrained) ones: the log mean
absolute deviation of the latent within 2x2 blocks, per channel, at two scales. Measured on the
trained models of 2026-11-28 (docs/model.md, "What the assessor sees"), the learned trunk's pooled
statistics carried no trace of noise, blur, JPEG or rain (a logistic probe on them: ROC-AUC 0.42-0.56;
the energy statistic above did not learn what it was meant to), while these fixed ones separate them
at 0.76-0.92; the log turns a photo's texture, which scales all of them alike, into an offset the MLP
can subtract.

With ``grid=True`` the fixed statistics also hold a **grid contrast**: the first scale's statistics of the
latent shifted by one position minus the aligned ones. With a 4-pixel latent stride, JPEG's 8x8 blocks are
the latent's aligned 2x2 blocks (and the runtime's tiles start at multiples of 16 pixels, so a photo's JPEG
grid stays aligned): the aligned statistics see the smoothed inside of the blocks, the shifted ones straddle
their edges, and a photo's texture changes both alike. A linear probe on the detail statistics found JPEG at
ROC-AUC 0.77, joined by the contrast 0.88 (BENCHMARKS.md, "What the assessor sees").

The conditioning embedding is bounded to (-1, 1) (2 sigmoid(x) - 1): it scales the restorer's
features through FiLM, and an unbounded embedding let one bad batch blow the restorer up.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage, downsample


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C): the mean over H and W.

    Taken with ``keepdim=True`` and flattened after: XNNPACK (ExecuTorch) delegates ``mean.dim`` only in
    that form (as global average pooling); without it every mean ran outside the delegate, in portable
    kernels, between pieces of the delegated graph (BENCHMARKS.md, Latency).
    """
    return x.mean(dim=(2, 3), keepdim=True).flatten(1)


class DetailStats(nn.Module):
    """Fixed statistics of a latent: log mean |z - block mean| per channel over 2x2 blocks, at two scales.

    Written as depthwise convs with constant weights, relu, means over H and W (which XNNPACK
    delegates), then a sum and a log on the pooled vectors, so every backend lowers it.
    Needs a latent of at least 4x4 (16 px images), as the trunk does.
    """

    SCALES = 2
    EPS = 1e-3  # well below the deviations of a clean int8 latent (~1e-2)
    #: Added to the logs to centre them: trained latents' log deviations sit near -4 (std ~1). An input
    #: with a mean of -4 made every weight change mostly a bias change and training crawled (measured).
    OFFSET = 4.0

    def __init__(self, channels: int, grid: bool = False) -> None:
        super().__init__()
        self.grid = grid
        # deviation{i}: channel c minus its 2x2 block mean, at position i of the block (a depthwise 2x2 conv,
        # stride 2). Four depthwise convs, not one grouped conv with 4 outputs per channel: XNNPACK runs the
        # grouped one as a general convolution (IGEMM, 0.6-0.7 ms per call at 512^2), the four as depthwise
        # ones; assess 10 % faster on XNNPACK and onnxruntime (BENCHMARKS.md, "ExecuTorch per operator").
        # Separate buffers: indexing one in the graph would be an op outside the delegate.
        for i, kernel in enumerate((torch.eye(4) - 0.25).reshape(4, 1, 1, 2, 2)):
            self.register_buffer(f"deviation{i}", kernel.repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("average", torch.full((channels, 1, 2, 2), 0.25), persistent=False)

    @classmethod
    def width(cls, channels: int, grid: bool = False) -> int:
        """Length of the statistics vector: per channel, one per scale and one for the grid contrast."""
        return (cls.SCALES + int(grid)) * channels

    def block_stats(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C): log mean |z - its 2x2 block mean| per channel, centred by OFFSET.

        The 4 deviations of a block sum to zero, so their mean |dev| is half the sum of their relu: one
        elementwise op per deviation instead of three (relu(x) + relu(-x)), and the sum over the 4 taken on
        the pooled (N, C) vectors.
        """
        pooled = [spatial_mean(torch.relu(nn.functional.conv2d(z, getattr(self, f"deviation{i}"), stride=2,
                                                               groups=z.shape[1]))) for i in range(4)]
        relu_sum = (pooled[0] + pooled[1]) + (pooled[2] + pooled[3])
        return torch.log(0.5 * relu_sum + self.EPS) + self.OFFSET

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = z.shape[1]
        stats = [self.block_stats(z)]
        if self.grid:  # the blocks shifted by one position (static slices: every backend lowers them)
            shifted = self.block_stats(z[:, :, 1:-1, 1:-1])
        for _ in range(self.SCALES - 1):
            z = nn.functional.conv2d(z, self.average, stride=2, groups=c)
            stats.append(self.block_stats(z))
        if self.grid:
            stats.append(shifted - stats[0])
        return torch.cat(stats, dim=1)


class Assessor(nn.Module):
    """Latent -> (quality (N,1) in dB, degradation logits (N,D), conditioning embedding (N,E))."""

    #: quality = QUALITY_OFFSET + QUALITY_SCALE * head: the head works in units of 10 dB around 30 dB,
    #: so Adam's per-step moves (~lr) cover the 10-50 dB range in hundreds of steps, not tens of thousands.
    QUALITY_OFFSET, QUALITY_SCALE = 30.0, 10.0

    def __init__(self, latent_channels: int, width: int, depth: int, cond_dim: int, num_degradations: int,
                 detail: bool = False, grid: bool = False, block: str = "naf") -> None:
        super().__init__()
        # Models trained before the detail statistics (or their grid contrast) existed load without them.
        if grid and not detail:
            raise ValueError("the grid contrast is one of the detail statistics: it needs detail=True")
        self.detail = DetailStats(latent_channels, grid) if detail else None
        stats_width = DetailStats.width(latent_channels, grid) if detail else 0
        # The detail statistics also reach the quality, the logits and the embedding through one linear
        # map (zero at first): the MLP, shaped by the trunk, learned to use them far slower than a probe.
        self.direct = None
        if detail:
            self.direct = nn.Linear(stats_width, 1 + num_degradations + cond_dim)
            nn.init.zeros_(self.direct.weight)
            nn.init.zeros_(self.direct.bias)
        self.stem = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.scales = nn.ModuleList()
        self.downs = nn.ModuleList()
        widths = [width, width * 2, width * 4]
        for i, w in enumerate(widths):
            self.scales.append(Stage(w, depth, block=block))
            if i + 1 < len(widths):
                self.downs.append(downsample(w, widths[i + 1]))
        pooled = 2 * sum(widths) + stats_width
        hidden = max(64, cond_dim * 2)
        self.mlp = nn.Sequential(nn.Linear(pooled, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.quality = nn.Linear(hidden, 1)
        self.degradation = nn.Linear(hidden, num_degradations)
        self.cond = nn.Linear(hidden, cond_dim)

    def trunk_stats(self, z: torch.Tensor) -> torch.Tensor:
        """The learned trunk's pooled statistics (N, 2 * sum(widths)): mean and mean |h| at each scale."""
        h = torch.relu(self.stem(z))
        stats = []
        for i, stage in enumerate(self.scales):
            h = stage(h)
            mean = spatial_mean(h)
            stats.append(mean)
            # mean |h| = 2 mean(relu(h)) - mean(h), since |h| = 2 relu(h) - h: one pass over h, not three.
            stats.append(2 * spatial_mean(torch.relu(h)) - mean)
            if i < len(self.downs):
                h = self.downs[i](h)
        return torch.cat(stats, dim=1)

    def forward(self, z: torch.Tensor, shield_cond: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quality (N,1) in dB, degradation logits (N,D) and the embedding (N,E) of a latent.

        Training passes ``shield_cond=True``: the trunk learns quality and degradations only (an IQA
        model), and the embedding head is the adapter the restore losses train, as in RAR, where
        adapters read a fixed IQA model into the restorer's conditioning.
        """
        stats = [self.trunk_stats(z)]
        detail = self.detail(z) if self.detail is not None else None
        if detail is not None:  # last, so that a model without them is these weights' first columns
            stats.append(detail)
        feat = self.mlp(torch.cat(stats, dim=1))
        quality = self.quality(feat)
        logits = self.degradation(feat)
        cond = self.cond(feat.detach() if shield_cond else feat)
        if detail is not None:
            direct, d = self.direct(detail), logits.shape[1]  # sliced, not split: see blocks.halves
            quality, logits, cond = quality + direct[:, :1], logits + direct[:, 1 : 1 + d], cond + direct[:, 1 + d :]
        return self.QUALITY_OFFSET + self.QUALITY_SCALE * quality, logits, 2 * torch.sigmoid(cond) - 1
