"""Image files in and out of the runtime (Pillow + numpy; no torch).

Loading applies EXIF orientation, takes the first frame of an animated file, and converts every mode to
RGB: grayscale, palette and CMYK to uint8 RGB (8 bits per channel stay 8 bits: the runtime converts to
float tile by tile, so a 12 MP photo has no full-size float copy), 16-bit grey and float modes to float32 in
[0, 1] at full precision (16-bit colour or grey + alpha: Pillow decodes them to 8 bits per channel, said by a
RarEdgeWarning); an alpha channel is kept aside and written back untouched. The ICC profile travels to the
output.
Outputs are 8 bits per channel in the format of their extension, written atomically.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rar_edge.atomic import atomic_path
from rar_edge.errors import RarEdgeError, RarEdgeWarning

#: Formats whose files can hold an alpha channel.
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
#: Formats Pillow writes EXIF into.
EXIF_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")


#: Full scale of the integer pixel types the runtime takes.
FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
#: Pillow's modes for 16-bit (and 32-bit integer) grey: read at full precision (split_pil).
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")
#: Raw modes of files with 16 bits per channel that Pillow decodes to 8 (not "BGR;16": 16 bits per *pixel*).
SIXTEEN_BIT_NARROWED = ("RGB;16", "RGBA;16", "RGBX;16", "LA;16")


def _raw_mode(args) -> str:
    """A decoder's raw mode from its tile arguments (a string, or a tuple that starts with it)."""
    return str(args[0] if isinstance(args, tuple) and args else args)


def unit_float(pixels: np.ndarray, copy: bool = False) -> np.ndarray:
    """uint8 / uint16 pixels as float32 in [0, 1] (always a new array); float32 pixels as they are
    (or a copy)."""
    scale = FULL_SCALE.get(pixels.dtype)
    if scale is None:
        return pixels.copy() if copy else pixels
    return pixels.astype(np.float32) / scale


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H,W,3): uint8 for 8-bit images, float32 in [0,1] for 16-bit and float ones (unit_float)
    alpha: np.ndarray | None = None  # (H,W) float32 in [0,1]
    icc_profile: bytes | None = None
    info: dict = field(default_factory=dict)  # source mode, format, frames
    exif: bytes | None = None  # the photo's EXIF (date, camera, GPS...), orientation reset: the pixels are upright


def split_pil(im: Image.Image, upright: bool = True) -> LoadedImage:
    """An opened PIL image as RGB (uint8, or float32 for 16-bit and float modes) + alpha, whatever its mode.
    ``upright``: turn it as its EXIF orientation says (files: they are written back upright); False keeps the
    pixels as they are (an image handed to the API comes back in its own orientation and size)."""
    try:
        frames = getattr(im, "n_frames", 1)
    except Exception:  # noqa: BLE001 - Pillow fails in many ways counting the frames of a damaged animation
        frames = None  # a later frame is damaged: the first one is still used
    if frames != 1:
        im.seek(0)  # animated: the first frame (documented)
        im.load()
    icc = im.info.get("icc_profile")
    mode = im.mode
    exif = _upright_exif(im) if upright else None
    im = ImageOps.exif_transpose(im) if upright else im
    alpha = None
    if mode in SIXTEEN_BIT_GREY:
        # By the mode, never by the content: a dark 16-bit photo must not be taken for an 8-bit one.
        # Pillow gives 16-bit PNG and TIFF greys as "I;16" or "I"; both are scaled as 16-bit.
        arr = np.asarray(im, dtype=np.float32)
        gray = np.clip(arr / 65535.0, 0, 1)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "F":
        gray = np.clip(np.asarray(im, dtype=np.float32), 0, 1)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
        if has_alpha:
            rgba = np.asarray(im.convert("RGBA"))
            alpha = unit_float(rgba[..., 3])
            rgb = rgba[..., :3]
        else:
            rgb = np.asarray(im.convert("RGB"))
    return LoadedImage(np.ascontiguousarray(rgb), alpha, icc, {"mode": mode, "format": im.format, "frames": frames},
                       exif)


#: EXIF's orientation tag: applied to the pixels on load, so written back as 1 (upright).
ORIENTATION = 0x0112


