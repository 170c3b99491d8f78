"""JPEG's 8×8 block grid, found in the pixels: a second opinion on "jpeg" for ``Restorer.assess`` and
``restore``'s report (the loop does not read it).

A JPEG codes each 8×8 block of luma on its own, so a compressed photo steps more between pixel columns 8k+7 and
8k+8 (and rows alike) than between any other neighbours. The score is that boundary step over the median step
of the eight column phases, horizontal and vertical averaged: about 1 for a photo never compressed, and above
it in proportion to how coarsely the blocks were quantized. It reads the codec, not a degradation model, so it
holds on photos whatever made them (BENCHMARKS.md, ``bench/jpeg_grid.py``: ROC-AUC 0.93 / 0.92 against the
assessor's 0.75 / 0.85 on held-out crops under the training synthesis and the independent one), where the latent
assessor, trained on one synthesis, takes strong JPEG for clean.

The grid must still be where the codec put it: counted from the photo's top-left corner, or from its
bottom-right one (a photo turned upright by its EXIF orientation). A photo resized, or cropped off the grid
after compression, scores about 1 (no evidence), as does one under 16 pixels a side.

The probability is a logistic function of the score whose two numbers were fitted on training photos under
the training syntheses by ``python bench/jpeg_grid.py --fit photos/train`` (no held-out photo).
"""

from __future__ import annotations

import math
import numpy as np

from rar_edge.errors import RarEdgeError
from rar_edge.loop import sigmoid

from .images import FULL_SCALE

BLOCK = 8
#: sigmoid(WEIGHT * (score - 1) + BIAS): ``python bench/jpeg_grid.py --fit photos/train`` (BENCHMARKS.md).
WEIGHT, BIAS = 12.51, -2.46
#: Rec. 601 luma, as JPEG codes it.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: The column steps are read on an evenly spaced sample of at least this many rows (the row steps on as many
#: columns): the grid runs the whole height and width, so a sample shows it, at a third of the cost of every
#: line on a 12 MP photo (bench/jpeg_grid.py); photos up to 1535 pixels a side are read whole.
LINES = 768


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


def grid_score(rgb: np.ndarray, lines: int = LINES) -> float:
    """How much more the luma steps on the 8×8 grid than elsewhere (~1: no JPEG grid; RGB or RGBA (H, W, C)
    uint8, uint16, or float32/float64 in [0, 1]), read on at least ``lines`` rows and columns."""
    if lines < 1:
        raise RarEdgeError(f"the JPEG grid needs at least one line to read, got lines={lines}")
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise RarEdgeError(f"the JPEG grid reads RGB pixels (H, W, 3), got an array of shape {rgb.shape}")
    if rgb.dtype not in FULL_SCALE and rgb.dtype not in (np.float32, np.float64):
        raise RarEdgeError(f"the JPEG grid reads uint8, uint16 or float pixels, got {rgb.dtype}; convert first")
    h, w = rgb.shape[:2]
    if h < 2 * BLOCK or w < 2 * BLOCK:
        return 1.0
    scale = 255.0 / FULL_SCALE.get(rgb.dtype, 1.0)  # steps in 8-bit levels whatever the type (the 1e-4 floor)
    rows = rgb[:: max(1, h // lines), :, :3].astype(np.float32) @ (LUMA * scale)
    cols = rgb[:, :: max(1, w // lines), :3].astype(np.float32) @ (LUMA * scale)
    score = 0.5 * (_axis_score(rows) + _axis_score(cols.T))
    return score if math.isfinite(score) else 1.0  # NaN pixels: no evidence either way


def jpeg_probability(score: float) -> float:
    """The probability that a photo with this grid score was JPEG-compressed (the fitted logistic)."""
    return sigmoid(WEIGHT * (score - 1.0) + BIAS)


def grid_probability(rgb: np.ndarray, lines: int = LINES) -> float:
    """The probability that ``rgb`` was JPEG-compressed, from its grid score: what ``Restorer.assess`` and
    ``restore`` report as ``jpeg_grid``."""
    return jpeg_probability(grid_score(rgb, lines))


def with_grid(probabilities: dict[str, float], grid: float) -> dict[str, float]:
    """The assessor's degradation probabilities with JPEG's raised to the grid's where that is larger: what
    ``Assessment.present`` names degradations from."""
    return {**probabilities, "jpeg": max(probabilities.get("jpeg", 0.0), grid)}
