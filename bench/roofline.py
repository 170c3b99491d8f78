"""This machine's fp32 and int8 convolution throughput, and how close each entry point of a bundle gets to it.

    python bench/roofline.py [--onnx INT8_ONNX_BUNDLE] [--executorch INT8_ET_BUNDLE] [--runs 20] [--threads 2]

XNNPACK runs on its own thread pool (all cores); ``--threads`` sets onnxruntime's.

1. Kernel throughput: three single-layer models shaped like rar-edge-s's latent at a 512² tile (128², the
   restorer's layers): a dense 3x3 conv 64->64, a pointwise 1x1 conv 64->128 (most of a NAF block's MACs)
   and a depthwise 3x3 conv on 128 channels (few MACs, memory-bound), each in fp32 and int8 on
   - XNNPACK through a one-method .pte (int8: the project's PT2E XNNPACK quantizer, post-training);
   - onnxruntime's CPU provider (int8: the int8 ONNX export's ``quantize_graph``, export/onnx_static.py:
     ``quantize_static``, QDQ, uint8 activations, per-channel 8-bit int8 weights by default).
2. Per entry point of the given bundles (fixed tile): conv + linear MACs (rar_edge.model.count_complexity)
   over the median time of one call, against the best int8 kernel throughput of its runtime.

Median of ``--runs`` calls after 3 warm-up calls, random inputs (costs do not depend on values). A
measurement for BENCHMARKS.md ("Roofline"), not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import median_ms, ort_session  # noqa: E402  (the same session options and timing)

LATENT = 128  # latent side at a 512 tile (stride 4)
LAYERS: dict[str, Callable[[], nn.Module]] = {
    "conv 3x3 64->64": lambda: nn.Conv2d(64, 64, 3, padding=1),
    "conv 1x1 64->128": lambda: nn.Conv2d(64, 128, 1),
    "depthwise 3x3 x128": lambda: nn.Conv2d(128, 128, 3, padding=1, groups=128),
}


def conv_macs(layer: nn.Conv2d, side: int) -> int:
    kh, kw = layer.kernel_size
    return layer.out_channels * side * side * (layer.in_channels // layer.groups) * kh * kw


# --- XNNPACK through ExecuTorch ---

def xnnpack_call(module: nn.Module, args: tuple[torch.Tensor, ...], int8: bool, folder: Path) -> Callable[[], object]:
    """``module`` on ``args`` as a one-method .pte through XNNPACK; int8: post-training PT2E quantization with
    the project's XNNPACK quantizer, calibrated on four perturbed copies of ``args`` (the calibration sets
    scales, not the kernels run: the timings do not depend on it)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from rar_edge.quantize.quantizers import make_quantizer

    module = module.eval()
    if int8:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        prepared = prepare_pt2e(torch.export.export(module, args).module(), make_quantizer("xnnpack", qat=False))
        for _ in range(4):
            prepared(*(a + 0.1 * a.std() * torch.randn_like(a) for a in args))
        module = convert_pt2e(prepared)
    program = to_edge_transform_and_lower(torch.export.export(module, args),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    path = folder / f"xnnpack_{'int8' if int8 else 'fp32'}_{id(module)}.pte"
    path.write_bytes(program.buffer)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda: method.execute(list(args))


# --- onnxruntime ---

def ort_call(layer: nn.Conv2d, x: torch.Tensor, int8: bool, folder: Path, threads: int) -> Callable[[], object]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = layer.weight.detach().numpy()
    b = layer.bias.detach().numpy()
    shape = list(x.shape)
    out_shape = [1, layer.out_channels, shape[2], shape[3]]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[layer.padding[0]] * 4, group=layer.groups,
                            kernel_shape=list(layer.kernel_size))
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    fp32 = folder / f"layer_fp32_{id(layer)}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    path = fp32
    if int8:
        from rar_edge.export.onnx_static import quantize_graph  # the int8 ONNX export's own settings

        path = folder / f"layer_int8_{id(layer)}.onnx"
        quantize_graph(fp32, path, [[np.random.default_rng(i).standard_normal(shape, dtype=np.float32)]
                                    for i in range(4)])
    sess = ort_session(path, threads)
    feed = {"x": x.numpy()}
    return lambda: sess.run(None, feed)


