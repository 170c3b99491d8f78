"""int8 ONNX graphs quantized by onnxruntime's own quantizer, from the float graphs (``--int8-graph ort``).

Why: the QAT programs' QDQ graph (export/onnx_int8.py) keeps quantize/dequantize pairs around every gate, add
and slice, which onnxruntime runs as separate float nodes: its int8 graphs of rar-edge-s ran 0.82-0.88x the
fp32 time on a 2-core Xeon. ``onnxruntime.quantization.quantize_static`` places them where its QLinear kernels
want them: 0.65-0.72x (BENCHMARKS.md, "int8 ONNX graphs by onnxruntime's own quantizer").

How: each quantized entry point is exported in float (a distilled student's QAT-trained weights), then
``quant_pre_process`` + ``quantize_static``: QDQ, uint8 activations, int8 weights per output channel (8 bits,
or 7 with ``reduce_range`` for x86 CPUs without VNNI, whose uint8 x int8 kernels can saturate on 8-bit
weights: export/onnx_int8.py), MinMax ranges over the inputs the int8 programs themselves
feed that entry point along the loop: photos clean and degraded for ``encode``, every step's latent and
embedding for ``restore``, every step's latent for ``decode``. The export's parity check then holds these
graphs to the int8 bounds against the QAT programs, like any other bundle.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import WEIGHT_BITS
from .onnx_int8 import weight_bits_text
from .parity import Runner, photo_crops, top_left_crop

#: Calibration photos when no ``--calib`` folder is given: scikit-image's, less those parity checks run on
#: (parity.PARITY_PHOTOS' first two; tests/test_onnx_static.py checks).
CALIB_PHOTOS = ("skimage_chelsea", "skimage_rocket", "skimage_camera", "skimage_coins", "skimage_brick",
                "skimage_grass", "skimage_gravel", "skimage_stereo_motorcycle")
#: The entry points onnxruntime's quantizer makes. Not the assessor: where a recipe quantizes it (rar-edge-s's
#: keeps it float), its score steers the loop, and MinMax ranges moved it by 3 dB on the test suite's model
#: (the parity bound is 0.5 dB); there the int8 program's own graph is exported.
ORT_QUANTIZED = ("encode", "restore", "decode")
#: Restore steps run per calibration image (the loop's usual depth; later steps' latents are like these).
CALIB_STEPS = 3
#: Ops that may stand between a graph's last convolution/linear and its output (float_tail): elementwise
#: ones, and the reshapes that broadcast a linear's output onto the image.
TAIL_OPS = ("Add", "Mul", "Sub", "Unsqueeze", "Reshape")


def float_tail(graph) -> list[str]:
    """Names of the nodes between the graph's outputs and the last convolutions/linears before them: the
    residual adds and gains that write the output. Quantizing them rounds the output itself (a latent to
    8 bits, once per loop step): on 128-px crops of rar-edge-s that moved the loop's assessed quality by
    0.60 dB (bound 0.5); in float, 0.32 dB, at the cost of a few elementwise ops at the output's size."""
    made_by = {o: n for n in graph.node for o in n.output}
    tail, todo = [], [o.name for o in graph.output]
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.op_type not in TAIL_OPS or node.name in tail:
            continue
        tail.append(node.name)
        todo.extend(node.input)
    return tail


def compact(model) -> None:
    """Shorten what onnxruntime's quantizer writes around the weights: every tensor but the graph's inputs and
    outputs gets a short name, identical scalar initializers (the scales and zero points of its quantize/
    dequantize pairs, one per pair) are kept once, its quantize/dequantize nodes lose their names, and the
    shape annotations it adds (value_info) and the operator sets no node uses go (onnxruntime infers shapes
    again when it loads a graph). The compute nodes keep their names, which onnxruntime's profiler and errors
    show. Why: those names (e.g. ``model.restorer.mid.blocks.1.ffn_in.weight_DequantizeLinear_Output``) were
    about a sixth of an int8 graph's bytes, 0.10 of rar-edge-s's 0.69 MB restore step, and the repeated
    scalars, node names and operator sets another 0.5 %; values and ops are unchanged. It reads the top-level
    graph only: one with subgraphs (If, Loop) or local functions is refused (the exporter writes neither)."""
    from onnx import AttributeProto, numpy_helper

    graph = model.graph
    if model.functions or any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
                              for node in graph.node for a in node.attribute):
        raise ValueError("compact renames and drops names in the top-level graph only: this model has subgraphs "
                         "or local functions that could still use them")
    keep = {v.name for v in (*graph.input, *graph.output)} | {""}  # "": an optional input left out
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        new = names.setdefault(name, f"t{len(names):x}")
        if new in keep:  # a graph input or output named like the short names (the exporter's never are)
            raise ValueError(f"cannot shorten {name!r}: {new!r} names an input or output of the graph")
        return new

    first: dict[tuple, str] = {}  # (type, value) of a scalar initializer -> the name that stays
    for t in list(graph.initializer):
        if len(t.dims) == 0 and t.name not in keep:
            kept = first.setdefault((t.data_type, numpy_helper.to_array(t).tobytes()), t.name)
            if kept != t.name:
                names[t.name] = short(kept)
                graph.initializer.remove(t)
                continue
        t.name = short(t.name)
    for node in graph.node:
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.name = ""  # optional in ONNX; onnxruntime fuses most of these nodes away
    del graph.value_info[:]
    used = {node.domain for node in graph.node}
    for opset in list(model.opset_import):
        if opset.domain not in used and opset.domain not in ("", "ai.onnx"):
            model.opset_import.remove(opset)


