"""bench/onnx_static_int8.py: onnxruntime's static int8 quantization of an fp32 bundle, timed and checked."""

from __future__ import annotations

import re

from conftest import load_bench


def test_static_int8_graphs_are_quantized_smaller_and_close_to_fp32(bundles, photo_dir, tmp_path, capsys):
    import onnx

    bench = load_bench("onnx_static_int8")
    out = tmp_path / "static"
    assert bench.main([str(bundles["onnx"]), "--photos", str(photo_dir), "--side", "64", "--runs", "2",
                       "--threads", "1", "--out", str(out), "--int8", str(bundles["dynamic"])]) == 0
    for name in bench.ENTRIES:
        graph = onnx.load(str(out / f"{name}.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
        # uint8 activations (onnxruntime's fast U8S8 path) and int8 weights
        types = {t.data_type for t in graph.initializer}
        assert onnx.TensorProto.UINT8 in types and onnx.TensorProto.INT8 in types
        assert (out / f"{name}.onnx").stat().st_size < 0.6 * (bundles["onnx"] / f"{name}.onnx").stat().st_size
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| (encode|restore|decode) \|", line)]
    assert [r.split("|")[1].strip() for r in rows] == list(bench.ENTRIES)
    snr = [float(r.rstrip(" |").split("|")[-1]) for r in rows]
    assert all(s > 20 for s in snr), rows  # int8 rounding, not a broken graph (a wrong one is near 0 dB)
    assert all(float(r.split("|")[4]) > 0 for r in rows)  # --int8 timed beside (a dynamic bundle fits any tile)
