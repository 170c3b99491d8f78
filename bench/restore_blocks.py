"""Each entry point per block kind: fp32 and int8 time on XNNPACK (ExecuTorch) and onnxruntime.

    python bench/restore_blocks.py [--presets rar-edge-s,rar-edge-s-conv] [--checkpoint rar-edge-s=DIR ...]
                                   [--entries restore] [--size 512] [--runs 20] [--rounds 3] [--threads 2]
                                   [--json OUT]

Issue 23 asks why int8 gains so little over fp32; this measures the answer the blocks' design gives. Each
preset's entry points (``--entries``, default the restore step; inputs of a ``--size`` tile) are lowered four
ways: XNNPACK through a one-method .pte, fp32 and int8 (post-training PT2E with the project's XNNPACK
quantizer, the same quantizer QAT uses, so the same int8 graph); onnxruntime's CPU provider, fp32 (the
dynamo exporter, as the ONNX export) and int8 (the int8 ONNX export's own ``quantize_graph``). Weights: a
checkpoint's where given, else the preset's initialisation perturbed (costs do not depend on values;
zero-initialised layers would let onnxruntime's optimiser drop them). The best of ``--rounds`` medians of
``--runs`` calls, each runtime given the machine alone; torch itself runs at one thread (its pool slows
XNNPACK's: roofline.py).

With all four entries, a "loop" row adds them up as the runtime calls them in a 2-step loop (1 encode, 3
assess, 2 restore, 1 decode), int8 with the assessor float (as students ship) and all int8: e.g. what
``rar-edge-s-dense`` (dense blocks throughout) would cost before one is trained. A measurement for
BENCHMARKS.md ("A restorer of dense convolutions"), not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import median_ms, ort_session  # noqa: E402
from roofline import xnnpack_call  # noqa: E402

from rar_edge.export.onnx import OPSET  # noqa: E402
from rar_edge.export.onnx_static import quantize_graph  # noqa: E402
from rar_edge.manifest import signatures  # noqa: E402
from rar_edge.model import ENTRY_POINTS, RAR, create_model  # noqa: E402
from rar_edge.model.complexity import entry_macs  # noqa: E402
from rar_edge.model.entry_points import EntryPoint, example_inputs  # noqa: E402
from rar_edge.train.checkpoint import load_model  # noqa: E402

#: The part of the model each entry point runs (its parameter count).
PARTS = {"encode": "encoder", "assess": "assessor", "restore": "restorer", "decode": "decoder"}
#: Calls per entry point in a 2-step loop, as the runtime makes them.
LOOP_CALLS = {"encode": 1, "assess": 3, "restore": 2, "decode": 1}
LOWERINGS = ("xnnpack fp32", "xnnpack int8", "onnxruntime fp32", "onnxruntime int8")


def load(preset: str, checkpoint: str | None) -> RAR:
    if checkpoint:
        model, cfg = load_model(checkpoint)
        if cfg["preset"] != preset:
            raise SystemExit(f"{checkpoint} holds a {cfg['preset']} model, not {preset}")
        return model.eval()
    torch.manual_seed(0)
    model = create_model(preset).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def entry_args(model: RAR, name: str, size: int) -> tuple[torch.Tensor, ...]:
    """Inputs of entry point ``name`` in about the ranges a trained model sees (latents within ±0.3)."""
    torch.manual_seed(1)
    args = example_inputs(model, name, size, size)
    if name == "encode":
        return args
    return (0.3 * (2 * args[0] - 1), *(c.clamp(-1, 1) for c in args[1:]))


def ort_calls(module: nn.Module, name: str, args: tuple[torch.Tensor, ...], inputs: list[str], folder: Path,
              threads: int) -> dict[str, Callable]:
    fp32 = folder / f"{name}_fp32_{id(module)}.onnx"
    program = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET, input_names=inputs, verbose=False)
    program.save(str(fp32))  # as the ONNX export writes its graphs: weights inside the file
    int8 = folder / f"{name}_int8_{id(module)}.onnx"
    rng = np.random.default_rng(0)
    feeds = [[(a.numpy() * (1 + 0.1 * rng.standard_normal(a.shape))).astype(np.float32) for a in args]
             for _ in range(4)]
    quantize_graph(fp32, int8, feeds)
    feed = {k: a.numpy() for k, a in zip(inputs, args)}
    return {precision: (lambda s=ort_session(path, threads): s.run(None, feed))
            for precision, path in (("fp32", fp32), ("int8", int8))}


def measure(model: RAR, name: str, size: int, runs: int, rounds: int, threads: int) -> dict:
    """One entry point's GMAC, its part's parameters, and ms per call for each of ``LOWERINGS``."""
    args = entry_args(model, name, size)
    module = EntryPoint(model, name).eval()
    row: dict = {"gmac": entry_macs(model, name, size, size) / 1e9,
                 "params": sum(p.numel() for p in getattr(model, PARTS[name]).parameters())}
    inputs = list(signatures(model.config)[name]["inputs"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calls = {f"xnnpack {p}": xnnpack_call(module, args, p == "int8", folder) for p in ("fp32", "int8")}
        calls.update({f"onnxruntime {p}": call
                      for p, call in ort_calls(module, name, args, inputs, folder, threads).items()})
        for lowering, call in calls.items():
            row[lowering] = min(median_ms(call, runs) for _ in range(rounds))
    return row


def loop_ms(entries: dict[str, dict]) -> dict[str, float]:
    """A 2-step loop's ms per lowering (``LOOP_CALLS``), and int8 with a float assessor, per runtime."""
    out = {lowering: sum(n * entries[e][lowering] for e, n in LOOP_CALLS.items()) for lowering in LOWERINGS}
    calls, assess = LOOP_CALLS["assess"], entries["assess"]
    for runtime in ("xnnpack", "onnxruntime"):
        out[f"{runtime} int8, float assess"] = (out[f"{runtime} int8"]
                                               + calls * (assess[f"{runtime} fp32"] - assess[f"{runtime} int8"]))
    return out


