"""The noise stage (runtime/denoise.py) measured: where to run it, and what it adds to the loop on held-out crops.

    python bench/noise_stage.py --photos photos/heldout [--bundle DIR] [--syntheses v2,albumentations]
        [--k 3.0] [--crops 1] [--crop 256] [--rule FIELDS] [--no-timing] [--json F]

Per test synthesis (bench/report.py's crops, cases and seeds), the mean gain over the input per case of:

- ``loop``: the bundle's loop alone (``restore(denoise=False)``);
- ``before``: the stage on the input, then the loop on the result; and ``after``: the loop, then the stage on
  its output; both on the noisy cases only (what a perfect detector would run);
- ``after, ungated``: the stage after the loop on every crop (clean ones included);
- ``after, gated`` and ``before, gated``: the stage after the loop, or before it, where the bundle's assessor
  finds noise in the input (probability at least FOUND_AT); with the share of clean crops each changed.

It also times the stage (median of 5; of 3 at 12 MP) on a 512² and a 4000×3000 photo (``--no-timing``: not).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundle_quality import add_test_set_args, parsed_rule  # noqa: E402
from report import gain_db, test_set  # noqa: E402

from rar_edge.runtime import denoise as stage  # noqa: E402
from rar_edge.runtime.restorer import FOUND_AT  # noqa: E402

COLUMNS = ("loop", "before", "after", "after, ungated", "after, gated", "before, gated")


def one_synthesis(restorer, a: argparse.Namespace, synthesis: str, rule: dict) -> dict:
    """Per case: the mean gain of each column; the clean crops: the share each changed."""
    clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
    crops = [*degraded, *clean]
    cases = [*names, *["clean"] * len(clean)]
    truth = [*(clean[i] for i in index), *clean]
    per_case: dict[str, dict[str, list[float]]] = {}
    for x, t, case in zip(crops, truth, cases):
        loop = restorer.restore(x, denoise=False, **rule)
        out = np.asarray(loop.image, np.float32)
        found = loop.degradations.get("noise", 0.0) >= FOUND_AT
        after = stage.denoise(out)
        row = {"loop": gain_db(out, x, t)[1], "after, ungated": gain_db(after, x, t)[1],
               "after, gated": gain_db(after if found else out, x, t)[1]}
        before = None
        if found or "noise" in case:
            before = np.asarray(restorer.restore(stage.denoise(x), denoise=False, **rule).image, np.float32)
        row["before, gated"] = gain_db(before if found else out, x, t)[1]
        if "noise" in case:
            row["after"] = row["after, ungated"]
            row["before"] = gain_db(before, x, t)[1]
        if case == "clean":  # changed or not, not a gain (an unchanged crop's PSNR is infinite)
            row = {"after, ungated": float(np.any(after != out)), "after, gated": float(found and np.any(after != out)),
                   "before, gated": float(found)}
        for k, v in row.items():
            per_case.setdefault(case, {}).setdefault(k, []).append(v)
    out = {case: {k: float(np.mean(v)) for k, v in cols.items()} for case, cols in per_case.items()}
    for label, is_comp in (("mean, single", False), ("mean, composite", True)):
        rows = [v for c, v in out.items() if c != "clean" and ("+" in c) == is_comp]
        out[label] = {k: float(np.mean([r[k] for r in rows]))
                      for k in ("loop", "after, ungated", "after, gated", "before, gated")}
    return out


def markdown(synthesis: str, r: dict) -> str:
    lines = [f"\n{synthesis}:\n", "| case | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for case, row in r.items():
        cells = [("—" if k not in row else f"{row[k]:.0%} changed" if case == "clean" else f"{row[k]:+.2f}")
                 for k in COLUMNS]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(runs: int = 5) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for h, w in ((512, 512), (3000, 4000)):
        x = rng.random((h, w, 3), dtype=np.float32)
        times = []
        for _ in range(runs if h * w < 4e6 else 3):
            t = time.perf_counter()
            stage.denoise(x)
            times.append((time.perf_counter() - t) * 1000.0)
        out[f"{w}x{h}"] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_test_set_args(p)
    p.add_argument("--bundle", help="the bundle whose loop runs (default: the shipped default)")
    p.add_argument("--k", type=float, default=stage.K, help="threshold in noise deviations")
    p.add_argument("--timing", action=argparse.BooleanOptionalAction, default=True, help="time the stage")
    a = p.parse_args(argv)
    rule = parsed_rule(p, a)
    if not Path(a.photos).is_dir():
        p.error(f"--photos {a.photos} is not a folder: make one with rar-edge photos -o photos")
    from rar_edge.runtime import Restorer

    stage.K = a.k
    restorer = Restorer.load(a.bundle)
    print(f"`python bench/noise_stage.py {shlex.join(sys.argv[1:] if argv is None else argv)}` — "
          f"{date.today()}, {platform.machine()}; {a.crops} crop(s) of {a.crop}² per photo and case")
    results = {}
    if a.timing:
        results["timing_ms"] = timing()
        print("stage ms (median): " + ", ".join(f"{k} {v:.0f}" for k, v in results["timing_ms"].items()))
    for synthesis in a.syntheses.split(","):
        results[synthesis] = one_synthesis(restorer, a, synthesis, rule)
        print(markdown(synthesis, results[synthesis]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
