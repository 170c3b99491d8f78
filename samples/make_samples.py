"""Regenerate samples/: degraded crops of scikit-image's photos, with their clean originals.

    python samples/make_samples.py

Deterministic (fixed seeds). scikit-image's sample photos are free to redistribute
(see samples/LICENSES.md). The photos used here are kept out of the demo's training set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rar_edge import DEGRADATIONS
from rar_edge.data.degrade import apply_degradations
from rar_edge.data.photos import skimage_photos

HERE = Path(__file__).resolve().parent
#: (photo, crop box y, x, degradations, severity)
SAMPLES = [
    ("astronaut", 0, 128, ("noise",), 0.5),
    ("coffee", 60, 200, ("blur",), 0.5),
    ("chelsea", 0, 100, ("jpeg",), 0.7),
    ("astronaut", 200, 200, ("rain",), 0.6),
    ("coffee", 100, 300, ("haze",), 0.5),
    ("chelsea", 30, 200, ("low_light",), 0.5),
    ("astronaut", 100, 0, ("blur", "noise"), 0.5),
    ("coffee", 0, 0, ("noise", "jpeg"), 0.5),
    ("chelsea", 20, 150, ("rain", "haze"), 0.5),
]
HELD_OUT_PHOTOS = ("astronaut", "coffee", "chelsea")
SIZE = 256


def main() -> None:
    photos = skimage_photos()
    (HERE / "clean").mkdir(exist_ok=True)
    (HERE / "degraded").mkdir(exist_ok=True)
    index = {}
    for i, (photo, y, x, types, severity) in enumerate(SAMPLES):
        crop = photos[f"skimage_{photo}"][y : y + SIZE, x : x + SIZE]
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
