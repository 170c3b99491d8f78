"""Folders of clean photos and deterministic random crops from them.

Batches are a pure function of (seed, step, rank): resuming at step k draws exactly the data an
uninterrupted run would have drawn, with no data-loader state to save.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rar_edge.errors import RarEdgeError, RarEdgeWarning
from rar_edge.runtime.images import load_image, to_uint8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
log = logging.getLogger(__name__)


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, by suffix)."""
    root = Path(root)
    if not root.is_dir():
        raise RarEdgeError(f"data folder {root} does not exist or is not a folder; pass a folder of photos")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Load an image as uint8 RGB (H,W,3), optionally downscaled; raises RarEdgeError if unreadable.

    The runtime's loader does the decoding, so training sees every mode (16-bit, CMYK, palette,
    EXIF-rotated...) exactly as ``rar-edge restore`` will.
    """
    with warnings.catch_warnings():  # training reads 8 bits anyway: a 16-bit file's warning says nothing here
        warnings.simplefilter("ignore", RarEdgeWarning)
        arr = to_uint8(load_image(path).rgb)
    if max_side and max(arr.shape[:2]) > max_side:
        im = Image.fromarray(arr)
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        arr = np.asarray(im)
    return arr


class PhotoFolder:
    """All usable photos of a folder, decoded once into memory (uint8), for random crops.

    Args:
        root: folder searched recursively for jpg/png/webp/bmp/tif files.
        min_side: photos smaller than this on either side are skipped (counted).
        max_side: photos larger are downscaled so their longer side is this (memory stays bounded).
    """

    def __init__(self, root: str | Path, min_side: int = 64, max_side: int | None = 1024) -> None:
        self.root = Path(root)
        self.images: list[np.ndarray] = []
        self.paths: list[Path] = []
        self.skipped: dict[str, int] = {"unreadable": 0, "too_small": 0}
        for path in list_images(self.root):
            try:
                arr = load_rgb(path, max_side)
            except RarEdgeError as e:
                log.debug("skipped %s", e)
                self.skipped["unreadable"] += 1
                continue
            if min(arr.shape[:2]) < min_side:
                self.skipped["too_small"] += 1
                continue
            self.images.append(arr)
            self.paths.append(path)
        if not self.images:
            raise RarEdgeError(
                f"no usable image in {self.root} (skipped: {self.skipped}); "
                f"add jpg/png/webp photos of at least {min_side}x{min_side} px"
            )
        if any(self.skipped.values()):
            log.warning("%s: skipped %s", self.root, self.skipped)

    def __len__(self) -> int:
        return len(self.images)

    def random_crops(self, n: int, crop: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` random crops (N,3,crop,crop) in [0,1] with random flips; photos smaller than ``crop`` are upscaled."""
        out = np.empty((n, crop, crop, 3), dtype=np.uint8)
        for i in range(n):
            img = _at_least(self.images[int(torch.randint(len(self.images), (1,), generator=gen))], crop)
            h, w = img.shape[:2]
            y = int(torch.randint(h - crop + 1, (1,), generator=gen))
            x = int(torch.randint(w - crop + 1, (1,), generator=gen))
            patch = img[y : y + crop, x : x + crop]
            if torch.rand(1, generator=gen) < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return _to_tensor(out)

    def center_crops(self, crop: int) -> torch.Tensor:
        """One centre crop per photo (N,3,crop,crop) in [0,1]: a fixed validation set."""
        out = np.empty((len(self.images), crop, crop, 3), dtype=np.uint8)
        for i, img in enumerate(self.images):
            img = _at_least(img, crop)
            h, w = img.shape[:2]
            y, x = (h - crop) // 2, (w - crop) // 2
            out[i] = img[y : y + crop, x : x + crop]
        return _to_tensor(out)


def _at_least(img: np.ndarray, side: int) -> np.ndarray:
    """Upscale ``img`` so that both sides are at least ``side`` (no-op for large photos)."""
    h, w = img.shape[:2]
    if min(h, w) >= side:
        return img
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
