"""export/onnx_static.py: what the default int8 ONNX graphs are calibrated on (the export itself: test_export.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rar_edge.export.onnx_static import CALIB_PHOTOS, calibration_feeds, calibration_images
from rar_edge.export.parity import PARITY_PHOTOS, photo_crops

from conftest import load_bench


def test_calibration_images_are_other_photos_than_parity_clean_then_degraded():
    images = calibration_images(32, 48, count=3)
    assert images.shape == (6, 3, 32, 48) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images[:3], photo_crops(32, 48, count=3, names=CALIB_PHOTOS))
    assert all(np.abs(images[i + 3] - images[i]).mean() > 1e-3 for i in range(3))  # each degraded copy differs
    parity = photo_crops(32, 48, count=2)  # what the parity check runs on (the first one or two photos)
    assert not set(CALIB_PHOTOS) & set(PARITY_PHOTOS[:2])
    assert np.abs(images[:, None] - parity[None]).reshape(6, 2, -1).mean(-1).min() > 1e-3
    np.testing.assert_array_equal(calibration_images(32, 48, count=3), images)  # a fixed seed: the same bytes


def test_calibration_images_from_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    images = calibration_images(64, 64, calib=str(tmp_path), count=8)
    assert images.shape == (4, 3, 64, 64)  # only the folder's 2 photos, each clean and degraded
    first = np.asarray(Image.open(tmp_path / "0.png"), np.float32)[:64, :64].transpose(2, 0, 1) / 255
    np.testing.assert_allclose(images[0], first, atol=1e-6)


def test_calibration_feeds_follow_the_loop():
    """Each entry point gets the inputs the reference programs feed it along a 3-step loop, one image at a time."""
    calls = []

    def reference(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(name)
        x = inputs[0]
        if name == "encode":
            return [x[:, :2] * 10]
        if name == "assess":
            return [x.mean((1, 2, 3)), x[:, :1, 0, 0], x.sum((2, 3))]
        return [x + 1]  # restore: one step adds 1

    images = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    feeds = calibration_feeds(reference, images, steps=3)
    assert [len(feeds[k]) for k in ("encode", "assess", "restore", "decode")] == [2, 8, 6, 8]
    assert calls[:8] == ["encode", "assess", "restore", "assess", "restore", "assess", "restore", "encode"]
    np.testing.assert_array_equal(feeds["encode"][1][0], images[1:2])
    z0 = images[:1, :2] * 10
    # assess and decode see the encoded latent and every step's; restore the latent before each step and its
    # embedding
    for k in range(4):
        np.testing.assert_allclose(feeds["decode"][k][0], z0 + k)
        np.testing.assert_allclose(feeds["assess"][k][0], z0 + k)
    for k in range(3):
        z, cond = feeds["restore"][k]
        np.testing.assert_allclose(z, z0 + k)
        np.testing.assert_allclose(cond, (z0 + k).sum((2, 3)))


def test_global_pools_rewrites_only_means_over_height_and_width():
    """ReduceMean over (H, W) with kept dims becomes GlobalAveragePool, the same values; means over channels,
    or that drop the dims, stay (export/onnx.py, global_pools)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rar_edge.export.onnx import global_pools

    def graph_of(axes: list[int], keepdims: int):
        nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)]
        out_shape = [1, 3, 1, 1] if axes == [2, 3] and keepdims else None
        return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                                 [numpy_helper.from_array(np.array(axes, np.int64), "axes")])

    x = np.random.default_rng(0).random((1, 3, 5, 7), dtype=np.float32)

    def run(graph) -> np.ndarray:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        onnx.checker.check_model(model)
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    graph = graph_of([2, 3], 1)
    before = run(graph)
    assert global_pools(graph) == 1
    assert [n.op_type for n in graph.node] == ["GlobalAveragePool"] and not graph.initializer  # axes dropped
    np.testing.assert_allclose(run(graph), before, rtol=1e-6)
    np.testing.assert_allclose(before, x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)
    for axes, keepdims in (([1], 1), ([2, 3], 0), ([3], 1)):
        graph = graph_of(axes, keepdims)
        assert global_pools(graph) == 0 and graph.node[0].op_type == "ReduceMean"


