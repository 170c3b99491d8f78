"""The restore step per block kind: fp32 and int8 time on XNNPACK (ExecuTorch) and onnxruntime.

    python bench/restore_blocks.py [--presets rar-edge-s,rar-edge-s-conv] [--checkpoint rar-edge-s=DIR ...]
                                   [--size 512] [--runs 20] [--rounds 3] [--threads 2] [--json OUT]

Issue 23 asks why int8 gains so little over fp32; this measures the answer the restorer's design gives. Each
preset's restore entry point (latent and embedding of a ``--size`` tile) is lowered four ways: XNNPACK
through a one-method .pte, fp32 and int8 (post-training PT2E with the project's XNNPACK quantizer, the same
quantizer QAT uses, so the same int8 graph); onnxruntime's CPU provider, fp32 (the dynamo exporter, as
the ONNX export) and int8 (the int8 ONNX export's own ``quantize_graph``). Weights: a checkpoint's where
given, else the preset's initialisation perturbed (costs do not depend on values; zero-initialised layers
would let onnxruntime's optimiser drop them). The best of ``--rounds`` medians of ``--runs`` calls, each
runtime given the machine alone; torch itself runs at one thread (its pool slows XNNPACK's: roofline.py).
A measurement for BENCHMARKS.md ("A restorer of dense convolutions"), not a test.
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

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import median_ms, ort_session  # noqa: E402
from roofline import xnnpack_call  # noqa: E402

from rar_edge.export.onnx import OPSET  # noqa: E402
from rar_edge.export.onnx_static import quantize_graph  # noqa: E402
from rar_edge.model import RAR, create_model  # noqa: E402
from rar_edge.model.complexity import entry_macs  # noqa: E402
from rar_edge.model.entry_points import EntryPoint, example_inputs  # noqa: E402
from rar_edge.train.checkpoint import load_model  # noqa: E402


def load(preset: str, checkpoint: str | None) -> RAR:
    if checkpoint:
        model, cfg = load_model(checkpoint)
        if cfg["preset"] != preset:
            raise SystemExit(f"{checkpoint} holds a {cfg['preset']} model, not {preset}")
        return model.eval()
    torch.manual_seed(0)
    model = create_model(preset).eval()
    with torch.no_grad():
        for p in model.restorer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def ort_calls(step: EntryPoint, args: tuple[torch.Tensor, ...], folder: Path, threads: int) -> dict[str, Callable]:
    fp32 = folder / f"restore_fp32_{id(step)}.onnx"
    program = torch.onnx.export(step, args, dynamo=True, opset_version=OPSET, input_names=["z", "cond"],
                                output_names=["z_next"], verbose=False)
    program.save(str(fp32))  # as the ONNX export writes its graphs: weights inside the file
    int8 = folder / f"restore_int8_{id(step)}.onnx"
    rng = np.random.default_rng(0)
    feeds = [[(a.numpy() * (1 + 0.1 * rng.standard_normal(a.shape))).astype(np.float32) for a in args]
             for _ in range(4)]
    quantize_graph(fp32, int8, feeds)
    feed = {"z": args[0].numpy(), "cond": args[1].numpy()}
    return {precision: (lambda s=ort_session(path, threads): s.run(None, feed))
            for precision, path in (("fp32", fp32), ("int8", int8))}


def measure(model: RAR, size: int, runs: int, rounds: int, threads: int) -> dict:
    torch.manual_seed(1)
    z, cond = example_inputs(model, "restore", size, size)
    args = (0.3 * (2 * z - 1), cond.clamp(-1, 1))  # about the ranges a trained model's latents and embeddings have
    step = EntryPoint(model, "restore").eval()
    row: dict = {"gmac": entry_macs(model, "restore", size, size) / 1e9,
                 "params": sum(p.numel() for p in model.restorer.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calls = {f"xnnpack {p}": xnnpack_call(step, args, p == "int8", folder) for p in ("fp32", "int8")}
        calls.update({f"onnxruntime {p}": call for p, call in ort_calls(step, args, folder, threads).items()})
        for name, call in calls.items():
            row[name] = min(median_ms(call, runs) for _ in range(rounds))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="rar-edge-s,rar-edge-s-conv", help="comma-separated preset names")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="PRESET=DIR",
                    help="take this preset's weights from a checkpoint (repeatable)")
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
    try:
        rows = {name: measure(load(name, checkpoints.get(name)), a.size, a.runs, a.rounds, a.threads)
                for name in presets}
    except (KeyError, ValueError) as e:  # an unknown preset, a size that is not a multiple of 16
        raise SystemExit(str(e.args[0])) from None
    print(f"restore step, {a.size}² tile: ms (best of {a.rounds} medians of {a.runs} calls); fp32 / int8 time")
    print("| preset | restorer params | GMAC | XNNPACK fp32 | XNNPACK int8 | × | onnxruntime fp32 | onnxruntime int8 | × |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['params'] / 1e3:.0f} k | {r['gmac']:.3f} | {r['xnnpack fp32']:.2f} | "
              f"{r['xnnpack int8']:.2f} | {r['xnnpack fp32'] / r['xnnpack int8']:.2f} | {r['onnxruntime fp32']:.2f} | "
              f"{r['onnxruntime int8']:.2f} | {r['onnxruntime fp32'] / r['onnxruntime int8']:.2f} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
