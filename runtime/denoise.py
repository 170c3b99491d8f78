"""The noise stage in numpy: sliding-window DCT hard thresholding after the loop, where the input has noise.

``Restorer.restore`` runs it on the image it returns when the assessor finds noise in the input (its probability
at least ``FOUND_AT``: ``restorer.wants_noise_stage``), unless ``denoise=False`` (``rar-edge restore
--no-denoise``). After the loop rather than before: the two orders are level on held-out photos over three
syntheses (BENCHMARKS.md, "The noise stage"), and after, the loop's own first assessment is the gate and the
loop runs as it did.

The method is Yu & Sapiro's DCT denoising (IPOL 2011) with BM3D's aggregation weights: every 8×8 window (every
``STRIDE``-th position) of each channel of an orthonormal opponent colour transform goes through a 2-D DCT;
coefficients under ``K`` times the noise's deviation *at that frequency* are zeroed; windows are transformed back
and averaged, each weighted by 1 / (coefficients kept) so flat windows count more. ``K`` = 3 is the paper's
value, not fitted here.

The noise's deviation is estimated per frequency and channel from the image itself: the root mean square of each
coefficient over the flattest ``FLAT`` share of windows (least energy outside the mean), corrected for the
selection (``FLAT_BIAS``); windows with no detail at all (a border, a clipped sky: no noise either) are left
out of that choice. Per frequency, because a phone's or a demosaic's noise is not white: blurred (correlated)
and chroma noise put their energy at low frequencies, where a single sigma from the finest band (Donoho's MAD)
underestimates it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


BLOCK = 8
STRIDE = 2  # every other window position: within ~0.2 dB of every position at a quarter of the cost (the
#            overlap-add below is written for 2)
K = 3.0
FLAT = 0.1
#: Windows whose energy outside the mean is at most this (on the [0, 1] scale; 8-bit rounding alone gives about
#: 1e-4) hold no detail and no noise: a border or a clipped area. They are not what the estimate reads.
MIN_ENERGY = 1e-6
#: The flattest FLAT of white noise's windows show this share of its deviation (they are flat partly by chance:
#: chi-square selection, measured on white noise); divided out, so that K counts the noise's true deviations.
FLAT_BIAS = 0.844
BAND = 64  # window rows per pass: bounds memory on large photos (about 35 MB of windows at 4000 px wide)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


#: (64, 64) orthonormal 2-D DCT of a flattened 8×8 window: coefficients = window @ DCT2.T
DCT2 = np.kron(_dct_matrix(BLOCK), _dct_matrix(BLOCK)).astype(np.float32)
#: Rows: the mean and two opponent axes, orthonormal, so white RGB noise stays white at the same deviation.
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float32)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)


def noise_sigma(channel: np.ndarray) -> np.ndarray:
    """(64,): the noise's deviation at each DCT frequency of ``channel`` (the mean's entry 0: never thresholded);
    all zeros where no window holds any detail.

    From the windows that do not overlap (every 8th position, more on small photos: at least ~1000 windows).
    """
    step = max(1, min(BLOCK, int(np.sqrt(channel.size / (BLOCK * BLOCK * 1000)) * BLOCK)))
    view = sliding_window_view(channel, (BLOCK, BLOCK))[::step, ::step]
    coef = view.reshape(-1, BLOCK * BLOCK) @ DCT2.T
    energy = np.einsum("ij,ij->i", coef[:, 1:], coef[:, 1:])
    live = energy > MIN_ENERGY
    if not live.any():
        return np.zeros(BLOCK * BLOCK, np.float32)
    coef, energy = coef[live], energy[live]
    flat = coef[energy <= np.quantile(energy, FLAT)]
    sigma = np.sqrt(np.mean(flat * flat, axis=0)) / FLAT_BIAS
    sigma[0] = 0.0
    return sigma


def _denoise_channel(channel: np.ndarray) -> np.ndarray:
    """One channel (H, W) float32 -> the same size, denoised.

    The sums run on four half-resolution planes (one per pixel parity, as windows start at even positions): a
    window at (r, c) puts its pixel (2a + p, 2b + q) at plane (p, q), position (r + a, c + b), so the overlap-add
    is 16 shifted adds of whole (2, 2, rows, cols) blocks instead of 64 strided ones, and every position of a
    plane shares one weight sum (norm).
    """
    pad = BLOCK - 1
    h, w = channel.shape
    threshold = K * noise_sigma(channel)
    # every pixel then lies in 16 windows; the odd extra row / column makes the padded sides even (the planes)
    x = np.pad(channel, ((pad, pad + h % 2), (pad, pad + w % 2)), mode="reflect")
    rows_total = (x.shape[0] - BLOCK) // STRIDE + 1
    cols = (x.shape[1] - BLOCK) // STRIDE + 1
    half = BLOCK // STRIDE
    planes = np.zeros((STRIDE, STRIDE, x.shape[0] // STRIDE, x.shape[1] // STRIDE), np.float32)
    norm = np.zeros(planes.shape[2:], np.float32)
    for start in range(0, rows_total, BAND):
        rows = min(BAND, rows_total - start)
        windows = sliding_window_view(x, (BLOCK, BLOCK))[::STRIDE, ::STRIDE][start:start + rows]
        # Frequencies along the first axis, windows along the second (64, n): the windows come back contiguous
        # per pixel (i, j) for the sums below
        coef = DCT2 @ windows.reshape(-1, BLOCK * BLOCK).T
        keep = np.abs(coef) >= threshold[:, None]
        coef *= keep
        weight = (1.0 / keep.sum(axis=0)).astype(np.float32)  # >= 1 kept: the mean's threshold is 0
        coef = DCT2.T @ coef
        coef *= weight
        # (i, j, r, c) -> (a, p, b, q, r, c) with i = 2a + p, j = 2b + q
        blocks = coef.reshape(half, STRIDE, half, STRIDE, rows, cols)
        weights = weight.reshape(rows, cols)
        for a in range(half):
            r = slice(start + a, start + a + rows)
            for b in range(half):
                planes[:, :, r, b:b + cols] += blocks[a, :, b]
                norm[r, b:b + cols] += weights
    planes /= np.maximum(norm, 1e-12)
    out = planes.transpose(2, 0, 3, 1).reshape(x.shape)
    return out[pad:pad + h, pad:pad + w]


def denoise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> a new float32 array, noise removed. Photos under BLOCK pixels a side come back
    as they are (a copy: no window fits). One opponent channel at a time, so a 12 MP photo holds the output and
    one channel's work besides its input."""
    x = rgb.astype(np.float32, copy=False)
    if min(x.shape[:2]) < BLOCK:
        return x.copy()
    out = np.zeros(x.shape, np.float32)
    for axis in OPPONENT:
        channel = _denoise_channel(x @ axis)
        for k in range(3):  # back to RGB: the transform is orthonormal, so its transpose inverts it
            out[..., k] += axis[k] * channel
    return np.clip(out, 0.0, 1.0, out=out)
