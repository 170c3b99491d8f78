"""Why fit-stop requires every clean fit crop to pass, and what the clean gate adds: fit on some photos, score on
others.

    python bench/clean_gate.py --checkpoint CKPT --fit photos/train --heldout photos/heldout \
        [--fit-images 48] [--heldout-images 24] [--crop 256] [--cap 6] [--json FILE]

The measurement behind ``rar-edge fit-stop``'s defaults (docs/model.md, "The clean gate"): trajectories of
the checkpoint's float weights on centre crops of the fit photos and of the held-out ones (every evaluation
case), the judge fitted on the fit photos as fit-stop does, then for each setting below the rule fitted on
the fit photos, scored on both: the share of clean crops returned untouched, the mean gain over the single
degradations and over the composites, and the mean steps run.

Settings: without the gate (``min_detect`` 0), requiring 96 % and then 100 % of the fit's clean crops to
pass; with the gate fitted alongside (fit-stop's candidates, rar_edge.eval.fit_stop.MIN_DETECT), 100 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.fit_stop import (Trajectories, fit_judge_on, fit_stop_rule, load_fit_model, record_trajectories,
                                    score_rule)

SETTINGS: tuple[tuple[str, bool, float], ...] = (
    ("no gate, 96 % of fit clean crops pass", False, 0.96),
    ("no gate, 100 % pass", False, 1.0),
    ("gate fitted, 100 % pass (fit-stop's default)", True, 1.0),
)


def summary(score) -> dict:
    """Clean pass share, mean gain over singles and over composites (names with a +), mean steps of a scored rule."""
    singles = [v for k, v in score.per_case.items() if k != "clean" and "+" not in k]
    composites = [v for k, v in score.per_case.items() if "+" in k]
    return {"clean_pass": round(score.clean_pass, 3), "singles": round(float(np.mean(singles)), 2),
            "composites": round(float(np.mean(composites)), 2), "steps": round(score.steps_run, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fit", required=True, help="photos the rule is fitted on (training photos)")
    p.add_argument("--heldout", required=True, help="photos it is scored on")
    p.add_argument("--fit-images", type=int, default=48)
    p.add_argument("--heldout-images", type=int, default=24)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--cap", type=int, default=6)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    model, _, _, _ = load_fit_model(a.checkpoint, "fp32")
    fit = record_trajectories(model, PhotoFolder(a.fit).center_crops(a.crop)[: a.fit_images], a.cap)
    held = record_trajectories(model, PhotoFolder(a.heldout).center_crops(a.crop)[: a.heldout_images], a.cap)
    judge = fit_judge_on(fit).head
    rows = []
    for name, gated, share in SETTINGS:
        # Trajectories without the input's probabilities offer fit-stop no gate (only min_detect 0).
        on: Trajectories = fit if gated else dataclasses.replace(fit, probabilities=None)
        rule = fit_stop_rule(on, a.cap, judge=judge, min_clean_pass=share).rule
        row = {"setting": name, "rule": dataclasses.asdict(rule),
               "fit": summary(score_rule(rule, fit, judge=judge)),
               "heldout": summary(score_rule(rule, held, judge=judge))}
        rows.append(row)
        f, h = row["fit"], row["heldout"]
        print(f"| {name} | {f['clean_pass']:.0%} | {h['clean_pass']:.0%} | {h['singles']:+.2f} | "
              f"{h['composites']:+.2f} | {h['steps']:.2f} | {rule.min_detect:g} |")
    if a.json:
        with open(a.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