def test_quantized_graphs_have_short_names_and_compute_the_same(tmp_path, monkeypatch):
    """compact: the quantizer's long tensor and quantize/dequantize node names become short ones, its value_info
    goes; the graph's inputs and outputs and its compute nodes keep their names, and it computes the same."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    import rar_edge.export.onnx_static as onnx_static

    rng = np.random.default_rng(0)
    weight_name = "model.restorer.mid.blocks.1.ffn_in.weight"
    graph = helper.make_graph([helper.make_node("Conv", ["latent", weight_name], ["hidden"], name="node_conv2d"),
                               # two gates: their quantized outputs share a zero point (0), written twice
                               helper.make_node("Sigmoid", ["hidden"], ["gate"], name="node_sigmoid"),
                               helper.make_node("Conv", ["gate", "w2"], ["hidden2"], name="node_conv2d_1"),
                               helper.make_node("Sigmoid", ["hidden2"], ["velocity"], name="node_sigmoid_1")], "g",
                              [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("velocity", TensorProto.FLOAT, [1, 6, 8, 8])],
                              [numpy_helper.from_array(rng.standard_normal((6, 4, 1, 1)).astype(np.float32),
                                                       weight_name),
                               numpy_helper.from_array(rng.standard_normal((6, 6, 1, 1)).astype(np.float32), "w2")])
    src, short, long = tmp_path / "float.onnx", tmp_path / "int8.onnx", tmp_path / "int8_long_names.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    feeds = [[rng.standard_normal((1, 4, 8, 8)).astype(np.float32)] for _ in range(4)]
    onnx_static.quantize_graph(src, short, feeds)
    compact = onnx_static.compact
    monkeypatch.setattr(onnx_static, "compact", lambda model: None)  # the same quantization, names as written
    onnx_static.quantize_graph(src, long, feeds)
    model, long_named = onnx.load(str(short)), onnx.load(str(long))
    tensors = {t.name for t in model.graph.initializer} | {x for n in model.graph.node for x in (*n.input, *n.output)}
    assert {"latent", "velocity"} <= tensors and all(len(x) <= 4 for x in tensors - {"latent", "velocity", ""})
    assert any(len(t.name) > 40 for t in long_named.graph.initializer)  # what the quantizer writes
    assert not model.graph.value_info and long_named.graph.value_info
    assert "node_conv2d" in {n.name for n in model.graph.node}
    assert all(n.name == "" for n in model.graph.node if n.op_type.endswith("QuantizeLinear"))
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in long_named.graph.node]
    # Each scalar (the pairs' scales and zero points) once: the quantizer writes the activations' ones per pair.
    scalars = [(t.data_type, numpy_helper.to_array(t).tobytes()) for t in model.graph.initializer if not t.dims]
    long_scalars = [(t.data_type, numpy_helper.to_array(t).tobytes()) for t in long_named.graph.initializer
                    if not t.dims]
    assert len(set(scalars)) == len(scalars) == len(set(long_scalars)) < len(long_scalars)
    assert {o.domain for o in model.opset_import} == {""} < {o.domain for o in long_named.opset_import}

    def run(m, x):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"latent": x})[0]

    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(model, x), run(long_named, x))
    clash = onnx.load(str(long))  # an input named like a short name: refused, not silently merged
    clash.graph.input[0].name = "t1"
    for node in clash.graph.node:
        node.input[:] = ["t1" if i == "latent" else i for i in node.input]
    with pytest.raises(ValueError, match="names an input or output"):
        compact(clash)
    branch = helper.make_graph([helper.make_node("Identity", ["velocity"], ["out"])], "branch", [],
                               [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    nested = onnx.load(str(long))  # a subgraph could read names compact renames or drops: refused
    nested.graph.node.append(helper.make_node("If", ["cond"], ["chosen"], then_branch=branch, else_branch=branch))
    with pytest.raises(ValueError, match="top-level graph only"):
        compact(nested)


def test_half_weights_stores_float16_and_computes_with_their_values(tmp_path):
    """Weights of 64 elements or more become float16 initializers read through a Cast; smaller ones stay float32.
    onnxruntime computes exactly what the float graph computes with the weights rounded to float16, and folds
    the Casts away when it opens the session (none runs per call)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rar_edge.export.onnx import half_weights

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32)

    def model_of(weight: np.ndarray):
        graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 9, 9])],
                                  [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(b, "b")])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def run(model, x, optimized=None):
        opts = ort.SessionOptions()
        if optimized:
            opts.optimized_model_filepath = optimized
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    model = model_of(w)
    assert half_weights(model) == w.nbytes // 2
    onnx.checker.check_model(model)
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    assert kinds == {"b": TensorProto.FLOAT, "half0": TensorProto.FLOAT16}  # the 8-element bias stays float32
    assert [n.op_type for n in model.graph.node] == ["Cast", "Conv"] and model.graph.node[0].output[0] == "w"
    x = rng.random((1, 3, 9, 9), dtype=np.float32)
    clash = model_of(w)  # a graph whose own tensors are named like the short names: they stay theirs
    clash.graph.initializer[1].name = clash.graph.node[0].input[2] = "half0"  # the bias
    clash.graph.node[0].output[0] = clash.graph.output[0].name = "half1"  # the graph's output
    half_weights(clash)
    onnx.checker.check_model(clash)
    assert sorted(t.name for t in clash.graph.initializer) == ["half0", "half2"]
    assert clash.graph.node[0].input == ["half2"] and clash.graph.node[0].output == ["w"]
    np.testing.assert_allclose(run(clash, x), run(model, x), rtol=0, atol=0)
    rounded = model_of(w.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(run(model, x), run(rounded, x), rtol=1e-6, atol=1e-6)
    assert np.abs(run(model, x) - run(model_of(w), x)).max() > 0  # the rounding is real, and small:
    np.testing.assert_allclose(run(model, x), run(model_of(w), x), rtol=0, atol=1e-2)
    run(model, x, optimized=str(tmp_path / "opt.onnx"))
    assert "Cast" not in {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}


def test_quantize_graph_weight_width(tmp_path):
    """onnxruntime's quantizer keeps full 8-bit conv weights by default and 7 bits with weight_bits=7
    (--reduce-range); the quantized graph computes close to the float one, except 8-bit weights on an x86 CPU
    without VNNI, whose kernels saturate on them (why exports there default to 7 bits): there the 8-bit graph
    is the further from the float one."""
    from rar_edge.runtime.backends import x86_without_vnni

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rar_edge.export.onnx_static import quantize_graph

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [numpy_helper.from_array(w, "w")])
    src = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    feeds = [[rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)] for _ in range(4)]
    x = feeds[0][0]
    y_float = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    error: dict[int, float] = {}
    for bits in (8, 7):
        dst = tmp_path / f"int{bits}.onnx"
        quantize_graph(src, dst, feeds, weight_bits=bits)
        weights = [numpy_helper.to_array(t) for t in onnx.load(str(dst)).graph.initializer
                   if t.data_type == TensorProto.INT8 and t.dims and len(t.dims) == 4]
        largest = max(int(np.abs(q.astype(int)).max()) for q in weights)
        assert largest == (127 if bits == 8 else 64), (bits, largest)  # symmetric: [-127, 127] or [-64, 64]
        y = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        error[bits] = float(np.abs(y - y_float).max())
        if bits == 7 or not x86_without_vnni():
            assert error[bits] < 0.05 * np.abs(y_float).max(), bits
    if x86_without_vnni():
        assert error[8] > error[7], error


