"""Image-quality and ranking metrics (scikit-image SSIM, scipy Spearman; nothing hand-rolled but AUC's rank formula)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr
from skimage.metrics import structural_similarity


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of float images in [0,1] (inf for identical images)."""
    mse = float(np.mean((np.clip(img, 0, 1).astype(np.float64) - ref.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of (H,W,3) or (3,H,W) float images in [0,1], per scikit-image."""
    if img.shape[0] == 3 and img.ndim == 3:
        img, ref = img.transpose(1, 2, 0), ref.transpose(1, 2, 0)
    return float(structural_similarity(np.clip(img, 0, 1), ref, channel_axis=2, data_range=1.0))


def srcc(pred: list[float] | np.ndarray, true: list[float] | np.ndarray) -> float:
    """Spearman rank correlation (nan if either side is constant)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if len(pred) < 2 or np.all(pred == pred[0]) or np.all(true == true[0]):
        return float("nan")
    return float(spearmanr(pred, true).statistic)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (ties get half credit); nan without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))
