"""The held-out crops a bundle's loop made worse, one row each: what the loop saw and what it did to them.

    python bench/harmed_crops.py BUNDLE --photos photos/heldout [--crops 1] [--crop 256]
        [--syntheses v2,albumentations] [--harm-db 1.0] [--rule FIELD=VALUE,...] [--json F]

bench/bundle_quality.py gives the share of degraded crops left at least ``--harm-db`` below their input;
this lists them (same test set: bench/report.py's crops, cases and seeds) with the input's mean brightness,
the change of mean brightness the loop made, the most probable degradation the assessor saw, the steps kept
and why the loop stopped — enough to tell, say, dark photos brightened as if under-exposed from steps that
add artefacts. Ends with a count per most probable degradation. ``--rule`` overrides stop-rule fields as in
bench/bundle_quality.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bundle_quality import add_test_set_args, parsed_rule  # noqa: E402
from report import HARM_DB, gain_db, test_set  # noqa: E402  (the same test set as bundle_quality)


def harmed_rows(restorer, clean: np.ndarray, degraded: np.ndarray, names: list[str], index: list[int],
                harm_db: float = HARM_DB, rule: dict | None = None) -> list[dict]:
    """One dict per degraded crop whose restored PSNR is at least ``harm_db`` below its input's, worst first
    (``rule``: stop-rule fields passed to every restore)."""
    rows = []
    for k, (x, case, i) in enumerate(zip(degraded, names, index)):
        if case == "clean":
            continue
        res = restorer.restore(x, **(rule or {}))
        y = np.clip(res.image, 0, 1)
        gain = gain_db(y, x, clean[i])[1]
        if gain > -harm_db:
            continue
        top = max(res.degradations, key=res.degradations.get)
        rows.append({"case": case, "crop": int(i), "row": k, "gain_db": round(float(gain), 2),
                     "input_mean": round(float(x.mean()), 3), "clean_mean": round(float(clean[i].mean()), 3),
                     "mean_change": round(float(y.mean() - x.mean()), 3), "top": top,
                     "top_p": round(float(res.degradations[top]), 2), "steps": res.steps, "stop": res.stop_reason})
    return sorted(rows, key=lambda r: r["gain_db"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", type=Path)
    add_test_set_args(p)
    p.add_argument("--harm-db", type=float, default=HARM_DB, help="dB below the input that counts as harmed")
    a = p.parse_args(argv)
    rule = parsed_rule(p, a)
    if not (a.bundle / "manifest.json").is_file():
        p.error(f"not a bundle (no manifest.json): {a.bundle}")
    from rar_edge.runtime import Restorer

    restorer = Restorer.load(a.bundle)
    results = {}
    for synthesis in a.syntheses.split(","):
        clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
        rows = harmed_rows(restorer, clean, degraded, names, index, a.harm_db, rule)
        results[synthesis] = rows
        total = sum(c != "clean" for c in names)
        print(f"\n{synthesis}: {len(rows)} of {total} degraded crops at least {a.harm_db:g} dB below their input\n")
        print("| case | crop | gain dB | input mean | clean mean | mean change | most probable | p | steps | stop |")
        print("|---" * 10 + "|")
        for r in rows:
            print(f"| {r['case']} | {r['crop']} | {r['gain_db']:+.1f} | {r['input_mean']:.2f} | {r['clean_mean']:.2f} | "
                  f"{r['mean_change']:+.2f} | {r['top']} | {r['top_p']:.2f} | {r['steps']} | {r['stop']} |")
        print("most probable degradation of the harmed crops: "
              + (", ".join(f"{t} {n}" for t, n in Counter(r["top"] for r in rows).most_common()) or "none"))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
