"""rar_edge.export: ExecuTorch, Core ML and ONNX bundles (the pipeline's third stage; see issue 4)."""
