"""int8 against fp32 on onnxruntime's CPU provider, per entry point: time, file size, integer kernels.

    python bench/onnx_int8.py FP32_ONNX_BUNDLE INT8_ONNX_BUNDLE [--runs 20] [--threads 2]

Both bundles of the same weights at the same fixed tile (``python -m rar_edge.export --target onnx
--checkpoint STUDENT --precision fp32|int8 --imgsz 512``). Each entry point gets random inputs of its
signature (costs do not depend on values) and is timed as the median of ``--runs`` runs after 3
warm-up runs, no thread spinning. The int8 bundle's integer-kernel counts come from its manifest
(export/onnx_int8.py's fusion_report). A measurement for BENCHMARKS.md, not an export option.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

ENTRY_POINTS = ("encode", "assess", "restore", "decode")


def ort_session(path: Path, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    """A CPU-provider session as the runtime opens one: ``threads`` intra-op threads, no spinning; with
    ``profile_prefix``, onnxruntime's profiler on (its JSON is written there by ``end_profiling``)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def random_feed(sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Random inputs of the session's signature, dynamic dims as 1 (costs do not depend on values)."""
    rng = np.random.default_rng(0)
    return {i.name: rng.random([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
            for i in sess.get_inputs()}


def median_ms(call: Callable[[], object], runs: int, warmup: int = 3) -> float:
    """Median milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def graph_ms(path: Path, runs: int, threads: int) -> float:
    """One ONNX graph on random inputs of its signature (costs do not depend on values)."""
    sess = ort_session(path, threads)
    feed = random_feed(sess)
    return median_ms(lambda: sess.run(None, feed), runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fp32", type=Path)
    ap.add_argument("int8", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    kernels = json.loads((args.int8 / "manifest.json").read_text()).get("onnxruntime", {}).get("integer_kernels", {})
    print("| entry point | fp32 ms | int8 ms | int8 / fp32 | fp32 MB | int8 MB | int8 kernels |")
    print("|---|---|---|---|---|---|---|")
    total = {"fp32": 0.0, "int8": 0.0, "fp32_mb": 0.0, "int8_mb": 0.0}
    for name in ENTRY_POINTS:
        f, i = args.fp32 / f"{name}.onnx", args.int8 / f"{name}.onnx"
        tf, ti = graph_ms(f, args.runs, args.threads), graph_ms(i, args.runs, args.threads)
        mf, mi = f.stat().st_size / 1e6, i.stat().st_size / 1e6
        k = kernels.get(name)
        fused = f"{k['integer']} of {k['fusable']}" if k and k["fusable"] else "float (kept)"
        print(f"| {name} | {tf:.2f} | {ti:.2f} | {ti / tf:.2f} | {mf:.2f} | {mi:.2f} | {fused} |")
        for key, value in (("fp32", tf), ("int8", ti), ("fp32_mb", mf), ("int8_mb", mi)):
            total[key] += value
    print(f"| all four | {total['fp32']:.2f} | {total['int8']:.2f} | {total['int8'] / total['fp32']:.2f} | "
          f"{total['fp32_mb']:.2f} | {total['int8_mb']:.2f} | |")


if __name__ == "__main__":
    main()
