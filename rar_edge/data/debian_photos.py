"""Photographs inside Debian packages, fetched without installing (``apt-get download`` + ``dpkg -x``).

Each package has one reader that turns its unpacked tree into :class:`Photo` records with the
licence of each image. Wallpaper packages keep one licence per package (their copyright file);
GCompris keeps one per image in a README inside each Qt resource file; Palapeli one per image in
its ``.desktop`` file; Tux Paint one for its templates (GPL-2+, its copyright file).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from rar_edge.errors import RarEdgeError

from .folder import IMAGE_SUFFIXES, list_images
from .qt_rcc import read_rcc


@dataclass
class Photo:
    """One photograph: where its bytes are, where it came from and under which licence."""

    name: str
    data: Path | bytes  # a file, or the encoded image itself
    source: str
    licence: str  # the licence's name, or a file under licenses/ in the photo folder
    author: str = ""
    origin: str = ""  # the photo's original address, where the package records it
    sharpened: bool = False  # processed with a sharpening filter: training only, downscaled first

    def open(self) -> Image.Image:
        return Image.open(self.data if isinstance(self.data, Path) else io.BytesIO(self.data))


#: Wallpaper packages: photos lie in one folder; the package's copyright file is the licence.
WALLPAPER_PACKAGES: dict[str, str] = {
    "mate-backgrounds": "usr/share/backgrounds/mate/nature",
    "lomiri-wallpapers-16.04": "usr/share/backgrounds",
    "lxqt-themes": "usr/share/lxqt/wallpapers",
    "plasma-workspace-wallpapers": "usr/share/wallpapers",
}

#: Wallpapers that are drawings or logos, not photographs: names containing one of NOT_PHOTO_WORDS,
#: or named exactly one of NOT_PHOTO_NAMES (lower case).
NOT_PHOTO_WORDS = ("logo", "origami", "triangles", "waves", "plasma", "simple_blue", "this-is-not-windows")
NOT_PHOTO_NAMES = ("beam", "blinds", "analogpattern_by_peter_nerlich", "umang_by_abhishek_mudgal",
                   "greentock_by_peter_nerlich", "honeywave", "patak", "altai", "autumn", "canopee", "cascade",
                   "cluster", "elarun", "flow", "flyingkonqui", "icecold", "kay", "kokkini", "opal", "pastelhills",
                   "safelanding", "shell", "volna", "milkyway", "darkesthour", "kite")

#: GCompris activities whose resource files hold real photographs (others: drawings, or under 512 px).
GCOMPRIS_RCC = ("erase", "explore_monuments", "explore_world_animals", "explore_world_music", "explore_farm_animals")
GCOMPRIS_DIR = "usr/share/gcompris-qt/rcc"


def _big_enough(photo: Photo, min_side: int) -> bool:
    try:
        with photo.open() as im:
            return min(im.size) >= min_side
    except OSError:
        return False


def wallpapers(pkg: str, root: Path, min_side: int) -> list[Photo]:
    """The photographs of a wallpaper package (Plasma's several resolutions: the largest)."""
    inner = root / WALLPAPER_PACKAGES[pkg]
    best: dict[str, tuple[int, Path]] = {}
    for path in list_images(inner) if inner.is_dir() else []:
        rel = path.relative_to(inner)
        key = rel.parts[0] if len(rel.parts) > 1 else path.stem
        if key.lower() in NOT_PHOTO_NAMES or any(w in key.lower() for w in NOT_PHOTO_WORDS):
            continue
        try:
            with Image.open(path) as im:
                if min(im.size) < min_side:
                    continue
                pixels = im.size[0] * im.size[1]
        except OSError:
            continue
        if key not in best or pixels > best[key][0]:
            best[key] = (pixels, path)
    return [Photo(f"{pkg}_{key}", path, f"Debian package {pkg}", f"licenses/{pkg}.txt")
            for key, (_, path) in sorted(best.items())]


def parse_gcompris_readme(text: str) -> dict[str, dict[str, str]]:
    """A GCompris resource README -> {file path as listed: {"copyright", "license", "source", "comments"}}.

    Blocks are separated by blank lines; each has ``Key: value`` lines and a ``Files:`` entry whose
    names follow on the same line or on the next lines.
    """
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("copyright", "license", "source", "comments", "files"):
                in_files = key.strip().lower() == "files"
                if in_files:
                    files += value.split()
                else:
                    fields[key.strip().lower()] = value.strip()
            elif in_files and line.strip():
                files += line.split()
        for name in files:
            out[name] = fields
    return out


def gcompris(root: Path, min_side: int) -> list[Photo]:
    """The photographs inside GCompris's resource files, each with its own licence entry.

    Images without a licence entry are left out; the ``erase`` activity's images were sharpened
    by GCompris (its README says so) and are marked ``sharpened``.
    """
    photos = []
    for activity in GCOMPRIS_RCC:
        path = root / GCOMPRIS_DIR / f"{activity}.rcc"
        if not path.is_file():
            raise RarEdgeError(f"{path.name} is missing from gcompris-qt-data; the package layout changed: "
                               "pass --no-debian or report it")
        files = read_rcc(path)
        readmes = {k.rsplit("/", 1)[0]: parse_gcompris_readme(v.decode("utf-8", "replace"))
                   for k, v in files.items() if k.endswith("/README")}
        for key, blob in sorted(files.items()):
            if Path(key).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            entry = None
            for folder, entries in readmes.items():
                if key.startswith(folder + "/"):
                    rel = key[len(folder) + 1 :]
                    entry = entries.get(rel) or entries.get(rel.rsplit("/", 1)[-1])
            if not entry or not entry.get("license"):
                continue
            photo = Photo(f"gcompris_{activity}_{Path(key).stem}", blob, "Debian package gcompris-qt-data",
                          entry["license"], entry.get("copyright", ""), entry.get("source", ""),
                          sharpened="sharpen" in entry.get("comments", "").lower())
            if _big_enough(photo, 2 * min_side if photo.sharpened else min_side):  # sharpened ones get halved
                photos.append(photo)
    return photos


def palapeli(root: Path, min_side: int) -> list[Photo]:
    """Palapeli's puzzle photos; licence, author and address from each ``.desktop`` file."""
    photos = []
    for desktop in sorted((root / "usr/share/palapeli/collection").glob("*.desktop")):
        meta = dict(line.split("=", 1) for line in desktop.read_text(errors="replace").splitlines() if "=" in line)
        image = desktop.with_name(meta.get("Image", desktop.stem + ".jpg"))
        photo = Photo(f"palapeli_{desktop.stem}", image, "Debian package palapeli-data",
                      meta.get("X-KDE-PluginInfo-License", "see the package"), meta.get("X-KDE-PluginInfo-Author", ""),
                      meta.get("X-KDE-PluginInfo-Website", ""))
        if image.is_file() and _big_enough(photo, min_side):
            photos.append(photo)
    return photos


def tuxpaint(root: Path, min_side: int) -> list[Photo]:
    """Tux Paint's photo templates (GPL-2+; photographers named in the package's credits)."""
    photos = [Photo(f"tuxpaint_{p.stem}", p, "Debian package tuxpaint-data", "licenses/tuxpaint-data.txt")
              for p in sorted((root / "usr/share/tuxpaint/templates").glob("*.jpg"))]
    return [p for p in photos if _big_enough(p, min_side)]


#: Every Debian package used, and its reader: (package, unpacked root, min side) -> photos.
READERS: dict[str, Callable[[Path, int], list[Photo]]] = {
    **{pkg: (lambda root, m, pkg=pkg: wallpapers(pkg, root, m)) for pkg in WALLPAPER_PACKAGES},
    "gcompris-qt-data": gcompris,
    "tuxpaint-data": tuxpaint,
    "palapeli-data": palapeli,
}


def unpack(pkg: str, workdir: Path) -> Path:
    """``apt-get download`` one package into ``workdir`` and unpack it; returns the unpacked root."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RarEdgeError("apt-get/dpkg not found: build the folder with --no-debian, or bring your own photos")
    res = subprocess.run(["apt-get", "download", pkg], cwd=workdir, capture_output=True, text=True)
    debs = sorted(workdir.glob(f"{pkg}_*.deb"))
    if res.returncode != 0 or not debs:
        last = (res.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise RarEdgeError(f"apt-get download {pkg} failed ({last}); run 'apt-get update' first, or pass --no-debian")
    root = workdir / pkg
    subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True, capture_output=True)
    return root


def debian_photos(workdir: Path, min_side: int = 512,
                  packages: tuple[str, ...] = tuple(READERS)) -> tuple[list[Photo], dict[str, str]]:
    """Download, unpack and read the photo packages; returns the photos and each package's copyright text."""
    photos: list[Photo] = []
    licences: dict[str, str] = {}
    for pkg in packages:
        root = unpack(pkg, workdir)
        copyright_file = root / "usr/share/doc" / pkg / "copyright"
        licences[pkg] = copyright_file.read_text(errors="replace") if copyright_file.exists() else "see the Debian package"
        found = READERS[pkg](root, min_side)
        print(f"  {pkg}: {len(found)} photos", flush=True)
        photos += found
    return photos, licences
