"""``make demo`` / ``python -m rar_edge.demo``: the main job that exists so far.

Until trained weights ship inside the package, the demo trains rar-tiny briefly on
scikit-image's photos (the three photos the samples are cut from are held out), then restores
every image in samples/degraded with the torch reference loop and prints, per image: the
degradations found, the steps taken, PSNR input -> output against the clean original, and
milliseconds. The tiny model trained for two minutes shows the pipeline, not RAR's quality.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from rar_edge.errors import RarEdgeError

REPO = Path(__file__).resolve().parents[1]


def _training_photos(folder: Path, held_out: tuple[str, ...]) -> Path:
    from PIL import Image

    from rar_edge.data.photos import skimage_photos

    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in skimage_photos().items():
        if not any(name == f"skimage_{h}" for h in held_out):
            Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


def run(samples: Path, work: Path, steps: int) -> list[dict]:
    """Train (or reuse) the demo model, restore every sample; returns one row per sample."""
    sys.path.insert(0, str(samples))
    from make_samples import HELD_OUT_PHOTOS  # the samples' own list of photos to keep out of training

    from rar_edge.eval.metrics import psnr
    from rar_edge.imageio import load_image
    from rar_edge.infer import restore_files
    from rar_edge.train.checkpoint import load_model
    from rar_edge.train.trainer import TrainConfig, train

    ckpt = work / "tiny" / "last"
    if not (ckpt / "config.json").exists() or json.loads((ckpt / "config.json").read_text())["step"] < steps:
        photos = _training_photos(work / "photos", HELD_OUT_PHOTOS)
        print(f"training rar-tiny for {steps} steps on {len(list(photos.iterdir()))} photos (CPU, about 2 minutes)")
        train(TrainConfig(preset="rar-tiny", data=str(photos), out=str(work / "tiny"), steps=steps, batch=12,
                          crop=64, lr=2e-3, warmup=50, val_every=steps, ckpt_every=steps, val_crop=64,
                          resume=True))
    model, _ = load_model(ckpt)
    index = json.loads((samples / "samples.json").read_text())
    inputs = [str(samples / "degraded" / name) for name in index]
    rows = []
    for rec in restore_files(model, inputs, work / "restored", model.stop_rule()):
        meta = index[Path(rec["input"]).name]
        clean = load_image(samples / meta["clean"])
        rec["psnr_in"] = psnr(load_image(rec["input"]), clean)
        rec["psnr_out"] = psnr(load_image(rec["output"]), clean)
        rec["true"] = meta["degradations"]
        rows.append(rec)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'image':<28} {'true':<12} {'found (p>0.5)':<22} {'steps':>5} {'PSNR in -> out':>16} {'ms':>7}")
    for r in rows:
        found = ",".join(k for k, v in r["degradations"].items() if v > 0.5) or "-"
        print(f"{Path(r['input']).name:<28} {'+'.join(r['true']):<12} {found:<22} {r['steps']:>5} "
              f"{r['psnr_in']:>7.2f} -> {r['psnr_out']:<6.2f} {r['ms']['total']:>7.0f}")
    gain = np.mean([r["psnr_out"] - r["psnr_in"] for r in rows])
    print(f"mean PSNR change: {gain:+.2f} dB over {len(rows)} images")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rar_edge.demo", description=__doc__.splitlines()[0])
    p.add_argument("--samples", default=str(REPO / "samples"), help="folder with samples.json, degraded/ and clean/")
    p.add_argument("--work", default="runs/demo", help="where the demo model and restored images go")
    p.add_argument("--steps", type=int, default=600, help="training steps of the demo model")
    p.add_argument("--fresh", action="store_true", help="retrain the demo model from scratch")
    a = p.parse_args(argv)
    work = Path(a.work)
    if a.fresh and work.exists():
        shutil.rmtree(work)
    try:
        rows = run(Path(a.samples), work, a.steps)
    except RarEdgeError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    print_table(rows)
    print(f"restored images: {work / 'restored'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
