"""Haze's classical ceiling: He et al.'s dark channel prior on the held-out crops, and whether a crop's own dark
channel tells when to run it.

    python bench/haze_prior.py --photos photos/heldout [--bundle DIR] [--syntheses v2,albumentations]
        [--omegas 0.95,0.7,0.5] [--gate-omega 0.5] [--thresholds 0.1,0.15,0.2] [--crops 1] [--crop 256] [--json F]

The shipped loop gains about nothing on haze (its steps do not dehaze; BENCHMARKS.md), while a dark channel
dehaze gains several dB on the physical haze model. Whether such a stage could run unasked depends on telling
hazy photos from others. Per test synthesis (bench/report.py's crops, cases and seeds), this prints:

- ROC-AUC for "haze is present" (haze and rain+haze against every other case, clean included) of the
  bundle's assessor (its haze probability) and of the crop's dark channel (its 10th percentile: haze lifts
  the darkest pixels of a whole scene);
- the dehaze's mean gain per case for each ``--omegas`` (the share of haze removed), run on the hazy cases
  only: what a perfect detector would get;
- at ``--gate-omega``, the gain of every case and the share of clean crops changed when the dehaze runs
  wherever the dark channel's 10th percentile reaches each of ``--thresholds``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import dark_channel, dark_channel_dehaze  # noqa: E402
from report import gain_db, test_set  # noqa: E402

from rar_edge.eval.metrics import roc_auc  # noqa: E402

HAZY = ("haze", "rain+haze")
PERCENTILE = 10


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def one_synthesis(restorer, a: argparse.Namespace, synthesis: str) -> dict:
    """Detection AUCs, oracle-gated gains per omega and dark-channel-gated gains for one test synthesis."""
    clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
    crops = [*degraded, *clean]
    cases = [*names, *["clean"] * len(clean)]
    truth = [*(clean[i] for i in index), *clean]
    hazy = np.array([c in HAZY for c in cases])
    p10 = np.array([np.percentile(dark_channel(x), PERCENTILE) for x in crops])
    p_haze = np.array([restorer.assess(x).degradations.get("haze", 0.0) for x in crops])
    omegas = sorted(set(a.omegas) | {a.gate_omega}, reverse=True)
    gains = {om: np.array([gain_db(dark_channel_dehaze(x, omega=om), x, t)[1] if c != "clean"
                           else float(np.any(dark_channel_dehaze(x, omega=om) != x))  # clean: changed or not
                           for x, t, c in zip(crops, truth, cases)]) for om in omegas}
    case_names = list(dict.fromkeys(cases))
    out = {"auc": {"assessor haze probability": roc_auc(p_haze, hazy),
                   f"dark channel p{PERCENTILE}": roc_auc(p10, hazy)},
           "oracle": {str(om): {c: float(gains[om][[k for k, n in enumerate(cases) if n == c]].mean()) for c in HAZY}
                      for om in a.omegas},
           "gated": {}}
    g = gains[a.gate_omega]
    for thr in a.thresholds:
        opened = p10 >= thr
        row = {c: float(np.where(opened, g, 0.0)[[k for k, n in enumerate(cases) if n == c]].mean())
               for c in case_names if c != "clean"}
        row["clean changed"] = float(opened[[k for k, n in enumerate(cases) if n == "clean"]].mean())
        out["gated"][str(thr)] = row
    return out


def markdown(synthesis: str, r: dict, gate_omega: float) -> str:
    lines = [f"\n{synthesis}: ROC-AUC for haze present: "
             + ", ".join(f"{k} {v:.3f}" for k, v in r["auc"].items()),
             "\n| dehaze on the hazy crops only (a perfect detector), omega | " + " | ".join(HAZY) + " |",
             "|---|" + "---|" * len(HAZY)]
    lines += [f"| {om} | " + " | ".join(f"{v:+.2f}" for v in row.values()) + " |" for om, row in r["oracle"].items()]
    cols = list(next(iter(r["gated"].values())))
    lines += [f"\n| omega {gate_omega} where dark channel p{PERCENTILE} ≥ | " + " | ".join(cols) + " |",
              "|---|" + "---|" * len(cols)]
    for thr, row in r["gated"].items():
        lines.append(f"| {thr} | " + " | ".join(f"{v:.0%}" if k == "clean changed" else f"{v:+.2f}"
                                               for k, v in row.items()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, help="held-out photos")
    p.add_argument("--bundle", help="the bundle whose assessor is compared (default: the shipped default)")
    p.add_argument("--syntheses", default="v2,albumentations")
    p.add_argument("--omegas", type=floats, default=[0.95, 0.7, 0.5])
    p.add_argument("--gate-omega", type=float, default=0.5)
    p.add_argument("--thresholds", type=floats, default=[0.1, 0.15, 0.2])
    p.add_argument("--crops", type=int, default=1, help="crops per photo")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--json")
    a = p.parse_args(argv)
    if not Path(a.photos).is_dir():
        p.error(f"--photos {a.photos} is not a folder: make one with rar-edge photos -o photos")
    from rar_edge.runtime import Restorer

    restorer = Restorer.load(a.bundle)
    print(f"`python bench/haze_prior.py {shlex.join(sys.argv[1:] if argv is None else argv)}` — "
          f"{date.today()}, {platform.machine()}; {a.crops} crop(s) of {a.crop}² per photo and case")
    results = {}
    for synthesis in a.syntheses.split(","):
        results[synthesis] = one_synthesis(restorer, a, synthesis)
        print(markdown(synthesis, results[synthesis], a.gate_omega), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