def test_assess_trunk_experiment_keeps_what_reads_the_detail_statistics_float():
    from onnx import helper

    trunk = load_bench("onnx_assess_trunk")
    nodes = [helper.make_node("Conv", ["z", "w.stem"], ["a"], name="stem"),
             helper.make_node("Conv", ["z", "model.assessor.detail.deviation0"], ["d"], name="dev"),
             helper.make_node("Log", ["d"], ["l"], name="log"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Concat", ["r", "l"], ["c"], name="cat", axis=1)]
    graph = helper.make_graph(nodes, "g", [], [])
    assert trunk.downstream(graph, [nodes[1]]) == {"dev", "log", "cat"}
    assert trunk.downstream(graph, [nodes[0]]) == {"stem", "relu", "cat"}


def test_half_weights_names_avoid_the_names_of_subgraphs():
    """A subgraph may not shadow an outer name: the short names skip what an If node's branches use."""
    from onnx import TensorProto, helper

    from rar_edge.export.onnx import _names

    def branch(name: str, out: str):
        return helper.make_graph([helper.make_node("Identity", ["x"], [out])], name, [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1])])

    node = helper.make_node("If", ["c"], ["y"], then_branch=branch("t", "half0"), else_branch=branch("e", "inner"))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert _names(graph) == {"c", "y", "x", "half0", "inner"}
