"""Restore image files: the file side of ``rar-edge restore`` for both paths (--bundle and --checkpoint).

One loop serves the runtime and the torch reference path, so both treat files alike: the same loader
(EXIF, alpha, ICC, 16-bit...), the same refusals, atomic writes, and a bad file never stops the batch.
A photo that needed no step (and no tone curve, under ``--tone``, nor the noise stage) is written as the input's
own bytes (same format); a restored one keeps the input's ICC profile and EXIF (orientation applied to the pixels and reset).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from rar_edge.atomic import atomic_path, check_writable
from rar_edge.errors import RarEdgeError

from .images import load_image, output_format, save_image

#: Restores one RGB (H,W,3) image as ``load_image`` gives it (uint8, or float32 in [0, 1]): returns
#: (restored image, JSON-able record of the run).
RestoreFn = Callable[[np.ndarray], tuple[np.ndarray, dict]]


def expand_inputs(inputs: list[str]) -> list[str]:
    """The inputs with every folder replaced by the image files directly in it (sorted by name)."""
    from PIL import Image

    suffixes = set(Image.registered_extensions())
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            out.append(item)
            continue
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not found:
            subfolders = sorted(p.name for p in path.iterdir() if p.is_dir())
            inside = (f" (folders are not searched inside: pass {', '.join(str(path / d) for d in subfolders[:3])}"
                      f"{', ...' if len(subfolders) > 3 else ''})") if subfolders else ""
            raise RarEdgeError(f"folder {path} holds no image files{inside}; pass image files or a folder of them")
        out += found
    return out


def plan_outputs(inputs: list[str], out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Output paths (same names in ``out_dir``); refuses name clashes and writing over an input."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RarEdgeError(f"output {out_dir} exists and is not a folder; pass a folder with -o")
    from PIL import Image

    if not out_dir.exists() and out_dir.suffix.lower() in Image.registered_extensions():  # a file name, not a folder
        raise RarEdgeError(f"-o {out_dir} looks like an image file, but -o takes a folder (outputs keep their input "
                           f"names): pass e.g. -o {out_dir.with_suffix('')}")
    seen: dict[str, str] = {}  # file name -> the first input with it
    for path in inputs:
        name = Path(path).name
        if name not in seen:
            seen[name] = path
            continue
        first = seen[name]
        if Path(first).resolve() == Path(path).resolve():
            also = "" if str(first) == str(path) else f" (as {first} and {path})"
            raise RarEdgeError(f"{path} is given twice{also}; pass each image once")
        raise RarEdgeError(f"{first} and {path} share a file name and would overwrite each other in the "
                           "output folder; restore them into separate folders (-o)")
    names = [Path(p).name for p in inputs]
    outputs = [out_dir / n for n in names]
    for src, dst in zip(inputs, outputs):  # (an output format it cannot write fails that input alone: restore_files)
        if not overwrite and dst.exists() and dst.resolve() == Path(src).resolve():
            raise RarEdgeError(f"output {dst} is the input itself; choose another -o (or pass --overwrite)")
    return outputs


def restorer_fn(restorer, **restore_args) -> RestoreFn:
    """A ``RestoreFn`` running a runtime ``Restorer`` (budget, stop rule... as keyword arguments)."""
    def run(rgb: np.ndarray) -> tuple[np.ndarray, dict]:
        res = restorer.restore(rgb, **restore_args)
        return res.image, res.to_json()
    return run


def _make_folder(out_dir: str | Path) -> None:
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RarEdgeError(f"cannot create output folder {out_dir} ({e.strerror or e}); choose a writable -o") from None


def restore_files(restore: RestoreFn, inputs: list[str], out_dir: str | Path,
                  overwrite: bool = False, max_megapixels: float | None = None) -> Iterator[dict]:
    """One record per input: the JSON contract (input, output, steps, quality, degradations, ms, ...) or,
    for an input that failed (or is over ``max_megapixels``), {"input", "error"}; later inputs still run."""
    outputs = plan_outputs(inputs, out_dir, overwrite)
    check_writable(out_dir)  # an unwritable folder fails now, once, not after every input's restore
    for src, dst in zip(inputs, outputs):
        try:
            loaded = load_image(src, max_megapixels)  # an unreadable input is reported as such, whatever its name
            output_format(dst)  # before the restore: an output it cannot write costs no model time
            image, record = restore(loaded.rgb)
            _make_folder(out_dir)  # only once there is something to write: a batch that fails leaves no folder
            toned = record.get("tone", {}).get("applied", False)
            if (record.get("steps") == 0 and not toned and not record.get("denoised")
                    and Path(src).suffix.lower() == dst.suffix.lower()):
                # Nothing was restored: the input's own bytes (no re-encoding, metadata as they were).
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
                record = {**record, "unchanged": True}
            else:
                save_image(dst, image, loaded.alpha, loaded.icc_profile, loaded.exif)
        except RarEdgeError as e:
            yield {"input": str(src), "error": str(e)}
            continue
        except OSError as e:
            yield {"input": str(src), "error": f"cannot write {dst} ({e.strerror or e}); choose a writable -o"}
            continue
        except MemoryError:  # one huge image must not end the batch
            yield {"input": str(src), "error": "out of memory restoring it; resize it or use a smaller --tile"}
            continue
        yield {"input": str(src), "output": str(dst), **record}
