"""A compact copy of a photo folder for a GPU lease, whose working tree travels under a size limit (64 MiB here).

    python bench/gpu_data.py --photos photos --out gpu_data [--budget-mb 40] [--val 16]

Writes OUT/train and OUT/heldout: every photo as the trainer loads it (longer side at most 1024 px, LANCZOS:
``PhotoFolder``'s own downscale, so nothing the trainer would see is lost) saved as JPEG quality 95 with
4:4:4 chroma (artefacts far below the restorer's error, about 45 dB), the first ``--val`` held-out photos
only (the trainer validates on 16), and training photos in name order until the budget is spent. Prints
what it kept. Add OUT to .git/info/exclude and name it in the lease's ``carry`` (docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from rar_edge.data.folder import list_images, load_rgb

#: The trainer's PhotoFolder downscales larger photos to this side: a bigger copy would carry bytes it drops.
MAX_SIDE = 1024


def compact(src: Path, dst: Path, budget_bytes: float, limit: int | None = None) -> tuple[int, int, int]:
    """Copy the photos of ``src`` into ``dst`` as JPEG until ``budget_bytes`` (or ``limit`` photos) is reached:
    (photos kept, photos left out, bytes written)."""
    dst.mkdir(parents=True, exist_ok=True)
    paths = list_images(src)[:limit] if limit else list_images(src)
    kept = written = 0
    for path in paths:
        out = dst / f"{path.stem}.jpg"
        Image.fromarray(load_rgb(path, MAX_SIDE)).save(out, quality=95, subsampling=0)
        size = out.stat().st_size
        if written + size > budget_bytes:
            out.unlink()
            break
        kept, written = kept + 1, written + size
    return kept, len(paths) - kept, written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", required=True, help="a folder from `rar-edge photos` (with train/ and heldout/)")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-mb", type=float, default=40.0, help="MB for both folders together (default 40)")
    p.add_argument("--val", type=int, default=16, help="held-out photos to copy for validation (default 16)")
    a = p.parse_args(argv)
    photos, out = Path(a.photos), Path(a.out)
    for split in ("train", "heldout"):
        if not (photos / split).is_dir():
            print(f"gpu_data: {photos / split} is missing: pass a folder made by `rar-edge photos -o DIR`",
                  file=sys.stderr)
            return 2
    if any(out.iterdir()) if out.is_dir() else False:
        print(f"gpu_data: {out} is not empty; choose a new --out", file=sys.stderr)
        return 2
    budget = a.budget_mb * 1e6
    val = compact(photos / "heldout", out / "heldout", budget, a.val)
    train = compact(photos / "train", out / "train", budget - val[2])
    print(f"{out}: {train[0]} training photos ({train[1]} left out by the budget) and {val[0]} held-out, "
          f"{(train[2] + val[2]) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
