"""The noise stage (runtime/denoise.py) measured: where to run it, and what it adds to the loop on held-out crops.

    python bench/noise_stage.py --photos photos/heldout [--bundle DIR] [--syntheses v2,albumentations]
        [--k 3.0] [--crops 1] [--crop 256] [--rule FIELDS] [--no-timing] [--json F]
    python bench/noise_stage.py --fit --photos photos/train --syntheses v2,v3 --no-timing [--thresholds 1,2,4]

Per test synthesis (bench/report.py's crops, cases and seeds), the mean gain over the input per case of:

- ``loop``: the bundle's loop alone (``restore(denoise=False)``);
- ``before``: the stage on the input, then the loop on the result; and ``after``: the loop, then the stage on
  its output; both on the noisy cases only (what a perfect detector would run);
- ``after, ungated``: the stage after the loop on every crop (clean ones included);
- ``after, noise found`` and ``before, noise found``: the stage after the loop, or before it, where the bundle's
  assessor finds noise in the input (probability at least FOUND_AT; after: what ``restore`` runs); with the share
  of clean crops each changed;
- ``after, JPEG gate``: also where JPEG is found and the photo's own noise level reaches ``JPEG_NOISE``
  (``jpeg_gate``; measured, not in the runtime: it cost JPEG-only held-out crops up to 0.3 dB).

It also times the stage (median, min and max of 5; of 3 at 12 MP) at 512² on random, flat and photo pixels and
on a 4000×3000 photo (``timing``; ``--no-timing``: not).

``--fit`` (on training photos: ``--photos photos/train --syntheses v2,v3``) fits the JPEG gate's threshold: it
prints each candidate's gains and picks the lowest that costs no case without noise more than 0.01 dB and
changes no clean crop.
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
from rar_edge.runtime.restorer import present, wants_noise_stage  # noqa: E402

COLUMNS = ("loop", "before", "after", "after, ungated", "after, noise found", "after, JPEG gate", "before, noise found")
# the columns every case has
GAINS = ("loop", "after, ungated", "after, noise found", "after, JPEG gate", "before, noise found")
#: The JPEG gate's noise level, 0-255 scale: ``--fit``'s choice on training photos (v2 and v3), measured and not
#: kept in the runtime (BENCHMARKS.md, "The noise stage")
JPEG_NOISE = 4.0
LEVEL_SIDE = 1024


def noise_level(rgb: np.ndarray) -> float:
    """A photo's noise, 0-255 scale: the stage's per-frequency deviation (runtime/denoise.py ``noise_sigma``) averaged
    over frequencies (the mean's excluded) and opponent channels, on its central LEVEL_SIDE² at most."""
    h, w = rgb.shape[:2]
    top, left = max(0, (h - LEVEL_SIDE) // 2), max(0, (w - LEVEL_SIDE) // 2)
    opp = rgb[top:top + LEVEL_SIDE, left:left + LEVEL_SIDE].astype(np.float32) @ stage.OPPONENT.T
    return 255 * float(np.mean([stage.noise_sigma(np.ascontiguousarray(opp[..., c]))[1:].mean() for c in range(3)]))


def jpeg_gate(found: list[str], level: float, threshold: float = JPEG_NOISE) -> bool:
    """Noise found (``found``: ``present``'s names), or JPEG found (the assessor or the grid: JPEG hides noise from
    the assessor) and the photo's own noise level at least ``threshold``."""
    return "noise" in found or ("jpeg" in found and level >= threshold)


def one_synthesis(restorer, a: argparse.Namespace, synthesis: str, rule: dict, records: list | None = None) -> dict:
    """Per case: the mean gain of each column; the clean crops: the share each changed. ``records``, if given,
    receives one dict per crop for ``fit`` (its case, what was found, its noise level, its two gains)."""
    clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
    crops = [*degraded, *clean]
    cases = [*names, *["clean"] * len(clean)]
    truth = [*(clean[i] for i in index), *clean]
    per_case: dict[str, dict[str, list[float]]] = {}
    for x, t, case in zip(crops, truth, cases):
        loop = restorer.restore(x, denoise=False, **rule)
        out = np.asarray(loop.image, np.float32)
        found = present(loop.degradations, jpeg_grid=loop.jpeg_grid)
        level = noise_level(x)
        noisy = wants_noise_stage(loop.degradations, *x.shape[:2])  # the runtime's rule
        gated = jpeg_gate(found, level)
        after = stage.denoise(out)
        row = {"loop": gain_db(out, x, t)[1], "after, ungated": gain_db(after, x, t)[1],
               "after, noise found": gain_db(after if noisy else out, x, t)[1],
               "after, JPEG gate": gain_db(after if gated else out, x, t)[1]}
        before = None
        if noisy or "noise" in case:
            before = np.asarray(restorer.restore(stage.denoise(x), denoise=False, **rule).image, np.float32)
        row["before, noise found"] = gain_db(before if noisy else out, x, t)[1]
        if "noise" in case:
            row["after"] = row["after, ungated"]
            row["before"] = gain_db(before, x, t)[1]
        changed = bool(np.any(after != out))
        if records is not None:
            records.append({"case": case, "found": found, "level": level, "loop": row["loop"],
                            "after": row["after, ungated"], "changed": changed})
        if case == "clean":  # changed or not, not a gain (an unchanged crop's PSNR is infinite)
            row = {"after, ungated": float(changed), "after, noise found": float(noisy and changed),
                   "after, JPEG gate": float(gated and changed), "before, noise found": float(noisy)}
        for k, v in row.items():
            per_case.setdefault(case, {}).setdefault(k, []).append(v)
    out = {case: {k: float(np.mean(v)) for k, v in cols.items()} for case, cols in per_case.items()}
    for label, is_comp in (("mean, single", False), ("mean, composite", True)):
        rows = [v for c, v in out.items() if c != "clean" and ("+" in c) == is_comp]
        out[label] = {k: float(np.mean([r[k] for r in rows])) for k in GAINS}
    return out


def fit(records: list[dict], thresholds: list[float]) -> tuple[list[dict], float | None]:
    """For each threshold (0-255 scale) of the rule "noise found, or JPEG found and noise_level >= threshold": the
    singles' and composites' mean gain, the case without noise the stage costs most (its mean gain with the stage
    minus the loop's alone), the share of clean crops changed; and the lowest threshold at which the stage costs
    no case without noise more than 0.01 dB and changes no clean crop (None: none does)."""
    cases = list(dict.fromkeys(r["case"] for r in records))
    rows, chosen = [], None
    for thr in thresholds:
        def runs(r: dict) -> bool:
            return jpeg_gate(r["found"], r["level"], thr)
        gain = {c: float(np.mean([r["after"] if runs(r) else r["loop"] for r in records if r["case"] == c]))
                for c in cases if c != "clean"}
        loop = {c: float(np.mean([r["loop"] for r in records if r["case"] == c])) for c in gain}
        worst = min((gain[c] - loop[c], c) for c in gain if "noise" not in c)
        clean = float(np.mean([runs(r) and r["changed"] for r in records if r["case"] == "clean"]))
        rows.append({"threshold": thr, "single": float(np.mean([g for c, g in gain.items() if "+" not in c])),
                     "composite": float(np.mean([g for c, g in gain.items() if "+" in c])),
                     "noise+jpeg": gain.get("noise+jpeg"), "blur+noise+jpeg": gain.get("blur+noise+jpeg"),
                     "worst case without noise": worst[1], "its cost": worst[0], "clean changed": clean})
        if chosen is None and worst[0] >= -0.01 and clean == 0.0:
            chosen = thr
    return rows, chosen


def markdown(synthesis: str, r: dict) -> str:
    lines = [f"\n{synthesis}:\n", "| case | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for case, row in r.items():
        cells = [("—" if k not in row else f"{row[k]:.0%} changed" if case == "clean" else f"{row[k]:+.2f}")
                 for k in COLUMNS]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(runs: int = 5) -> dict:
    """The stage's ms, {name: (median, min, max)}: 512² of random, flat grey and photo pixels (scikit-image's
    astronaut: whether the pixels change its time), and 4000x3000 random pixels (3 runs)."""
    from skimage import data

    rng = np.random.default_rng(0)
    images = {"512x512 random": rng.random((512, 512, 3), dtype=np.float32),
              "512x512 flat": np.full((512, 512, 3), 0.5, np.float32),
              "512x512 photo": data.astronaut().astype(np.float32) / 255,
              "4000x3000 random": rng.random((3000, 4000, 3), dtype=np.float32)}
    out = {}
    for name, x in images.items():
        times = []
        for _ in range(runs if x.size < 12e6 else 3):
            t = time.perf_counter()
            stage.denoise(x)
            times.append((time.perf_counter() - t) * 1000.0)
        out[name] = (statistics.median(times), min(times), max(times))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_test_set_args(p)
    p.add_argument("--bundle", help="the bundle whose loop runs (default: the shipped default)")
    p.add_argument("--k", type=float, default=stage.K, help="threshold in noise deviations")
    p.add_argument("--timing", action=argparse.BooleanOptionalAction, default=True, help="time the stage")
    p.add_argument("--fit", action="store_true", help="fit the JPEG gate's noise level (JPEG_NOISE) on --photos: "
                   "training photos, e.g. --photos photos/train --syntheses v2,v3")
    p.add_argument("--thresholds", default="1,2,3,4,5,6,8", help="--fit's candidates, on the 0-255 scale")
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
        print("stage ms, median (min-max): " + ", ".join(f"{k} {m:.0f} ({lo:.0f}-{hi:.0f})"
                                                         for k, (m, lo, hi) in results["timing_ms"].items()))
    records: list[dict] = []
    for synthesis in a.syntheses.split(","):
        results[synthesis] = one_synthesis(restorer, a, synthesis, rule, records if a.fit else None)
        print(markdown(synthesis, results[synthesis]), flush=True)
    if a.fit:
        rows, chosen = fit(records, [float(v) for v in a.thresholds.split(",")])
        results["fit"] = {"rows": rows, "chosen": chosen}
        print("\nthe JPEG gate: noise found, or JPEG found and the noise level >= threshold (0-255), over "
              f"{a.syntheses}:\n\n| threshold | single | composite | noise+jpeg | blur+noise+jpeg | worst case without "
              "noise (stage - loop) | clean changed |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['threshold']:g} | {r['single']:+.3f} | {r['composite']:+.3f} | {r['noise+jpeg']:+.2f} | "
                  f"{r['blur+noise+jpeg']:+.2f} | {r['worst case without noise']} {r['its cost']:+.3f} | "
                  f"{r['clean changed']:.1%} |")
        print(f"\nchosen (lowest with no case without noise below -0.01 dB, no clean crop changed): {chosen} "
              f"(JPEG_NOISE here: {JPEG_NOISE:g})")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
