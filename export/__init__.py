"""rar_edge.export: ExecuTorch, Core ML and ONNX bundles (the pipeline's third stage; see issue 4)."""

#: How an int8 ONNX bundle's graphs are made: onnxruntime's quantizer from the float graphs (export/onnx_static.py),
#: or the int8 programs' own QDQ graph re-typed (export/onnx_int8.py). The first is the default (docs/export.md).
INT8_GRAPHS = ("ort", "qat")
#: Weight widths of int8 ONNX graphs: full 8-bit int8 (the default) or 7 bits (``--reduce-range``, onnxruntime's
#: ``reduce_range``, for x86 CPUs without VNNI: export/onnx_int8.py).
WEIGHT_BITS = (8, 7)
