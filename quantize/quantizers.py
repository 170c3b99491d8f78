"""The PT2E quantizer per deployment backend, and the recorded description of its configuration."""

from __future__ import annotations

import functools

BACKENDS = ("xnnpack", "coreml")


def make_quantizer(backend: str, qat: bool = True):
    """The quantizer used for ``backend``.

    Both backends use XNNPACK's quantizer (int8, symmetric per-channel weights, asymmetric
    per-tensor activations): its QDQ graph lowers to XNNPACK for ExecuTorch, to QDQ ONNX, and
    converts with coremltools to a Core ML int8 program too, so one QAT run serves every target.
    CoreMLQuantizer was the alternative for Core ML; it took about 40 s per part to prepare on
    this machine (TOOLCHAIN.md) against about 2 s, and Core ML int8 accuracy cannot be measured
    on Linux, where Core ML cannot predict. docs/quantization.md records the decision.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    return _quantizer_class()().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


@functools.cache
def _quantizer_class():
    """XNNPACKQuantizer that skips its conv + batch-norm patterns on graphs without batch norm (RAR's have
    none). Each of those four patterns is traced anew with torch.export on every annotation: about 1.8 s per
    graph on this machine (a post-training int8 export of rar-tiny 33.8 -> 28.3 s; BENCHMARKS.md), to match
    nothing. Built once, on first use: executorch's import is heavy."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class NoBatchNormXNNPACKQuantizer(XNNPACKQuantizer):
        def annotate(self, model):
            has_bn = any(n.op == "call_function" and "batch_norm" in str(n.target) for n in model.graph.nodes)
            self.SUPPORTED_PATTERNS = XNNPACKQuantizer.SUPPORTED_PATTERNS if has_bn else [
                p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]
            return super().annotate(model)

    return NoBatchNormXNNPACKQuantizer


def describe(backend: str) -> dict:
    """What the quantized graphs hold, for the student's JSON and the export manifest."""
    return {
        "backend": backend, "quantizer": "XNNPACKQuantizer", "flow": "PT2E QAT (torchao.quantization.pt2e)",
        "weights": "int8 symmetric, per output channel", "activations": "int8 asymmetric, per tensor",
    }
