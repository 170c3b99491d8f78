"""JPEG's block grid as a detector (runtime/jpeg_grid.py): its fit, its ROC-AUC against the assessor's, its cost.

    # the logistic's two numbers, fitted on training photos under the training syntheses (paste into
    # runtime/jpeg_grid.py: WEIGHT, BIAS)
    python bench/jpeg_grid.py --fit photos/train [--syntheses v2,v3]
    # held-out ROC-AUC for "the crop was JPEG-compressed" (every case: composites with JPEG count), of the
    # bundle's assessor, of the grid and of the two as `Restorer.assess` combines them; the cost per photo size
    python bench/jpeg_grid.py --photos photos/heldout [--bundle DIR] [--syntheses v2,albumentations] [--json F]
    # would the loop gain if its clean gate read the grid too? A checkpoint's loop replayed (its own rule and
    # judge) with the gate's JPEG probability raised to the grid's, against the loop as it is
    python bench/jpeg_grid.py --photos photos/heldout --loop checkpoints/rar-edge-s-conv-v2 [--max-images 24]

Crops are bench/report.py's test set (``--crops`` random crops of ``--crop``² per photo under every case);
``--loop`` records bench/loop_headroom.py's centre crops (fit-stop's recording: 6 fixed steps).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import test_set  # noqa: E402

from rar_edge.eval.judge import fit_logistic  # noqa: E402
from rar_edge.eval.metrics import roc_auc  # noqa: E402
from rar_edge.runtime.restorer import FOUND_AT  # noqa: E402
from rar_edge.runtime.jpeg_grid import LINES, grid_probability, grid_score, jpeg_probability, with_grid  # noqa: E402


def scored(photos: str, synthesis: str, crops: int, crop: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(grid scores, JPEG labels, case names, degraded crops) of the test set of ``photos`` under ``synthesis``."""
    _, degraded, names, _ = test_set(photos, crops, crop, synthesis=synthesis)
    return (np.array([grid_score(x) for x in degraded]), np.array(["jpeg" in n.split("+") for n in names]),
            names, degraded)


def fit(photos: str, syntheses: list[str], crops: int, crop: int) -> dict:
    """The logistic of "JPEG" on (score - 1), on every crop of every synthesis, and its AUC there."""
    parts = [scored(photos, s, crops, crop)[:2] for s in syntheses]
    x = np.concatenate([p[0] for p in parts]) - 1.0
    y = np.concatenate([p[1] for p in parts])
    weights, bias = fit_logistic(x[:, None], y, 1.0, 30)
    return {"weight": round(float(weights[0]), 2), "bias": round(float(bias), 2), "crops": int(len(x)),
            "auc": roc_auc(x, y)}


def held_out(photos: str, bundle: str | None, syntheses: list[str], crops: int, crop: int) -> dict:
    """Per synthesis: ROC-AUC of the assessor's JPEG probability, of the grid's and of their maximum (what
    ``Restorer.assess`` reports), and the median score per case."""
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundle) if bundle else Restorer.load()
    out = {}
    for s in syntheses:
        score, label, names, degraded = scored(photos, s, crops, crop)
        assessed = [r.assess(x) for x in degraded]
        learned = np.array([a.degradations["jpeg"] for a in assessed])
        grid = np.array([a.jpeg_grid for a in assessed])
        assert np.allclose(grid, [jpeg_probability(v) for v in score])  # assess reads the same grid
        combined = np.array([with_grid(a.degradations, a.jpeg_grid)["jpeg"] for a in assessed])
        found = np.array(["jpeg" in a.present for a in assessed])  # assess's own threshold: 0.5
        cases, names = list(dict.fromkeys(names)), np.array(names)
        out[s] = {"assessor": roc_auc(learned, label), "grid": roc_auc(grid, label),
                  "combined": roc_auc(combined, label),
                  "found_at_0.5": {c: float(found[names == c].mean()) for c in cases},
                  "median_score": {c: float(np.median(score[names == c])) for c in cases}}
    return out


#: Steps fit-stop's recording runs for --loop (bench/loop_headroom.py's default cap).
LOOP_CAP = 6


