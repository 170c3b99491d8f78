"""Make the int8 ONNX graphs fast on onnxruntime's CPU provider, exactly or within the int8 parity bound.

The PT2E quantizer (XNNPACK's) gives signed int8 activations and full-range int8 weights. onnxruntime fuses
that QDQ graph into integer kernels, but on x86 its int8 x int8 (S8S8) convolutions are slow: the int8
bundle of rar-edge-s ran 1.6x *slower* than fp32 (BENCHMARKS.md, "Latency"). Its fast path is
uint8 activations x int8 weights (U8S8), and on CPUs without VNNI (AVX2 only) that path multiplies with
``vpmaddubsw``, whose int16 pair sums can saturate unless weights keep to 7 bits (onnxruntime's documented
``reduce_range``). So, per graph:
- every activation quantize/dequantize pair moves to uint8: the zero point + 128, the same scale; exact;
- with ``weight_bits=7`` (``--reduce-range``, for x86 CPUs without VNNI) every int8 weight moves to 7 bits:
  ``round(w / 2)`` at twice the scale (per channel). By default (8) the weights stay as the programs have
  them: CPUs with VNNI (x86 since 2019) and ARM multiply full-range int8 exactly, and halving is a rounding
  that an int8 assessor's score did not survive (BENCHMARKS.md, "Dense blocks throughout"). The export's
  parity check measures the result against the QAT programs either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import WEIGHT_BITS

#: Ops onnxruntime runs as integer kernels when fed by DequantizeLinear and followed by QuantizeLinear.
FUSABLE = ("Conv", "Gemm", "MatMul")


def weight_bits_text(weight_bits: int) -> str:
    """The manifest's words for a weight width."""
    return "7 bits (reduce_range, for x86 CPUs without VNNI)" if weight_bits == WEIGHT_BITS[1] else "8 bits"


def retype_for_onnxruntime(model, weight_bits: int = WEIGHT_BITS[0]) -> dict[str, int]:
    """Rewrite one int8 QDQ ``onnx.ModelProto`` in place (module docstring); returns what changed."""
    if weight_bits not in WEIGHT_BITS:
        raise ValueError(f"weight_bits {weight_bits} is not one of {WEIGHT_BITS}")
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    added: set[str] = set()  # new initializers: shared zero points and scales are rewritten once

    def add(name: str, value: np.ndarray) -> str:
        if name not in added:
            graph.initializer.append(numpy_helper.from_array(value, name))
            added.add(name)
        return name

    def is_int8(name: str) -> bool:
        return name in inits and inits[name].data_type == TensorProto.INT8

    # An int32 bias is quantized at (input scale x weight scale): halving the weights' resolution would need
    # its scale doubled too. The PT2E graphs keep biases in float; refuse anything else rather than guess.
    if any(n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
           and inits[n.input[0]].data_type == TensorProto.INT32 for n in graph.node):
        raise ValueError("int32-quantized biases: retype_for_onnxruntime handles float biases only")
    counts = {"activations": 0, "weights": 0}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        data, scale, zero = node.input[:3]
        weight = node.op_type == "DequantizeLinear" and is_int8(data) and data not in producer
        if weight:
            if weight_bits == WEIGHT_BITS[0]:  # full 8-bit weights: left as the programs have them
                continue
            w = numpy_helper.to_array(inits[data])
            if w.ndim < 2 or zero not in inits or scale not in inits or np.any(numpy_helper.to_array(inits[zero])):
                continue  # only symmetric conv/linear weights with constant parameters
            node.input[0] = add(f"{data}_int7", np.clip(np.round(w / 2), -64, 63).astype(np.int8))
            node.input[1] = add(f"{scale}_x2", (numpy_helper.to_array(inits[scale]) * 2).astype(np.float32))
            counts["weights"] += 1
        elif is_int8(zero):  # an activation: a Q of a float tensor, or the DQ right after it
            shifted = numpy_helper.to_array(inits[zero]).astype(np.int16) + 128
            node.input[2] = add(f"{zero}_u8", shifted.astype(np.uint8))
            counts["activations"] += 1
    used = {i for node in graph.node for i in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # the re-typed tensors' recorded int8 types; onnxruntime infers them again
    return counts


def fusion_report(path: Path) -> dict:
    """How many of a graph's quantized convolutions and linears (int8 in and out) onnxruntime turns into
    integer kernels on its CPU provider.

    Reads the graph onnxruntime optimises (``optimized_model_filepath``): an op still between a dequantize
    and a quantize there runs in float, slower than fp32; a fused one has become a QLinear* kernel.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(opts.optimized_model_filepath)

    def quantized_in_and_out(graph) -> int:
        """Convolutions/linears fed by a DequantizeLinear whose output goes into a QuantizeLinear: ops that run
        in float between the two (before fusion: every quantized one; after: those onnxruntime did not fuse)."""
        dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
        requantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        return sum(n.op_type in FUSABLE and n.input[0] in dequantized and n.output[0] in requantized
                   for n in graph.node)

    total = quantized_in_and_out(onnx.load(str(path)).graph)
    left = quantized_in_and_out(optimized.graph)
    return {"fusable": total, "integer": total - left, "float": left}
