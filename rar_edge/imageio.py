"""Minimal image I/O for the torch tools: load as float RGB, save atomically in the format of the extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rar_edge.atomic import atomic_path
from rar_edge.errors import RarEdgeError


def check_image(path: str | Path) -> None:
    """Raise a one-line RarEdgeError if ``path`` is missing or not a readable image."""
    path = Path(path)
    if not path.is_file():
        raise RarEdgeError(f"input {path} does not exist; pass image files (jpg, png, webp, ...)")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RarEdgeError(f"input {path} is not a readable image ({type(e).__name__}); pass jpg, png or webp files") from None


def output_format(path: str | Path) -> str:
    """Pillow's format name for the extension of ``path``, or a one-line error."""
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise RarEdgeError(f"cannot write {path}: unknown image extension {ext!r}; use .png, .jpg or .webp")
    return fmt


def load_image(path: str | Path) -> np.ndarray:
    """Float32 RGB (H,W,3) in [0,1], EXIF orientation applied."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255.0


def save_image(img: np.ndarray, path: str | Path) -> None:
    """Write float RGB (H,W,3) in [0,1] atomically; the format follows the extension."""
    fmt = output_format(path)
    arr = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