def kernel_table(runs: int, threads: int) -> dict:
    # torch's own thread pool stays at one thread: XNNPACK (ExecuTorch) runs its own pool, and torch's
    # threads, left spinning by the export and calibration, took cores from it (measured: the dense int8
    # conv ran 55.7 GMAC/s with torch at 2 threads, 85.9 at 1). ``threads`` is onnxruntime's.
    torch.set_num_threads(1)
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, make in LAYERS.items():
            torch.manual_seed(0)
            layer = make()
            x = torch.randn(1, layer.in_channels, LATENT, LATENT)
            gmac = conv_macs(layer, LATENT) / 1e9
            row = {}
            for runtime in ("xnnpack", "onnxruntime"):
                for int8 in (False, True):
                    call = (xnnpack_call(layer, (x,), int8, folder) if runtime == "xnnpack"
                            else ort_call(layer, x, int8, folder, threads))
                    ms = median_ms(call, runs)
                    row[f"{runtime} {'int8' if int8 else 'fp32'}"] = {"ms": ms, "gmac_s": gmac / (ms / 1000)}
            rows[name] = {"gmac": gmac, **row}
    return rows


def entry_table(bundle: Path, runs: int, threads: int) -> dict:
    """Per entry point of an exported bundle (fixed tile): GMAC, median ms and GMAC/s."""
    from rar_edge.manifest import verify_bundle
    from rar_edge.model import ENTRY_POINTS, create_model
    from rar_edge.model.complexity import entry_macs
    from rar_edge.runtime.backends import open_backend

    manifest = verify_bundle(bundle)
    h, w = manifest["input_shape"]
    model = create_model(manifest["preset"])
    options = {"threads": threads} if manifest["target"] == "onnx" else {}
    backend = open_backend(bundle, manifest, **options)
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, h, w), dtype=np.float32)
    z = backend.run("encode", [image])[0]
    cond = backend.run("assess", [z])[2]
    inputs = {"encode": [image], "assess": [z], "restore": [z, cond], "decode": [z]}
    rows = {}
    for entry in ENTRY_POINTS:
        gmac = entry_macs(model, entry, h, w) / 1e9
        ms = median_ms(lambda: backend.run(entry, inputs[entry]), runs)
        rows[entry] = {"gmac": gmac, "ms": ms, "gmac_s": gmac / (ms / 1000)}
    return {"tile": f"{h}x{w}", "precision": manifest["precision"], "target": manifest["target"], "entries": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", type=Path, help="an int8 ONNX bundle with a fixed tile")
    ap.add_argument("--executorch", type=Path, help="an int8 ExecuTorch bundle with a fixed tile")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime's intra-op threads")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    kernels = kernel_table(args.runs, args.threads)
    columns = ["xnnpack fp32", "xnnpack int8", "onnxruntime fp32", "onnxruntime int8"]
    print(f"Kernel throughput, GMAC/s (ms), one layer at {LATENT}x{LATENT}, onnxruntime at {args.threads} threads")
    print("| layer | GMAC | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, row in kernels.items():
        print(f"| {name} | {row['gmac']:.3f} | "
              + " | ".join(f"{row[c]['gmac_s']:.1f} ({row[c]['ms']:.2f})" for c in columns) + " |")
    result = {"kernels": kernels, "bundles": {}}
    for runtime, bundle in (("xnnpack", args.executorch), ("onnxruntime", args.onnx)):
        if bundle is None:
            continue
        table = result["bundles"][runtime] = entry_table(bundle, args.runs, args.threads)
        peak = max(row[f"{runtime} int8"]["gmac_s"] for row in kernels.values())
        print(f"\n{bundle.name} ({table['precision']}, tile {table['tile']}): against {runtime}'s best int8 "
              f"kernel, {peak:.1f} GMAC/s")
        print("| entry point | GMAC | ms | GMAC/s | of the int8 peak |")
        print("|---|---|---|---|---|")
        for entry, row in table["entries"].items():
            print(f"| {entry} | {row['gmac']:.3f} | {row['ms']:.2f} | {row['gmac_s']:.1f} | "
                  f"{100 * row['gmac_s'] / peak:.0f}% |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
