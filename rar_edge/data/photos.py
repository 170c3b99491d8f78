"""Build a training photo folder from offline sources: scikit-image's bundled photos and Debian photo packages.

For machines like the project's build machines, which reach package registries but no dataset
hub. The trainer itself takes any folder (DIV2K, Flickr2K, your own).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from rar_edge.atomic import atomic_dir
from rar_edge.errors import RarEdgeError

from .debian_photos import READERS, Photo, debian_photos

#: Photos bundled in scikit-image's wheel (loaders that need pooch downloads are left out).
SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "coins", "brick", "grass",
                  "gravel", "stereo_motorcycle")
SKIMAGE_LICENCE = "scikit-image data: public domain / CC0 / BSD per skimage/data/README.txt"

#: The held-out photos of the earlier, 52-photo split: they stay held out, so the shipped weights
#: (trained on that split) and samples/ (cut from three of them) are still judged on unseen photos.
PREVIOUS_HELDOUT = (
    "lomiri-wallpapers-16.04_Picture_1A_by_freespace", "lomiri-wallpapers-16.04_picosdeeuropa_by_Aitzol_Berasategi",
    "lxqt-themes_appleflower", "mate-backgrounds_Aqua", "mate-backgrounds_RainDrops",
    "plasma-workspace-wallpapers_ColdRipple", "plasma-workspace-wallpapers_Path", "skimage_coffee",
)


def skimage_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled photos as uint8 RGB arrays (grey ones replicated to three channels)."""
    from skimage import data

    out = {}
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            img = img[0]
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out[f"skimage_{name}"] = img[:, :, :3].astype(np.uint8)
    return out


def choose_heldout(photos: dict[str, Photo | np.ndarray], count: int, sharpened: set[str]) -> set[str]:
    """``count`` held-out names: the previous split's first, then every k-th of the rest by name.

    Names sort by source, so a stride spreads the held-out set across sources and scenes; sharpened
    photos never count (their halos are not what a camera makes). The split depends on names only.
    """
    if count <= 0:
        return set()
    eligible = sorted(n for n in photos if n not in sharpened)
    held = [n for n in PREVIOUS_HELDOUT if n in eligible][:count]
    rest = [n for n in eligible if n not in held]
    need = count - len(held)
    if need > 0 and rest:
        step = max(1, len(rest) // need)
        held += rest[step // 2 :: step][:need]
    return set(held)


def _to_image(item: Photo | np.ndarray, max_side: int) -> Image.Image:
    if isinstance(item, np.ndarray):
        im = Image.fromarray(item)
    else:
        with item.open() as src:
            im = src.convert("RGB")
        if item.sharpened:
            # Halving blurs away most of the sharpening halo the source added.
            im = im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def build_photo_folder(out: str | Path, holdout: int = 24, use_debian: bool = True, max_side: int = 1024,
                       packages: tuple[str, ...] = tuple(READERS)) -> dict:
    """Write ``out/train`` and ``out/heldout`` (PNG, longer side <= max_side), ``out/sources.json`` and licences.

    ``sources.json`` records per photo its source, licence, author, original address and split.
    The held-out photos (``choose_heldout``) are a function of the names, so the split is
    reproducible; training must never see them (pass ``out/heldout`` as validation/eval data only).
    """
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, atomic_dir(out) as stage:
        items: dict[str, Photo | np.ndarray] = dict(skimage_photos())
        sources: dict[str, dict] = {n: {"source": "scikit-image", "licence": SKIMAGE_LICENCE, "author": "",
                                        "origin": "", "sharpened": False} for n in items}
        if use_debian:
            photos, licences = debian_photos(Path(tmp), packages=packages)
            (stage / "licenses").mkdir()
            for pkg, text in licences.items():
                (stage / "licenses" / f"{pkg}.txt").write_text(text)
            for p in photos:
                items[p.name] = p
                sources[p.name] = {"source": p.source, "licence": p.licence, "author": p.author,
                                   "origin": p.origin, "sharpened": p.sharpened}
        sharpened = {n for n, s in sources.items() if s.get("sharpened")}
        held = choose_heldout(items, holdout, sharpened)
        if len(held) < min(holdout, 1):
            raise RarEdgeError(f"no photo can be held out of {len(items)}; lower --holdout")
        for name in sorted(items):
            split = "heldout" if name in held else "train"
            (stage / split).mkdir(exist_ok=True)
            _to_image(items[name], max_side).save(stage / split / f"{name}.png")
            sources[name]["split"] = split
        (stage / "sources.json").write_text(json.dumps(sources, indent=2, sort_keys=True))
    return {"train": len(items) - len(held), "heldout": len(held), "out": str(out)}
