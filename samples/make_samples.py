"""Regenerate samples/: degraded crops of held-out photos, with their clean originals.

    rar-edge photos -o photos            # the offline photo folder (train/ and heldout/)
    python samples/make_samples.py photos/heldout

Deterministic (fixed seeds). The three photos are in the held-out split that training never sees, and
their licences allow redistributing modified crops with attribution (samples/LICENSES.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rar_edge import DEGRADATIONS
from rar_edge.data.degrade import apply_degradations
from rar_edge.data.folder import load_rgb

HERE = Path(__file__).resolve().parent
#: Short name -> file stem in the held-out folder.
PHOTOS = {"brushes": "lomiri-wallpapers-16.04_Picture_1A_by_freespace",
          "mountains": "lomiri-wallpapers-16.04_picosdeeuropa_by_Aitzol_Berasategi",
          "coffee": "skimage_coffee"}
#: (photo, crop box y, x, degradations, severity)
SAMPLES = [
    ("brushes", 100, 150, ("noise",), 0.5),
    ("mountains", 120, 600, ("blur",), 0.5),
    ("coffee", 60, 200, ("jpeg",), 0.7),
    ("mountains", 400, 200, ("rain",), 0.6),
    ("brushes", 300, 400, ("haze",), 0.5),
    ("coffee", 100, 300, ("low_light",), 0.5),
    ("mountains", 150, 0, ("blur", "noise"), 0.5),
    ("brushes", 450, 600, ("noise", "jpeg"), 0.5),
    ("coffee", 0, 0, ("rain", "haze"), 0.5),
]
SIZE = 256


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("heldout", help="the held-out folder of 'rar-edge photos' (holds the three photos)")
    folder = Path(p.parse_args().heldout)
    photos = {name: load_rgb(folder / f"{stem}.png", max_side=1024) for name, stem in PHOTOS.items()}
    (HERE / "clean").mkdir(exist_ok=True)
    (HERE / "degraded").mkdir(exist_ok=True)
    index = {}
    for i, (photo, y, x, types, severity) in enumerate(SAMPLES):
        crop = photos[photo][y : y + SIZE, x : x + SIZE]
        if crop.shape[:2] != (SIZE, SIZE):
            raise SystemExit(f"crop {y},{x} of {photo} is smaller than {SIZE}: the held-out photo is not the expected one")
        clean = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
        labels = torch.zeros(1, len(DEGRADATIONS))
        for t in types:
            labels[0, DEGRADATIONS.index(t)] = 1
        out = apply_degradations(clean, labels, labels * severity, torch.Generator().manual_seed(i)).degraded
        name = f"{i:02d}_{photo}_{'+'.join(types)}.png"
        clean_name = f"{photo}_{y}_{x}.png"
        Image.fromarray(crop).save(HERE / "clean" / clean_name)
        arr = (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(arr).save(HERE / "degraded" / name)
        index[name] = {"clean": f"clean/{clean_name}", "degradations": list(types), "severity": severity}
    (HERE / "samples.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
