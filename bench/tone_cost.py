"""What the exposure stage (``rar-edge restore --tone``, runtime/tone.py) costs per photo, torch-free.

    python bench/tone_cost.py [--head rar_edge/weights/tone] [--sizes 256,512,3000x4000] [--runs 10]

Per size, the median over ``--runs`` of: the estimate (the 64² thumbnail, its statistics and the MLP: every
photo pays it under ``--tone``) and the curve's application (a 256-entry lookup table per channel, float32 out:
only photos the head finds under-exposed), on a uint8 photo as ``rar-edge restore`` loads it.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from datetime import date

import numpy as np

from rar_edge.runtime.tone import ToneCurve


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--head", help="a `rar-edge train-tone` folder (default: the shipped head)")
    p.add_argument("--sizes", default="256,512,3000x4000", help="comma-separated SIDE or HxW")
    p.add_argument("--runs", type=int, default=10)
    a = p.parse_args(argv)
    if a.runs < 1:
        p.error("--runs must be >= 1")
    tone = ToneCurve.load(a.head)
    rng = np.random.default_rng(0)
    print(f"`python bench/tone_cost.py {shlex.join(sys.argv[1:] if argv is None else argv)}` — {date.today()}, "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}\n")
    print("| size | estimate ms | apply ms |\n|---|---|---|")
    for size in a.sizes.split(","):
        h, _, w = size.partition("x")
        shape = (int(h), int(w or h), 3)
        photo = (rng.random(shape, np.float32) * 80).astype(np.uint8)  # dark: the curve brightens it
        params, _ = tone.estimate(photo)
        est = median_ms(lambda: tone.estimate(photo), a.runs)
        app = median_ms(lambda: tone.apply(photo, params), a.runs)
        print(f"| {shape[0]}×{shape[1]} | {est:.1f} | {app:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
