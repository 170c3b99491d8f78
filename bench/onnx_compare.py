"""ONNX bundles of one student, graph by graph, timed interleaved; and where each graph's time goes per operator.

    python bench/onnx_compare.py FP32_BUNDLE INT8_A INT8_B ... [--graphs encode,restore,decode]
        [--threads 1,2] [--rounds 4] [--runs 20] [--profile restore]

All bundles at the same fixed tile. Interleaved: each round times every graph of every bundle once (median of
``--runs`` runs after 3 warm-ups, bench/onnx_int8.py's ``graph_ms``); the figure is the median over rounds,
so that this host's drift from minute to minute falls on all bundles alike. Ratios are against the first
bundle. ``--profile GRAPH`` adds onnxruntime's own per-operator times of that graph in each bundle
(``enable_profiling``, the kernels' summed time per op type, mean of 6 runs). A measurement for
BENCHMARKS.md, not a test.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import graph_ms, ort_session, random_feed  # noqa: E402  (the same session options and timing)


def op_profile(path: Path, threads: int, runs: int = 6) -> dict[str, float]:
    """ms per op type of one run of ``path`` (summed kernel time), from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(path, threads, profile_prefix=os.path.join(tmp, "prof"))
        feed = random_feed(sess)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000 / runs
    return dict(per_op.most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundles", nargs="+", type=Path, help="the first is the baseline of the ratios")
    ap.add_argument("--graphs", default="encode,restore,decode")
    ap.add_argument("--threads", default="1,2", help="onnxruntime intra-op threads, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", help="also profile this graph per operator")
    args = ap.parse_args()
    graphs, threads = args.graphs.split(","), [int(t) for t in args.threads.split(",")]
    names = [f"{b.parent.name}/{b.name}" for b in args.bundles]
    print("| graph | threads | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for t in threads:
        times = {(b, g): [] for b in args.bundles for g in graphs}
        for _ in range(args.rounds):
            for b in args.bundles:
                for g in graphs:
                    times[(b, g)].append(graph_ms(b / f"{g}.onnx", args.runs, t))
        for g in graphs:
            base = float(np.median(times[(args.bundles[0], g)]))
            cells = [f"{np.median(times[(b, g)]):.2f} ({np.median(times[(b, g)]) / base:.2f})" for b in args.bundles]
            print(f"| {g} | {t} | " + " | ".join(cells) + " |")
    if args.profile:
        for t in threads:
            for b, name in zip(args.bundles, names):
                ops = op_profile(b / f"{args.profile}.onnx", t)
                top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:10])
                print(f"\n{name} {args.profile}, {t} thread(s): {sum(ops.values()):.2f} ms in kernels; {top}")


if __name__ == "__main__":
    main()