def _upright_exif(im: Image.Image) -> bytes | None:
    """The image's EXIF as bytes with the orientation reset to 1, or None when it has none (or it is unreadable)."""
    try:
        exif = im.getexif()  # the image's own Exif object: changed only for tobytes(), then set back
        if not exif:
            return None
        if ORIENTATION not in exif:
            return exif.tobytes()
        orientation = exif[ORIENTATION]
        exif[ORIENTATION] = 1
        try:
            return exif.tobytes()
        finally:
            exif[ORIENTATION] = orientation  # exif_transpose still reads the original
    except Exception:  # noqa: BLE001 - damaged EXIF must not cost the photo; the pixels still restore
        return None


def check_megapixels(height: int, width: int, max_megapixels: float | None, what: str = "image") -> None:
    """Refuse an image over ``max_megapixels`` (None: no limit) before any memory is spent on it.

    Memory grows with the image, not with the tile: the whole image, its blend buffers and every tile's
    latent are held at once (a 12 MP photo peaks at about 1.2 GB with rar-edge-s: BENCHMARKS.md).
    """
    mp = height * width / 1e6
    if max_megapixels is not None and mp > max_megapixels:
        raise RarEdgeError(f"{what} is {width}x{height} ({mp:.3g} MP), over the limit of {max_megapixels:g} MP "
                           "(max_megapixels); downscale it or raise the limit")


def load_image(path: str | Path, max_megapixels: float | None = None) -> LoadedImage:
    """Read an image file; a one-line RarEdgeError names the file and the problem. An image over
    ``max_megapixels`` is refused from its header, before it is decoded."""
    path = Path(path)
    if not path.is_file():
        raise RarEdgeError(f"{path}: no such file; pass image files (jpg, png, webp, ...)")
    if path.stat().st_size == 0:
        raise RarEdgeError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            check_megapixels(im.height, im.width, max_megapixels, str(path))
            # Pillow decodes 16-bit colour and grey + alpha (PNG, TIFF: raw modes "RGB;16B", "LA;16B"...) to 8 bits
            # per channel; only 16-bit grey keeps its precision (split_pil). Said, not hidden. (A tile is a
            # 4-tuple whose last item is the raw mode, in every Pillow this project allows.)
            narrowed = any(_raw_mode(t[3]).startswith(SIXTEEN_BIT_NARROWED) for t in im.tile)
            im.load()
            loaded = split_pil(im)
    except RarEdgeError:
        raise
    except Image.DecompressionBombError as e:
        raise RarEdgeError(f"{path}: refused as a possible decompression bomb ({e}); resize it first") from None
    except UnidentifiedImageError:
        raise RarEdgeError(f"{path}: not an image Pillow can read (wrong extension or corrupt file)") from None
    except MemoryError:
        raise RarEdgeError(f"{path}: too large to decode in the memory available; resize it first") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise OSError, SyntaxError, IndexError, struct.error...
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise RarEdgeError(f"{path}: truncated or corrupt image ({detail})") from None
    if narrowed:  # after the decode's try: a warning turned into an error (-W error) is not called corruption
        warnings.warn(f"{path}: a 16-bit image with colour or alpha is read at 8 bits per channel (Pillow decodes "
                      "no more); its fine levels are lost before the model sees it", RarEdgeWarning, stacklevel=2)
    return loaded


def output_format(path: str | Path) -> str:
    """Pillow's format name for the extension of ``path``, or a one-line error."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise RarEdgeError(f"cannot write {path}: unknown image extension {Path(path).suffix!r}; use .png, .jpg or .webp")
    return fmt


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (clipped) as uint8; uint8 pixels as they are."""
    if x.dtype == np.uint8:
        return x
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
               icc_profile: bytes | None = None, exif: bytes | None = None) -> None:
    """Write RGB (uint8, or float in [0, 1]) and alpha where the format holds one, atomically; the format
    from the extension; the ICC profile and EXIF where given (a photo app needs its date, camera, GPS)."""
    fmt = output_format(path)
    if alpha is not None and fmt in ALPHA_FORMATS:
        im = Image.fromarray(np.dstack([to_uint8(rgb), to_uint8(alpha)]), "RGBA")
    else:
        im = Image.fromarray(to_uint8(rgb), "RGB")
    kwargs: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in EXIF_FORMATS:
        kwargs["exif"] = exif
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **kwargs)
