"""What the stop rule leaves on the table: a model's loop against fixed step counts and a per-image oracle.

    python bench/loop_headroom.py --checkpoint checkpoints/rar-edge-s-conv-v2 --photos photos/heldout \\
        [--syntheses v2,albumentations] [--cap 6] [--crop 256] [--max-images 24] [--json F]

Every photo's centre crop under every evaluation case (rar_edge/eval/cases.py, fit-stop's recording seed) runs
``--cap`` fixed restore steps (fit-stop's recording: true PSNR and assessment after each); then, per case, the
gain over the input of the model's own loop (its config's stop rule, judge and gate, replayed as the runtime
runs it), of each fixed step count, and of an oracle that keeps each image's best of 0..cap steps (what no
rule can beat). Also the share of clean crops the loop returns untouched. Fixed steps and the oracle decode
step 0 as the input (the pass-through). Machine, date and command go with the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.fit_stop import Trajectories, record_trajectories, replay
from rar_edge.train.checkpoint import load_model


def headroom(traj: Trajectories, picked: np.ndarray) -> dict:
    """Per case (and the singles' / composites' means): the gain of the loop's ``picked`` step per image, of
    each fixed step count and of the best step per image; the loop's clean pass-through share."""
    out = traj.psnr.copy()
    out[:, 0] = traj.psnr_in  # step 0 is the input as it came
    gains = {"loop": out[np.arange(len(picked)), picked], "oracle": out.max(1)}
    gains.update({f"{k} steps": out[:, k] for k in range(1, out.shape[1])})
    cases = np.array(traj.cases)
    degraded = [c for c in dict.fromkeys(traj.cases) if c != "clean"]
    rows = {}
    for how, o in gains.items():
        per = {c: float((o - traj.psnr_in)[cases == c].mean()) for c in degraded}
        single, composite = (float(np.mean(v)) if v else float("nan")
                             for v in ([v for c, v in per.items() if "+" not in c], [v for c, v in per.items() if "+" in c]))
        rows[how] = {"mean": (single + composite) / 2, "single": single, "composite": composite, "cases": per}
    rows["loop"]["clean_unchanged"] = float(np.mean(picked[cases == "clean"] == 0)) if (cases == "clean").any() \
        else float("nan")
    return rows


def loop_picks(model, traj: Trajectories, probabilities: np.ndarray | None = None) -> np.ndarray:
    """The step each image's loop returns under the model's own rule (its judge and gate included);
    ``probabilities``: what its clean gate reads instead of the recorded ones (N, D)."""
    rule, judge = model.stop_rule(max_steps=min(model.config.max_steps, traj.change.shape[1])), model.config.judge_head
    probabilities = traj.probabilities if probabilities is None else probabilities
    return np.array([replay(rule, q, c, v, judge, p)[0]
                     for q, c, v, p in zip(traj.quality, traj.change, traj.vectors, probabilities)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--photos", required=True, help="held-out photos")
    p.add_argument("--syntheses", default="v2,albumentations", help="test syntheses, comma-separated")
    p.add_argument("--cap", type=int, default=6, help="fixed steps recorded (the oracle's choice)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--max-images", type=int, default=24)
    p.add_argument("--json")
    a = p.parse_args(argv)
    model, _ = load_model(a.checkpoint)
    model.eval()
    clean = PhotoFolder(a.photos).center_crops(a.crop)[: a.max_images]
    print(f"`python bench/loop_headroom.py {shlex.join(sys.argv[1:] if argv is None else argv)}` — {date.today()}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    results = {}
    for synthesis in a.syntheses.split(","):
        traj = record_trajectories(model, clean, a.cap, synthesis=synthesis)
        rows = results[synthesis] = headroom(traj, loop_picks(model, traj))
        cases = list(rows["loop"]["cases"])
        print(f"\n{synthesis}: {len(clean)} centre crops of {a.crop}² per case; loop returns "
              f"{rows['loop']['clean_unchanged']:.0%} of clean crops untouched\n")
        print("| steps | mean | single | composite | " + " | ".join(cases) + " |")
        print("|---" * (len(cases) + 4) + "|")
        for how, r in rows.items():
            print(f"| {how} | {r['mean']:+.2f} | {r['single']:+.2f} | {r['composite']:+.2f} | "
                  + " | ".join(f"{r['cases'][c]:+.2f}" for c in cases) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
