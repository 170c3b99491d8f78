"""rar_edge.quantize: quantization-aware distillation into an int8 student (the pipeline's second stage; see issue 3)."""
