"""Learning efficiency: held-out gain per type at fixed amounts of training time, for one or more recipes.

    # train a recipe for a time budget with snapshots at the marks, then evaluate every snapshot
    python bench/learning_curve.py --train "--preset rar-edge-s --data photos/train --batch 8" \\
        --marks 15,30,60 --out runs/lc_s --photos photos/heldout --json runs/lc_s.json
    # or evaluate runs trained earlier with `rar-edge train --minutes M --marks ...` (and their last/)
    python bench/learning_curve.py --run runs/a --run runs/b --photos photos/heldout --syntheses v1,v2,albumentations

Every snapshot runs a fixed number of restore steps (``--steps``, default 3: the trainer's unroll), so the
curve measures what the restorer learned, not how well an unfitted stop rule stops. Prints one Markdown
row per (run, snapshot, synthesis): the mean of the next two (the replacement rule's figure), mean gain
over the single types, over the composites, per type, and the PSNR a clean photo keeps after the steps.
A checkpoint folder given as ``--run`` is evaluated as one snapshot (a baseline beside the runs).
Machine, date and command go with the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

from rar_edge import DEGRADATIONS
from rar_edge.eval.cases import COMPOSITES, case_name
from rar_edge.eval.evaluate import evaluate
from rar_edge.loop import StopRule
from rar_edge.train.checkpoint import load_model
from rar_edge.train.ema import has_raw, load_raw


def snapshots(run: Path) -> list[tuple[str, Path]]:
    """(label, folder) of a run's time marks in order, then its last checkpoint; a checkpoint folder given
    as the run is its own one snapshot (a baseline, e.g. a committed checkpoint beside the runs). A run
    trained with ``--ema`` has its raw weights at each mark too (``marks-raw/``) and beside its last
    checkpoint's average: each follows its average, labelled "<mark> raw" ("last raw": ``load_snapshot``
    reads them from the checkpoint's extras), so one table shows what the average gained at equal compute."""
    if (run / "config.json").is_file():
        return [("checkpoint", run)]
    marks = sorted((run / "marks").iterdir(), key=lambda p: float(p.name.removesuffix("min"))) \
        if (run / "marks").is_dir() else []
    out = []
    for p in marks:
        out.append((p.name, p))
        if (run / "marks-raw" / p.name / "config.json").is_file():
            out.append((f"{p.name} raw", run / "marks-raw" / p.name))
    if (run / "last" / "config.json").is_file():
        out.append(("last", run / "last"))
        if has_raw(run / "last"):
            out.append(("last raw", run / "last"))
    return out


def load_snapshot(label: str, folder: Path):
    """(model, config) of a snapshot: a checkpoint's model, or for "last raw" the raw weights beside it."""
    return load_raw(folder) if label == "last raw" else load_model(folder)


def fixed_steps(steps: int) -> StopRule:
    """A rule that always takes ``steps`` steps and decodes the last latent."""
    return StopRule(max_steps=steps, target_quality=float("inf"), min_gain=-float("inf"), min_change=0.0, keep="last")


def summarise(report: dict) -> dict:
    cases = report["cases"]
    gain = {k: v["psnr_out"] - v["psnr_in"] for k, v in cases.items()}
    composites = [case_name(c) for c in COMPOSITES]
    single = sum(gain[d] for d in DEGRADATIONS) / len(DEGRADATIONS)
    composite = sum(gain[c] for c in composites) / len(composites)
    return {"mean": (single + composite) / 2,  # the replacement rule's figure (checkpoints/README.md)
            "single": single, "composite": composite,
            **{k: gain[k] for k in list(DEGRADATIONS) + composites},
            # A clean input has infinite PSNR (capped at 100): what counts is what the steps leave of it.
            "clean_psnr_out": cases["clean"]["psnr_out"],
            "per_model": {k: v["psnr_out"] - v["psnr_in"] for k, v in report["per_model"].items()}}


def markdown(rows: list[dict]) -> str:
    head = ["run", "snapshot", "step", "test synthesis", "mean", "single", "composite", *DEGRADATIONS,
            "clean (PSNR out)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["summary"]
        lines.append("| " + " | ".join([r["run"], r["snapshot"], str(r["step"]), r["synthesis"]]
                                       + [f"{s[k]:+.2f}" for k in ["mean", "single", "composite", *DEGRADATIONS]]
                                       + [f"{s['clean_psnr_out']:.1f}"]) + " |")
    return "\n".join(lines)


def publish(rows: list[dict], script: str, argv: list[str] | None, a: argparse.Namespace) -> None:
    """Print the command, date and machine, then the Markdown table; write the rows to ``a.json`` if given."""
    print(f"\n`python bench/{script} {shlex.join(sys.argv[1:] if argv is None else argv)}` — "
          f"{date.today()}, {platform.processor() or platform.machine()}; {a.max_images} held-out photos, "
          f"{a.crop}² centre crops, {a.steps} steps\n")
    print(markdown(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[],
                   help="a run folder with marks/ and last/, or a checkpoint folder (repeatable)")
    p.add_argument("--train", help="rar-edge train arguments of a recipe to train first (with --out, --marks)")
    p.add_argument("--out", help="run folder for --train")
    p.add_argument("--marks", default="15,30,60", help="minutes (for --train): snapshots; the last is the budget")
    p.add_argument("--photos", required=True, help="held-out photos (never the training ones)")
    p.add_argument("--syntheses", default="v2,albumentations", help="test syntheses, comma-separated")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--max-images", type=int, default=24)
    p.add_argument("--json", help="write every row (with per-model gains) here")
    a = p.parse_args(argv)

    runs = [Path(r) for r in a.run]
    if a.train:
        if not a.out:
            p.error("--train needs --out")
        budget = max(float(m) for m in a.marks.split(","))
        cmd = [sys.executable, "-m", "rar_edge", "train", *shlex.split(a.train), "--out", a.out,
               "--minutes", f"{budget:g}", "--marks", a.marks, "--resume"]
        print("training:", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        runs.append(Path(a.out))
    if not runs:
        p.error("pass --run RUN or --train ARGS --out RUN")

    rows = []
    for run in runs:
        for label, folder in snapshots(run):
            model, config = load_snapshot(label, folder)
            for synthesis in a.syntheses.split(","):
                report = evaluate(model, a.photos, fixed_steps(a.steps), crop=a.crop, max_images=a.max_images,
                                  synthesis=synthesis)
                row = {"run": run.name, "snapshot": label, "step": config["step"],
                       "spent_s": config.get("metrics", {}).get("spent_s"), "synthesis": synthesis,
                       "summary": summarise(report)}
                rows.append(row)
                print(f"{run.name} {label} {synthesis}: single {row['summary']['single']:+.2f} dB, "
                      f"composite {row['summary']['composite']:+.2f} dB", flush=True)
    publish(rows, "learning_curve.py", argv, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
