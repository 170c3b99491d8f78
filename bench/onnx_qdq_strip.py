"""Why is the int8 ONNX bundle slower than fp32 on onnxruntime's CPU provider? An experiment.

    python bench/onnx_qdq_strip.py INT8_ONNX_BUNDLE FP32_ONNX_BUNDLE

Both bundles at the same tile size. For encode, restore and decode it times (median of 20 runs, 2
threads, no spinning) the int8 graph as exported, the same graph with every Q->DQ pair removed whose
producer and consumers onnxruntime cannot fuse into a QLinear op (the gates' Split/Mul/Sigmoid and FiLM
Mul/Add run in float between them anyway), and the fp32 graph; and how far each output is from the
int8 graph's (PSNR over the output's range). A measurement, not an export option (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

#: Ops onnxruntime's CPU provider turns into integer kernels (QLinearConv, QGemm...) when fed by DQ.
FUSABLE = {"Conv", "Gemm", "MatMul"}


def strip_unfusable_qdq(model: onnx.ModelProto) -> int:
    """Remove Q->DQ pairs with no fusable producer or consumer, in place; returns nodes removed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    outputs = {o.name for o in g.output}
    drop, rename = set(), {}
    for q in g.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = consumers[q.output[0]]
        if not dqs or any(d.op_type != "DequantizeLinear" or d.output[0] in outputs for d in dqs):
            continue
        p = producer.get(q.input[0])
        users = [u for d in dqs for u in consumers[d.output[0]]]
        if (p is not None and p.op_type in FUSABLE) or any(u.op_type in FUSABLE for u in users):
            continue
        drop.update(id(n) for n in (q, *dqs))
        rename.update({d.output[0]: q.input[0] for d in dqs})
    kept = [n for n in g.node if id(n) not in drop]
    for n in kept:
        n.input[:] = [rename.get(x, x) for x in n.input]
    del g.node[:]
    g.node.extend(kept)
    return len(drop)


def time_ms(path: Path, feeds: dict, runs: int = 20) -> tuple[float, np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 2, 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        out = s.run(None, feeds)[0]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = s.run(None, feeds)[0]
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000, out


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.ptp(ref) ** 2 / max(float(np.mean((x - ref) ** 2)), 1e-20)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("int8_bundle", type=Path)
    p.add_argument("fp32_bundle", type=Path)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    print("| entry point | Q/DQ nodes removed | int8 ms | int8, stripped ms | fp32 ms | stripped vs int8 dB | fp32 vs int8 dB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for entry in ("encode", "restore", "decode"):
            model = onnx.load(a.int8_bundle / f"{entry}.onnx")
            removed = strip_unfusable_qdq(model)
            stripped = Path(tmp) / f"{entry}.onnx"
            onnx.save(model, stripped)
            inputs = ort.InferenceSession(str(a.int8_bundle / f"{entry}.onnx"), providers=["CPUExecutionProvider"])
            feeds = {}
            for i in inputs.get_inputs():  # images in [0, 1]; latents and embeddings around 0
                x = rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                feeds[i.name] = np.clip(0.5 + 0.2 * x, 0, 1) if entry == "encode" else 0.5 * x
            t_int8, ref = time_ms(a.int8_bundle / f"{entry}.onnx", feeds)
            t_strip, out_strip = time_ms(stripped, feeds)
            t_fp32, out_fp32 = time_ms(a.fp32_bundle / f"{entry}.onnx", feeds)
            print(f"| {entry} | {removed} | {t_int8:.1f} | {t_strip:.1f} | {t_fp32:.1f} | "
                  f"{psnr(out_strip, ref):.1f} | {psnr(out_fp32, ref):.1f} |")


if __name__ == "__main__":
    main()