def calibration_images(height: int, width: int, calib: str | None = None, count: int = 8,
                       seed: int = 0) -> np.ndarray:
    """(2 * count, 3, H, W) float32 in [0,1]: ``count`` photo crops, clean, then each degraded once (v2
    synthesis, a fixed seed). From ``calib``'s photos when given, else from ``CALIB_PHOTOS``."""
    import torch

    from rar_edge.data.degrade import degrade

    if calib is not None:
        from rar_edge.data.folder import PhotoFolder

        photos = PhotoFolder(calib).images[:count]
        clean = np.stack([top_left_crop(p, height, width) for p in photos])
    else:
        clean = photo_crops(height, width, count=count, names=CALIB_PHOTOS)
    degraded = degrade(torch.from_numpy(clean), seed=seed).degraded.numpy()
    return np.concatenate([clean, degraded]).astype(np.float32)


def calibration_feeds(reference: Runner, images: np.ndarray, steps: int = CALIB_STEPS) -> dict[str, list[list]]:
    """Per entry point, the input lists the ``reference`` programs feed it along a ``steps``-step loop from
    each image (one image at a time: fixed-shape graphs take batch 1). ``assess`` and ``decode`` both get
    every latent of the loop (the input's and each step's)."""
    feeds: dict[str, list[list[np.ndarray]]] = {"encode": [], "restore": [], "decode": []}
    for x in images:
        x = x[None]
        feeds["encode"].append([x])
        (z,) = reference("encode", [x])
        feeds["decode"].append([z])
        for _ in range(steps):
            _, _, cond = reference("assess", [z])
            feeds["restore"].append([z, cond])
            (z,) = reference("restore", [z, cond])
            feeds["decode"].append([z])
    feeds["assess"] = feeds["decode"]
    return feeds


def quantize_graph(src: Path, dst: Path, feeds: list[list[np.ndarray]],
                   weight_bits: int = WEIGHT_BITS[0]) -> None:
    """Quantize the float graph ``src`` into ``dst`` (module docstring), calibrated on ``feeds``, with
    ``weight_bits``-bit weights (8, or 7: ``reduce_range``)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph = onnx.load(str(src)).graph
    weights = {t.name for t in graph.initializer}
    names = [i.name for i in graph.input if i.name not in weights]  # the graph's runtime inputs, in order

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            x = next(self.it, None)
            return None if x is None else dict(zip(names, x, strict=True))

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=weight_bits == WEIGHT_BITS[1],
                        nodes_to_exclude=float_tail(onnx.load(str(pre)).graph))
    model = onnx.load(str(dst))
    compact(model)
    onnx.save(model, str(dst))


def quantize_bundle(bundle: Path, files: list[str], quantized: list[str], reference: Runner,
                    images: np.ndarray, calib: str | None = None,
                    weight_bits: int = WEIGHT_BITS[0]) -> dict:
    """Quantize the ``quantized`` entry points' float graphs in ``bundle`` in place; returns the manifest's
    ``quantization`` fields that describe it (``calib``: the folder the crops came from, named by its last
    part only, so that no machine path enters a bundle)."""
    feeds = calibration_feeds(reference, images)
    for name in files:
        entry = Path(name).stem
        if entry in quantized:
            path = bundle / name
            quantize_graph(path, path, feeds[entry], weight_bits)
    return {"graph": f"onnxruntime quantize_static (QDQ) of the float graphs of {', '.join(quantized)}",
            "onnx_activations": "uint8 asymmetric, per tensor (MinMax over the int8 programs' own inputs "
                                f"along {CALIB_STEPS}-step loops from {len(images)} photo crops of "
                                f"{repr(Path(calib).name) + ' (--calib)' if calib else 'scikit-image sample photos'}); "
                                "the elementwise tail that writes each output kept float",
            "onnx_weights": f"int8 symmetric, per output channel, {weight_bits_text(weight_bits)}"}