def loop_with_grid(checkpoint: str, photos: str, syntheses: list[str], crop: int, max_images: int) -> dict:
    """Per synthesis: bench/loop_headroom.py's rows for the checkpoint's loop as it is ("loop") and with its
    clean gate reading max(assessor, grid) as the JPEG probability ("gate reads the grid")."""
    from loop_headroom import headroom, loop_picks

    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.cases import make_cases
    from rar_edge.eval.fit_stop import RECORD_SEED, record_trajectories
    from rar_edge.train.checkpoint import load_model

    model, _ = load_model(checkpoint)
    model.eval()
    clean = PhotoFolder(photos).center_crops(crop)[:max_images]
    kinds = model.config.degradations
    out = {}
    for s in syntheses:
        traj = record_trajectories(model, clean, LOOP_CAP, seed=RECORD_SEED, synthesis=s)
        batch, names = make_cases(clean, seed=RECORD_SEED, synthesis=s)  # the recording's own inputs
        assert names == traj.cases
        grid = np.array([grid_probability(x) for x in batch.degraded.clamp(0, 1).numpy().transpose(0, 2, 3, 1)])
        read = np.array([[with_grid(dict(zip(kinds, p)), g)[k] for k in kinds]
                         for p, g in zip(traj.probabilities, grid)])
        out[s] = {"loop": headroom(traj, loop_picks(model, traj))["loop"],
                  "gate reads the grid": headroom(traj, loop_picks(model, traj, read))["loop"],
                  "grid_found": {c: float((grid[np.array(names) == c] >= FOUND_AT).mean())
                                 for c in dict.fromkeys(names)}}
    return out


#: Photo sizes the cost is timed at (height, width): the runtime prices the grid by the highest ms per megapixel
#: it measured (runtime/stage_cost.py StageCost), so the spread across sizes is what its margin must cover: read
#: whole up to 1535 px a side (the peak), sampled above.
COST_SIZES = ((512, 512), (1000, 1000), (1535, 2300), (3000, 4000), (6000, 8000))


def cost(runs: int = 10) -> dict:
    """Median ms of grid_score on a uint8 photo of each size (and at 12 MP on every line, for the sample's
    saving)."""
    rng = np.random.default_rng(0)
    out = {}
    sizes = [(f"{w}x{h}", (h, w), LINES) for h, w in COST_SIZES] + [("4000x3000, every line", (3000, 4000), 1 << 30)]
    for label, (h, w), lines in sizes:
        x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            grid_score(x, lines)
            times.append((time.perf_counter() - t) * 1000)
        out[label] = float(np.median(times))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", metavar="PHOTOS", help="fit the logistic on these (training) photos")
    p.add_argument("--photos", help="held-out photos: the AUC report")
    p.add_argument("--bundle", help="the bundle whose assessor to compare (default: the shipped one)")
    p.add_argument("--syntheses", help="comma-separated (default: v2,v3 for --fit, v2,albumentations otherwise)")
    p.add_argument("--crops", type=int, default=1, help="random crops per photo")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--loop", metavar="CHECKPOINT", help="with --photos: replay this checkpoint's loop with its "
                   "clean gate reading the grid, instead of the AUC report")
    p.add_argument("--max-images", type=int, default=24, help="--loop: centre crops (one per photo)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if bool(a.fit) == bool(a.photos):
        p.error("give --fit PHOTOS or --photos PHOTOS")
    if a.loop and a.fit:
        p.error("--loop replays held-out photos: give it with --photos, not --fit")
    syntheses = (a.syntheses or ("v2,v3" if a.fit else "v2,albumentations")).split(",")
    out = {"command": "python " + shlex.join(sys.argv), "date": date.today().isoformat(),
           "machine": platform.processor() or platform.machine()}
    if a.fit:
        out["fit"] = fit(a.fit, syntheses, a.crops, a.crop)
        f = out["fit"]
        print(f"WEIGHT, BIAS = {f['weight']}, {f['bias']}  ({f['crops']} crops, {', '.join(syntheses)}; "
              f"ROC-AUC on them {f['auc']:.3f})")
    elif a.loop:
        out["loop"] = loop_with_grid(a.loop, a.photos, syntheses, a.crop, a.max_images)
        for s, rows in out["loop"].items():
            cases = list(rows["loop"]["cases"])
            found = ", ".join(f"{v:.0%} of {c}" for c, v in rows["grid_found"].items())
            print(f"\n{s}: the grid finds JPEG in {found}")
            print("| loop | mean | single | composite | " + " | ".join(cases) + " | clean untouched |")
            for how in ("loop", "gate reads the grid"):
                r = rows[how]
                print(f"| {how} | {r['mean']:+.2f} | {r['single']:+.2f} | {r['composite']:+.2f} | "
                      + " | ".join(f"{r['cases'][c]:+.2f}" for c in cases) + f" | {r['clean_unchanged']:.0%} |")
    else:
        out["held_out"] = held_out(a.photos, a.bundle, syntheses, a.crops, a.crop)
        out["ms"] = cost()
        print("| test synthesis | assessor | grid | assess (the larger) | found at 0.5: " + " | ".join(
            next(iter(out["held_out"].values()))["found_at_0.5"]) + " |")
        for s, v in out["held_out"].items():
            print(f"| {s} | {v['assessor']:.3f} | {v['grid']:.3f} | {v['combined']:.3f} | "
                  + " | ".join(f"{f:.2f}" for f in v["found_at_0.5"].values()) + " |")
        print("grid_score ms (ms per megapixel): " + ", ".join(
            f"{k} {v:.1f} ({v * 1e6 / np.prod([int(n) for n in k.split(',')[0].split('x')]):.1f})"
            for k, v in out["ms"].items()))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