def print_tables(rows: dict[str, dict[str, dict]], size: int, runs: int, rounds: int) -> None:
    print(f"{size}² tile: ms per call (best of {rounds} medians of {runs} calls); ×: fp32 time / int8 time")
    print("| model | entry | params | GMAC | XNNPACK fp32 | XNNPACK int8 | × | onnxruntime fp32 | onnxruntime int8 "
          "| × |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, entries in rows.items():
        for e, r in entries.items():
            if e == "loop":
                continue
            print(f"| {model} | {e} | {r['params'] / 1e3:.0f} k | {r['gmac']:.3f} | {r['xnnpack fp32']:.2f} | "
                  f"{r['xnnpack int8']:.2f} | {r['xnnpack fp32'] / r['xnnpack int8']:.2f} | "
                  f"{r['onnxruntime fp32']:.2f} | {r['onnxruntime int8']:.2f} | "
                  f"{r['onnxruntime fp32'] / r['onnxruntime int8']:.2f} |")
    loops = {m: e["loop"] for m, e in rows.items() if "loop" in e}
    if not loops:
        return
    print("\n2-step loop (1 encode, 3 assess, 2 restore, 1 decode; sums of the calls above, ms); ×: fp32 / int8")
    print("| model | runtime | fp32 | int8, float assess | × | int8 | × |")
    print("|---|---|---|---|---|---|---|")
    for model, lp in loops.items():
        for rt, label in (("xnnpack", "XNNPACK"), ("onnxruntime", "onnxruntime")):
            fp32, mixed, int8 = lp[f"{rt} fp32"], lp[f"{rt} int8, float assess"], lp[f"{rt} int8"]
            print(f"| {model} | {label} | {fp32:.1f} | {mixed:.1f} | {fp32 / mixed:.2f} | {int8:.1f} | "
                  f"{fp32 / int8:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="rar-edge-s,rar-edge-s-conv", help="comma-separated preset names")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="PRESET=DIR",
                    help="take this preset's weights from a checkpoint (repeatable)")
    ap.add_argument("--entries", default="restore", help=f"comma-separated entry points ({', '.join(ENTRY_POINTS)})")
    ap.add_argument("--size", type=int, default=512, help="tile side in pixels")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime's intra-op threads")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporter narrates every stage
    if any("=" not in x for x in a.checkpoint):
        raise SystemExit(f"--checkpoint takes PRESET=DIR, got {a.checkpoint}")
    checkpoints = dict(x.split("=", 1) for x in a.checkpoint)
    presets = a.presets.split(",")
    if set(checkpoints) - set(presets):
        raise SystemExit(f"--checkpoint names presets not in --presets: {sorted(set(checkpoints) - set(presets))}")
    entries = a.entries.split(",")
    if set(entries) - set(ENTRY_POINTS):
        raise SystemExit(f"--entries takes entry points from {', '.join(ENTRY_POINTS)} separated by commas, "
                         f"got {a.entries!r}")
    rows: dict[str, dict[str, dict]] = {}
    try:
        for name in presets:
            model = load(name, checkpoints.get(name))
            rows[name] = {e: measure(model, e, a.size, a.runs, a.rounds, a.threads) for e in entries}
            if set(entries) == set(ENTRY_POINTS):
                rows[name]["loop"] = loop_ms(rows[name])
    except (KeyError, ValueError) as e:  # an unknown preset, a size that is not a multiple of 16
        raise SystemExit(str(e.args[0])) from None
    print_tables(rows, a.size, a.runs, a.rounds)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
