"""What a checkpoint's stop rule costs or saves against fixed steps, on held-out photos (torch, float weights).

    python bench/loop_cost.py CKPT [CKPT ...] --photos photos/heldout [--steps 3] [--own-rule CKPT ...]
        [--syntheses v2,albumentations] [--crop 256] [--crops 1]

Each checkpoint runs ``RAR.restore_loop`` on bench/report.py's test set (the same crops, cases and seeds as
bench/bundle_quality.py) with exactly ``--steps`` steps (the last decoded, no gate or judge); each
``--own-rule`` checkpoint also runs with its own loop defaults (fitted rule, judge, clean gate). Prints one
row per run and synthesis in bench/bundle_quality.py's terms: mean gain (of singles and composites), per
case, mean steps, share of clean crops returned unchanged.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bundle_quality import summary  # noqa: E402
from report import evaluate, test_set  # noqa: E402
from runtime_bench import FIXED  # noqa: E402  (exactly max_steps steps, the last one decoded)


def loop_method(model, **overrides):
    """``model.restore_loop`` under its rule with ``overrides``, as a report method: image -> (out, steps run)."""
    import numpy as np
    import torch

    rule = model.stop_rule(**overrides)

    def run(x: np.ndarray) -> tuple[np.ndarray, int]:
        with torch.no_grad():
            res = model.restore_loop(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None], rule)[0]
        return res.image.numpy().transpose(1, 2, 0), res.steps_run

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", help="run with exactly --steps steps")
    p.add_argument("--own-rule", nargs="*", default=[], help="run with their own loop defaults")
    p.add_argument("--photos", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--syntheses", default="v2,albumentations")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--crops", type=int, default=1, help="crops per photo")
    a = p.parse_args(argv)
    if not a.checkpoints and not a.own_rule:
        p.error("give at least one checkpoint (fixed steps) or --own-rule checkpoint")
    if a.steps < 1:
        p.error(f"--steps must be at least 1, got {a.steps}")
    from rar_edge.train.checkpoint import load_model

    runs = {}
    for path in a.checkpoints:
        runs[f"{path} ({a.steps} fixed steps)"] = (path, dict(FIXED, max_steps=a.steps))
    for path in a.own_rule:
        runs[f"{path} (own rule)"] = (path, {})
    models = {path: load_model(path)[0].eval() for path, _ in runs.values()}
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"`python bench/loop_cost.py {command}` — {date.today()}, {platform.processor() or platform.machine()}")
    for synthesis in a.syntheses.split(","):
        clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
        methods = {"input": lambda x: (x, 0)}
        methods.update({name: loop_method(models[path], **rule) for name, (path, rule) in runs.items()})
        per = evaluate(methods, clean, degraded, names, index)
        cases = [c for c in dict.fromkeys(names) if c != "clean"]
        print(f"\n{synthesis}: {len(clean)} crops of {a.crop}² per case\n")
        print("| run | mean | single | composite | " + " | ".join(cases) + " | steps | clean unchanged |")
        print("|---" * (len(cases) + 6) + "|")
        for name in runs:
            s = summary(per[name], per["input"])
            print(f"| {name} | {s['mean']:+.2f} | {s['single']:+.2f} | {s['composite']:+.2f} | "
                  + " | ".join(f"{s['cases'][c]:+.2f}" for c in cases)
                  + f" | {s['steps']:.2f} | {s.get('clean_unchanged', float('nan')):.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
