"""JPEG's 8×8 block grid, found in the pixels: a second opinion on "jpeg" for ``Restorer.assess``.

A JPEG codes each 8×8 block of luma on its own, so a compressed photo steps more between pixel columns 8k+7 and
8k+8 (and rows alike) than between any other neighbours. The score is that boundary step over the median step
of the eight column phases, horizontal and vertical averaged: about 1 for a photo never compressed, and above
it in proportion to how coarsely the blocks were quantized. It reads the codec, not a degradation model, so it
holds on photos whatever made them (BENCHMARKS.md: ROC-AUC 0.94 / 0.91 against the assessor's 0.75 / 0.87 on
held-out crops under the training synthesis and the independent one), where the latent assessor, trained on
one synthesis, takes strong JPEG for clean.

The grid must still be where the codec put it: counted from the photo's top-left corner, or from its
bottom-right one (a photo turned upright by its EXIF orientation). A photo resized, or cropped off the grid
after compression, scores about 1 (no evidence), as does one under 16 pixels a side.

The probability is a logistic function of the score whose two numbers were fitted on training photos under
the training syntheses by ``python bench/jpeg_grid.py --fit photos/train`` (no held-out photo).
"""

from __future__ import annotations

import math

import numpy as np

from .images import FULL_SCALE

BLOCK = 8
#: sigmoid(WEIGHT * (score - 1) + BIAS): ``python bench/jpeg_grid.py --fit photos/train`` (BENCHMARKS.md).
WEIGHT, BIAS = 12.51, -2.46
#: Rec. 601 luma, as JPEG codes it.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: The column steps are read on at least this many rows (and the row steps on as many columns): the grid
#: runs the whole height, so every third row of a 12 MP photo finds it as well as all of them, at a third of
#: the cost; a small photo needs every row.
ROWS = 768


def _phase_steps(luma: np.ndarray) -> np.ndarray:
    """Mean absolute step between columns k and k+1, per phase k % 8 (8 values)."""
    steps = np.abs(np.diff(luma, axis=1))
    return np.array([steps[:, k::BLOCK].mean() for k in range(BLOCK)])


def _axis_score(luma: np.ndarray) -> float:
    """The boundary step over the median phase's, for a grid counted from either end of the rows."""
    per = _phase_steps(luma)
    width = luma.shape[1]
    # the step after column 7 (grid from the left) or after column width - 9 (grid from the right)
    phases = {BLOCK - 1, (width - BLOCK - 1) % BLOCK}
    return max(per[k] for k in phases) / (float(np.median(per)) + 1e-4)


def grid_score(rgb: np.ndarray) -> float:
    """How much more the luma steps on the 8×8 grid than elsewhere (~1: no JPEG grid; RGB (H, W, 3) uint8,
    uint16 or float in [0, 1])."""
    h, w = rgb.shape[:2]
    if h < 2 * BLOCK or w < 2 * BLOCK:
        return 1.0
    scale = 255.0 / FULL_SCALE.get(rgb.dtype, 1.0)  # steps in 8-bit levels whatever the type
    rows = rgb[:: max(1, h // ROWS), :, :3].astype(np.float32) @ (LUMA * scale)
    cols = rgb[:, :: max(1, w // ROWS), :3].astype(np.float32) @ (LUMA * scale)
    return 0.5 * (_axis_score(rows) + _axis_score(cols.T))


def jpeg_probability(score: float) -> float:
    """The probability that a photo with this grid score was JPEG-compressed (the fitted logistic)."""
    s = WEIGHT * (score - 1.0) + BIAS
    return 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))
