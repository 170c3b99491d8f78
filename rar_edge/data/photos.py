"""Build a training photo folder from offline sources: scikit-image's bundled photos and Debian photo packages.

For machines like the project's build machines, which reach package registries but no dataset
hub. The trainer itself takes any folder (DIV2K, Flickr2K, your own).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from rar_edge.atomic import atomic_dir
from rar_edge.errors import RarEdgeError

from .folder import list_images, load_rgb

#: Photos bundled in scikit-image's wheel (loaders that need pooch downloads are left out).
SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "coins", "brick", "grass",
                  "gravel", "stereo_motorcycle")
SKIMAGE_LICENCE = "scikit-image data: public domain / CC0 / BSD per skimage/data/README.txt"

#: Debian packages with photographs, and where inside each package they lie.
DEBIAN_PACKAGES: dict[str, str] = {
    "mate-backgrounds": "usr/share/backgrounds/mate/nature",
    "lomiri-wallpapers-16.04": "usr/share/backgrounds",
    "lxqt-themes": "usr/share/lxqt/wallpapers",
    "plasma-workspace-wallpapers": "usr/share/wallpapers",
}

#: Wallpapers in those packages that are drawings or logos, not photographs: names containing
#: one of NOT_PHOTO_WORDS, or named exactly one of NOT_PHOTO_NAMES (lower case).
NOT_PHOTO_WORDS = ("logo", "origami", "triangles", "waves", "plasma", "simple_blue", "this-is-not-windows")
NOT_PHOTO_NAMES = ("beam", "blinds", "analogpattern_by_peter_nerlich", "umang_by_abhishek_mudgal",
                   "greentock_by_peter_nerlich", "honeywave", "patak", "altai", "autumn", "canopee", "cascade",
                   "cluster", "elarun", "flow", "flyingkonqui", "icecold", "kay", "kokkini", "opal", "pastelhills",
                   "safelanding", "shell", "volna", "milkyway", "darkesthour", "kite")


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


def debian_photos(workdir: Path, min_side: int = 512) -> tuple[dict[str, Path], dict[str, str]]:
    """Download and unpack the Debian photo packages (no install); return photo paths and licence texts."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RarEdgeError("apt-get/dpkg not found: build the folder with --no-debian, or bring your own photos")
    photos: dict[str, Path] = {}
    licences: dict[str, str] = {}
    for pkg, inner in DEBIAN_PACKAGES.items():
        res = subprocess.run(["apt-get", "download", pkg], cwd=workdir, capture_output=True, text=True)
        debs = sorted(workdir.glob(f"{pkg}_*.deb"))
        if res.returncode != 0 or not debs:
            raise RarEdgeError(f"apt-get download {pkg} failed: {res.stderr.strip().splitlines()[-1:]}; "
                               "run 'apt-get update' first, or pass --no-debian")
        root = workdir / pkg
        subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True)
        copyright_file = root / "usr/share/doc" / pkg / "copyright"
        licences[pkg] = copyright_file.read_text(errors="replace") if copyright_file.exists() else "see the Debian package"
        best: dict[str, tuple[int, Path]] = {}
        for path in list_images(root / inner) if (root / inner).is_dir() else []:
            rel = path.relative_to(root / inner)
            # Plasma ships one folder per wallpaper with several resolutions: keep the largest.
            key = rel.parts[0] if len(rel.parts) > 1 else path.stem
            if key.lower() in NOT_PHOTO_NAMES or any(w in key.lower() for w in NOT_PHOTO_WORDS):
                continue
            try:
                with Image.open(path) as im:
                    pixels = im.size[0] * im.size[1]
                    if min(im.size) < min_side:
                        continue
            except OSError:
                continue
            if key not in best or pixels > best[key][0]:
                best[key] = (pixels, path)
        for key, (_, path) in best.items():
            photos[f"{pkg}_{key}"] = path
    return photos, licences


def build_photo_folder(out: str | Path, holdout: int = 6, use_debian: bool = True, max_side: int = 1024) -> dict:
    """Write ``out/train`` and ``out/heldout`` (PNG, longer side <= max_side), ``out/sources.json`` and licences.

    The held-out photos are every k-th photo by name, so the split is reproducible; training
    must never see them (pass ``out/heldout`` as validation/eval data only).
    """
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, atomic_dir(out) as stage:
        sources: dict[str, dict] = {}
        arrays = skimage_photos()
        for name in arrays:
            sources[name] = {"source": "scikit-image", "licence": SKIMAGE_LICENCE}
        paths: dict[str, Path] = {}
        if use_debian:
            paths, licences = debian_photos(Path(tmp))
            (stage / "licenses").mkdir()
            for pkg, text in licences.items():
                (stage / "licenses" / f"{pkg}.txt").write_text(text)
            for name in paths:
                pkg = next(p for p in DEBIAN_PACKAGES if name.startswith(p + "_"))
                sources[name] = {"source": f"Debian package {pkg}", "licence": f"licenses/{pkg}.txt"}
        names = sorted(sources)
        step = max(2, len(names) // holdout) if holdout else 0
        held = set(names[step // 2 :: step][:holdout]) if holdout else set()
        for name in names:
            split = "heldout" if name in held else "train"
            img = arrays[name] if name in arrays else load_rgb(paths[name], max_side)
            im = Image.fromarray(img)
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            (stage / split).mkdir(exist_ok=True)
            im.save(stage / split / f"{name}.png")
            sources[name]["split"] = split
        (stage / "sources.json").write_text(json.dumps(sources, indent=2))
    return {"train": len(names) - len(held), "heldout": len(held), "out": str(out)}
