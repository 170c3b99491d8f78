"""rar_edge.export: ExecuTorch, Core ML and ONNX bundles (the pipeline's third stage; see issue 4)."""

#: How an int8 ONNX bundle's graphs are made: onnxruntime's quantizer from the float graphs (export/onnx_static.py),
#: or the int8 programs' own QDQ graph re-typed (export/onnx_int8.py). The first is the default (docs/export.md).
INT8_GRAPHS = ("ort", "qat")
#: Weight widths of int8 ONNX graphs: full 8-bit int8 or 7 bits (``--reduce-range``, onnxruntime's
#: ``reduce_range``, for x86 CPUs without VNNI: export/onnx_int8.py). ``default_weight_bits`` picks one.
WEIGHT_BITS = (8, 7)


def default_weight_bits() -> int:
    """The int8 ONNX weight width an export takes unless told: 7 bits on an x86 CPU without VNNI, 8 elsewhere.

    Why the exporting machine decides: the export's parity check runs the graphs on this CPU's onnxruntime,
    and on x86 without VNNI its uint8 x int8 kernels saturate on full 8-bit weights (the shipped student's
    loop parity fell to 31 dB, bound 35, on an AMD EPYC with AVX2 only): an 8-bit bundle could not be checked
    here, nor run well. ``--full-range`` keeps 8 bits for devices that multiply them exactly (VNNI, ARM).
    """
    from rar_edge.runtime.backends import x86_without_vnni

    return WEIGHT_BITS[1] if x86_without_vnni() else WEIGHT_BITS[0]
