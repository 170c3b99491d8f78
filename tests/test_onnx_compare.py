"""bench/onnx_compare.py: interleaved per-graph timings of several ONNX bundles, and per-operator profiles."""

from __future__ import annotations

import re
import sys

import numpy as np

from conftest import load_bench


def _bundle(folder, channels: int):
    """A one-graph 'bundle': restore.onnx, a 3x3 conv then a sigmoid, on a (1, 4, 32, 32) input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((channels, 4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 32, 32])], [numpy_helper.from_array(w, "w")])
    folder.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(folder / "restore.onnx"))
    return folder


def test_op_profile_names_the_graphs_ops(tmp_path):
    bench = load_bench("onnx_compare")
    ops = bench.op_profile(_bundle(tmp_path / "a", 8) / "restore.onnx", threads=1, runs=2)
    assert set(ops) <= {"Conv", "FusedConv", "Sigmoid", "ReorderInput", "ReorderOutput"} and ops
    assert all(ms > 0 for ms in ops.values())


def test_table_has_a_row_per_graph_and_thread_count_with_ratios_to_the_first(tmp_path, capsys, monkeypatch):
    bench = load_bench("onnx_compare")
    small, large = _bundle(tmp_path / "small", 4), _bundle(tmp_path / "large", 64)
    monkeypatch.setattr(sys, "argv", ["onnx_compare", str(small), str(large), "--graphs", "restore",
                                      "--threads", "1,2", "--rounds", "2", "--runs", "3", "--profile", "restore"])
    bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| restore |")]
    assert len(rows) == 2 and "| restore | 1 |" in rows[0] and "| restore | 2 |" in rows[1]
    for row in rows:
        base, other = [float(r) for r in re.findall(r"\(([\d.]+)\)", row)]
        assert base == 1.0 and other > 0  # the first bundle is the baseline (no timing claim: bench/ makes those)
    assert out.count("restore, 1 thread(s)") == 2 and out.count("restore, 2 thread(s)") == 2
