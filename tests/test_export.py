"""Exporters: bundles, manifest, checksums, parity, argument checks and clean failures, for every target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import SCHEMA_VERSION, verify_bundle

from conftest import built_once, export_here, run_cli


def tone_files(suffix: str) -> list[str]:
    """The exposure stage's files every bundle carries (tests/test_tone_export.py), its graph's by suffix."""
    return [f"tone.{suffix}", "tone/config.json", "tone/tone.safetensors"]


def _export(*args: str):
    return run_cli("export", *args)


@pytest.fixture(scope="module")
def onnx_bundles(bundles, distilled, tmp_path_factory):
    """fp32 (dynamic; the runtime tests' bundle of the tiny checkpoint) and int8 ONNX bundles of the distilled
    student: by default (onnxruntime's quantizer on the float graphs; --dynamic; this CPU's default weight width:
    export.default_weight_bits) and from the QAT programs' own graph with 7-bit weights (--reduce-range; fixed
    64x64), the latter of the same student with its assessor kept float, as rar-edge-s's recipe keeps it (its
    config.json says so, as ``rar-edge distill --keep-float assess`` writes it: the export then takes the
    assessor's float weights)."""
    import shutil

    student = str(distilled[0] / "student")

    def build(out: Path) -> None:
        (out / "export.log").write_text(export_here("--target", "ort", "--checkpoint", student,
                                                    "--precision", "int8", "--dynamic", "-o", str(out)))
        float_assess = out / "student-float-assess"
        shutil.copytree(student, float_assess)
        config = json.loads((float_assess / "config.json").read_text())
        config["quantization"]["kept_float"] = ["assess"]
        config["quantization"]["quantized"] = ["encode", "restore", "decode"]
        (float_assess / "config.json").write_text(json.dumps(config))
        export_here("--target", "onnx", "--checkpoint", float_assess, "--precision", "int8", "--int8-graph", "qat",
                    "--reduce-range", "--imgsz", "64", "-o", str(out / "qat"))

    out = built_once(tmp_path_factory, "onnx_int8", build)
    log = (out / "export.log").read_text()
    assert "parity" in log and "exported" in log
    # Only the exporter's own lines: torch.onnx's stage narration and warnings are silenced (--debug shows them).
    assert "[torch.onnx]" not in log and "torchvision" not in log and len(log.strip().splitlines()) <= 6, log
    return {"fp32": bundles["dynamic"], "int8": out / "rar-tiny-int8-onnx", "qat": out / "qat" / "rar-tiny-int8-onnx"}


@pytest.mark.xdist_group("onnx_int8")
def test_dynamic_int8_onnx_bundle_runs_at_any_size(onnx_bundles):
    """A --dynamic int8 ONNX export passes parity on two crops of another size than the one traced, and runs."""
    from rar_edge.export.parity import DYNAMIC_PARITY_SIZE
    from rar_edge.runtime import Restorer

    manifest = verify_bundle(onnx_bundles["int8"])
    assert manifest["dynamic"] and manifest["precision"] == "int8"
    assert manifest["parity"]["passed"] and manifest["parity"]["images"] == [2, 3, *DYNAMIC_PARITY_SIZE]
    assert "quantize_static" in manifest["quantization"]["graph"]
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = Restorer.load(onnx_bundles["int8"], tile=48, warmup=False).restore(image, max_steps=1)
    assert out.image.shape == image.shape and out.image.dtype == np.uint8


@pytest.mark.xdist_group("onnx_int8")
def test_int8_onnx_restore_writes_its_latent_in_float(onnx_bundles):
    """onnxruntime's quantizer leaves the restore step's output tail float: the next latent comes from an Add,
    not a DequantizeLinear (export/onnx_static.py, float_tail); the QAT route's graph rounds it."""
    import onnx

    def writer(bundle: Path) -> str:
        graph = onnx.load(str(bundle / "restore.onnx")).graph
        return next(n.op_type for n in graph.node if graph.output[0].name in n.output)

    assert writer(onnx_bundles["int8"]) == "Add"
    assert writer(onnx_bundles["qat"]) == "DequantizeLinear"


@pytest.mark.xdist_group("onnx_int8")
def test_int8_onnx_pools_in_integer(onnx_bundles, tmp_path):
    """The channel attention's mean runs as onnxruntime's QLinearGlobalAveragePool in the int8 graphs, not as
    dequantize, float ReduceMean, quantize (export/onnx.py, global_pools); no graph of any bundle keeps a
    ReduceMean over H and W (the entry points' graphs: the exposure stage's float graph reads a thumbnail)."""
    import onnx
    import onnxruntime as ort

    for bundle in onnx_bundles.values():
        for path in (bundle / f"{name}.onnx" for name in ("encode", "assess", "restore", "decode")):
            assert "ReduceMean" not in {n.op_type for n in onnx.load(str(path)).graph.node}, path
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "restore.opt.onnx")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # fusions, no NCHWc layouts
    ort.InferenceSession(str(onnx_bundles["int8"] / "restore.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "restore.opt.onnx")).graph.node]
    assert "QLinearGlobalAveragePool" in ops and "GlobalAveragePool" not in ops


@pytest.mark.xdist_group("onnx_int8")
@pytest.mark.parametrize("precision", ["fp32", "int8", "qat"])
def test_onnx_bundle(onnx_bundles, precision):
    import onnx
    from onnx import numpy_helper

    from rar_edge.export import default_weight_bits
    from rar_edge.export.onnx_int8 import weight_bits_text

    default_bits = default_weight_bits()
    bundle = onnx_bundles[precision]
    graph_kind, precision = precision, "int8" if precision == "qat" else precision
    manifest = verify_bundle(bundle)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["target"] == "onnx"
    assert manifest["precision"] == precision and manifest["preset"] == "rar-tiny"
    assert manifest["degradations"] == ["noise", "blur", "jpeg", "rain", "haze", "low_light"]
    assert set(manifest["entry_points"]) == {"encode", "assess", "restore", "decode"}
    graphs = ["assess.onnx", "decode.onnx", "encode.onnx", "restore.onnx"]
    assert sorted(manifest["artifacts"]) == [*graphs, *tone_files("onnx")]  # the exposure stage's: test_tone_export.py
    parity = manifest["parity"]
    assert parity["status"] == "measured" and parity["passed"] and parity["loop_psnr_db"] >= (40 if precision == "fp32" else 35)
    assert manifest["dynamic"] == (graph_kind != "qat")  # the default int8 graphs are the --dynamic export
    ops = set()
    for name in graphs:
        model = onnx.load(str(bundle / name))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version >= 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["preset"] == "rar-tiny" and json.loads(meta["degradations"]) == manifest["degradations"]
        ops |= {n.op_type for n in model.graph.node}
        assert not any(n.metadata_props for n in model.graph.node)  # the exporter's stack traces are dropped
        assert not model.graph.value_info  # and its shape annotations (onnxruntime infers them)
    assert ("QuantizeLinear" in ops and "DequantizeLinear" in ops) == (precision == "int8")
    if precision == "int8":  # every quantized convolution and linear runs as an onnxruntime integer kernel
        kernels = manifest["onnxruntime"]["integer_kernels"]
        assert kernels["restore"]["fusable"] > 0 and all(k["float"] == 0 for k in kernels.values()), kernels
        # uint8 activations and int8 weights either way (onnxruntime's fast U8S8 path); an assessor kept float
        # (the qat bundle's student) holds float16 weights read through Casts (export/onnx.py, half_weights)
        quant = manifest["quantization"]
        for name in ("encode", "assess", "restore", "decode"):
            graph = onnx.load(str(bundle / f"{name}.onnx")).graph
            types = {t.data_type for t in graph.initializer}
            if graph_kind == "qat" and name == "assess":
                assert onnx.TensorProto.FLOAT16 in types and not types & {onnx.TensorProto.UINT8, onnx.TensorProto.INT8}
                assert "QuantizeLinear" not in {n.op_type for n in graph.node}
            else:
                assert {onnx.TensorProto.UINT8, onnx.TensorProto.INT8} <= types and onnx.TensorProto.FLOAT16 not in types, name
        assert quant.get("onnx_float_weights") == ("float16, computed in float32 (assess)" if graph_kind == "qat" else None)
        if graph_kind == "qat":  # the QAT programs' graph, re-typed (export/onnx_int8.py), 7-bit (--reduce-range)
            assert quant["graph"].startswith("the int8 programs' QDQ graph")
            names = {t.name for t in onnx.load(str(bundle / "restore.onnx")).graph.initializer}
            assert any(n.endswith("_int7") for n in names)
            assert "7 bits" in quant["onnx_weights"] and "moved by 128" in quant["onnx_activations"]
        else:  # the default: onnxruntime's quantizer, calibrated on the int8 programs' own inputs; an assessor
            # the recipe quantized (the test student's) keeps its program's graph
            assert quant["graph"] == ("onnxruntime quantize_static (QDQ) of the float graphs of encode, restore, "
                                      "decode; the int8 programs' QDQ graph, re-typed for onnxruntime (assess)")
            assert quant["onnx_weights"] == f"int8 symmetric, per output channel, {weight_bits_text(default_bits)}"
            assert "from 16 photo crops of scikit-image sample photos" in quant["onnx_activations"]
            names = {t.name for t in onnx.load(str(bundle / "assess.onnx")).graph.initializer}
            assert any(n.endswith("_int7") for n in names) == (default_bits == 7)
        # The weights the convolutions and linears read: 7 bits with --reduce-range (no int16 pair sum of
        # onnxruntime's U8S8 kernels saturates on AVX2), else this CPU's default (the full int8 range where
        # the CPU has VNNI). (Elementwise scales stay 8-bit either way: they run in float.)
        bits = 7 if graph_kind == "qat" else default_bits
        assert quant["onnx_weight_bits"] == bits
        for name in ("encode", "restore", "decode") if graph_kind == "qat" else ("encode", "assess", "restore", "decode"):
            model = onnx.load(str(bundle / f"{name}.onnx"))
            feeds = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
            into_kernels = {feeds[i] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                            for i in n.input[1:2] if i in feeds}
            weights = [numpy_helper.to_array(t) for t in model.graph.initializer
                       if t.name in into_kernels and t.data_type == onnx.TensorProto.INT8]
            largest = max(int(np.abs(w.astype(int)).max()) for w in weights)
            assert (largest <= 64) if bits == 7 else (largest > 64), (name, largest)


def test_int8_graphs_are_retyped_for_onnxruntime():
    """Activations move to uint8 (zero point + 128: the same real values); with weight_bits=7 (--reduce-range)
    weights move to 7 bits at twice the scale."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rar_edge.export.onnx_int8 import retype_for_onnxruntime

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)

    def qdq_conv(weight: np.ndarray, w_scale: float, x_zero) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.full(4, w_scale, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(4, weight.dtype), "wz"),
                 numpy_helper.from_array(np.array(0.02, np.float32), "xs"), numpy_helper.from_array(x_zero, "xz")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
                 helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                                   helper.make_tensor_value_info("xd", TensorProto.FLOAT, None)], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])

    def run(model: onnx.ModelProto) -> list[np.ndarray]:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(["y", "xd"], {"x": x})

    x = rng.uniform(-3, 2, (1, 3, 8, 8)).astype(np.float32)  # beyond the int8 range on both sides: clamps too
    model = qdq_conv(w, 0.01, np.array(-5, np.int8))
    y_before, xd_before = run(model)
    assert retype_for_onnxruntime(model, weight_bits=7) == {"activations": 2, "weights": 1}
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert tensors["xz_u8"].dtype == np.uint8 and tensors["xz_u8"] == 123
    np.testing.assert_array_equal(tensors["w_int7"], np.clip(np.round(w / 2), -64, 63))
    np.testing.assert_allclose(tensors["ws_x2"], 0.02)
    y, xd = run(model)
    np.testing.assert_array_equal(xd, xd_before)  # activations: exact
    # The conv is the 7-bit weights' (the same graph written with them directly), within float rounding.
    y_int7, _ = run(qdq_conv(tensors["w_int7"], 0.02, np.array(-5, np.int8)))
    np.testing.assert_allclose(y, y_int7, atol=1e-5)
    assert 0 < np.abs(y - y_before).max() <= 27 * 3 * 0.01  # 27 taps, |x| <= 3, half a 7-bit step each


def test_int8_graphs_keep_8bit_weights_by_default():
    """Without reduce_range only the activations move (to uint8, exact): the weights and the output stay."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rar_edge.export.onnx_int8 import retype_for_onnxruntime

    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=(2, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(2, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(2, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
             numpy_helper.from_array(np.array(3, np.int8), "xz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = rng.uniform(-3, 2, (1, 3, 8, 8)).astype(np.float32)

    def run() -> np.ndarray:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    before = run()
    assert retype_for_onnxruntime(model) == {"activations": 2, "weights": 0}
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(tensors["w"], w)
    assert "w_int7" not in tensors and tensors["xz_u8"] == 131
    np.testing.assert_allclose(run(), before, atol=1e-5)
    with pytest.raises(ValueError, match="weight_bits 6"):
        retype_for_onnxruntime(model, 6)


def test_x86_without_vnni_reads_the_cpu_flags(tmp_path):
    from rar_edge.runtime.backends import x86_without_vnni

    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("fpu sse2 avx avx2 fma", True), ("fpu avx2 avx512f avx512_vnni", False),
                            ("fpu avx2 avx_vnni", False), ("fp asimd asimddp", False)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert x86_without_vnni(str(cpuinfo)) is expected, flags
    assert x86_without_vnni(str(tmp_path / "missing")) is False


@pytest.mark.xdist_group("onnx_int8")
def test_8bit_int8_onnx_bundle_warns_on_cpus_without_vnni(onnx_bundles, monkeypatch, capsys):
    """An int8 ONNX bundle with full 8-bit weights still loads on an AVX2-only CPU, with a one-line warning that
    says what to do; a --reduce-range (7-bit) bundle loads without it. (The default bundle's manifest is read
    as each width: its weight width is this CPU's default, and the warning reads the manifest.)"""
    from rar_edge.runtime import backends

    monkeypatch.setattr(backends, "x86_without_vnni", lambda: True)
    manifest = verify_bundle(onnx_bundles["int8"])
    for bits, warned in ((8, True), (7, False)):
        quantization = {**manifest["quantization"], "onnx_weight_bits": bits}
        backends.OnnxBackend(onnx_bundles["int8"], {**manifest, "quantization": quantization})
        err = capsys.readouterr().err
        assert ("--reduce-range" in err and err.count("\n") == 1) == warned, (bits, err)
    for kind in ("qat", "fp32"):  # 7-bit; fp32: "quantization": null
        backends.OnnxBackend(onnx_bundles[kind], verify_bundle(onnx_bundles[kind]))
        assert capsys.readouterr().err == "", kind


@pytest.fixture(scope="module")
def et_bundles(bundles, distilled, tmp_path_factory):
    """fp32 (the runtime tests' bundle of the tiny checkpoint) and int8 (the distilled student) ExecuTorch bundles."""
    def build(out: Path) -> None:
        export_here("--target", "pte", "--checkpoint", str(distilled[0] / "student"), "--precision", "int8",
                    "--imgsz", "64", "-o", str(out))

    out = built_once(tmp_path_factory, "executorch_int8", build)
    return {"fp32": bundles["executorch"], "int8": out / "rar-tiny-int8-executorch"}


@pytest.mark.xdist_group("executorch_int8")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_executorch_bundle(et_bundles, precision):
    from executorch.runtime import Runtime

    bundle = et_bundles[precision]
    manifest = verify_bundle(bundle)
    assert list(manifest["artifacts"]) == ["rar.pte", *tone_files("pte")] and manifest["input_shape"] == [64, 64]
    assert manifest["parity"]["passed"] and manifest["parity"]["loop_psnr_db"] >= (40 if precision == "fp32" else 35)
    program = Runtime.get().load_program(str(bundle / "rar.pte"))
    assert set(program.method_names) == {"encode", "assess", "restore", "decode"}
    # Besides convolutions and matmuls, the means over H and W (keepdim=True) and the gates' halves (slices,
    # not split) run in XNNPACK too, not in portable kernels between pieces of the delegated graph.
    for name, info in manifest["delegation"].items():
        assert info["delegated_ops"] > 0
        assert not any(k in op for op in info["outside_delegate"] for k in ("conv", "linear", "mm", "mean", "split")), \
            (name, info)


@pytest.mark.xdist_group("onnx_int8")
def test_tampered_artifact_fails_checksum(onnx_bundles, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(onnx_bundles["fp32"], bundle)
    with open(bundle / "decode.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="SHA-256"):
        verify_bundle(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        verify_bundle(bundle)


@pytest.mark.parametrize("args, message", [
    (["--target", "tflite"], "unknown --target"),
    (["--target", "onnx", "--precision", "fp16"], "not available for onnx"),
    (["--target", "pte", "--precision", "fp16"], "not available for executorch"),
    (["--target", "onnx", "--calib", "."], "use it with --precision int8"),
    (["--target", "onnx", "--precision", "int8", "--calib", "/no/such/dir"], "is not a folder"),
    (["--target", "onnx", "--imgsz", "50"], "multiples of 16"),
    (["--target", "onnx", "--imgsz", "big"], "not a size"),
    (["--target", "onnx", "--preset", "rar-teacher"], "no shipped weights for rar-teacher"),
])
def test_argument_checks(args, message, tmp_path):
    res = _export(*args, "-o", str(tmp_path / "out"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_int8_needs_distilled_student(tiny_checkpoint, tmp_path):
    res = _export("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--precision", "int8", "-o", str(tmp_path))
    assert res.returncode == 2 and "no int8 programs" in res.stderr and "--calib" in res.stderr


def test_unwritable_output_and_failed_parity_leave_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    res = _export("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--imgsz", "64", "-o", str(blocker / "x"))
    assert res.returncode == 2 and "cannot create output folder" in res.stderr

    from rar_edge.export import bundle, parity

    monkeypatch.setitem(parity.BOUNDS, "fp32", {"psnr_db": 1e9, "quality_db": 0.0, "prob": 0.0})
    with pytest.raises(RarEdgeError, match="parity check failed") as err:
        bundle.export_bundle("onnx", "fp32", str(tiny_checkpoint), None, (64, 64), False, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert "--int8-graph" not in str(err.value)  # the hint is for int8 ONNX graphs made by onnxruntime's quantizer


def test_target_all_and_aliases():
    from rar_edge.export.__main__ import check_args, resolve_targets

    assert check_args(resolve_targets("all"), None, None, False) == {
        "executorch": "fp32", "coreml": "fp16", "onnx": "fp32"}
    assert resolve_targets("ET") == ["executorch"] and resolve_targets("mlpackage") == ["coreml"]
    assert resolve_targets("ios") == ["coreml"] and resolve_targets("ort") == ["onnx"]


def test_an_export_of_the_shipped_student_says_which_model_the_default_bundle_holds():
    from rar_edge import SHIPPED_STUDENT
    from rar_edge.export.__main__ import default_model_note
    from rar_edge.runtime.restorer import DEFAULT_BUNDLE

    source = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["source"]
    note = default_model_note()
    assert f"exporting the shipped student {SHIPPED_STUDENT}" in note
    assert Path(source).name != SHIPPED_STUDENT and f"export that one with --checkpoint {source}" in note


def test_dynamic_int8_executorch_is_refused_before_any_work():
    from rar_edge.export.__main__ import ExportError, check_args

    for targets in (["executorch"], ["executorch", "coreml", "onnx"]):
        with pytest.raises(ExportError, match="--dynamic int8 ExecuTorch program .* drop --dynamic"):
            check_args(targets, "int8", None, True)
    assert check_args(["executorch"], "int8", None, False) == {"executorch": "int8"}
    assert check_args(["executorch"], "fp32", None, True) == {"executorch": "fp32"}
    assert check_args(["onnx"], "int8", None, True) == {"onnx": "int8"}


def test_int8_graph_is_for_int8_onnx_only(tiny_checkpoint, tmp_path):
    from rar_edge.export.__main__ import ExportError, check_args

    assert check_args(["onnx"], "int8", None, False, "qat") == {"onnx": "int8"}
    for targets, precision in ((["executorch"], "int8"), (["onnx"], "fp32"), (["onnx"], None)):
        with pytest.raises(ExportError, match="--int8-graph chooses how int8 ONNX graphs are made"):
            check_args(targets, precision, None, False, "ort")
    res = _export("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--int8-graph", "qat", "-o", str(tmp_path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--precision int8" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_weight_width_flags_are_for_int8_onnx_only(tiny_checkpoint, tmp_path):
    from rar_edge.export.__main__ import ExportError, check_args

    assert check_args(["onnx"], "int8", None, False, None, True) == {"onnx": "int8"}
    assert check_args(["onnx"], "int8", None, False, None, False, True) == {"onnx": "int8"}
    for targets, precision in ((["executorch"], "int8"), (["onnx"], "fp32"), (["onnx"], None)):
        with pytest.raises(ExportError, match="--reduce-range makes int8 ONNX weights 7-bit"):
            check_args(targets, precision, None, False, None, True)
        with pytest.raises(ExportError, match="--full-range makes int8 ONNX weights 8-bit"):
            check_args(targets, precision, None, False, None, False, True)
    res = _export("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--precision", "int8", "--reduce-range",
                  "--full-range", "-o", str(tmp_path))
    assert res.returncode == 2 and "not allowed with argument" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_int8_onnx_weight_width_follows_the_exporting_cpu(monkeypatch, capsys):
    """Unless told, int8 ONNX weights are 7-bit on an x86 CPU without VNNI (where onnxruntime's kernels saturate
    on 8-bit ones and the parity check runs) and 8-bit elsewhere; the flags win either way; a parity failure's
    hint names the flag that changes the width."""
    from rar_edge import export
    from rar_edge.export.__main__ import weight_bits
    from rar_edge.export.bundle import weight_bits_hint
    from rar_edge.runtime import backends

    for without_vnni, auto in ((True, 7), (False, 8)):
        monkeypatch.setattr(backends, "x86_without_vnni", lambda: without_vnni)
        assert export.default_weight_bits() == auto
        assert weight_bits(False, False, True) == auto
        err = capsys.readouterr().err
        assert ("--full-range" in err and err.count("\n") == 1) == without_vnni, err
        assert weight_bits(True, False, True) == 7 and weight_bits(False, True, True) == 8
        assert weight_bits(False, False, False) == auto and capsys.readouterr().err == ""  # no int8 ONNX: no note
        assert ("--full-range keeps" in weight_bits_hint(7)) != without_vnni  # 8 bits would fail there too
        assert ("drop --full-range" in weight_bits_hint(8)) == without_vnni


def test_dynamic_coreml_warns_about_the_neural_engine(capsys):
    from rar_edge.export.__main__ import check_args

    check_args(["coreml"], None, None, True)
    assert "Neural Engine" in capsys.readouterr().err


@pytest.fixture(scope="module")
def coreml_bundles(distilled, tiny_checkpoint, tmp_path_factory):
    """Core ML packages of the distilled student (fp16 through the ``ios`` alias, fp32, QAT int8) and the float
    checkpoint's weight-only int8: (folder, each export's printed log)."""
    student = str(distilled[0] / "student")
    exports = {"fp16": ("", "--target", "ios", "--checkpoint", student),  # (sub-folder, arguments)
               "fp32": ("fp32", "--target", "coreml", "--checkpoint", student, "--precision", "fp32"),
               "int8": ("qat", "--target", "coreml", "--checkpoint", student, "--precision", "int8"),
               "weights": ("weights", "--target", "coreml", "--checkpoint", str(tiny_checkpoint),
                           "--precision", "int8")}

    def build(out: Path) -> None:
        for which, (folder, *args) in exports.items():
            (out / f"{which}.log").write_text(export_here(*args, "--imgsz", "64", "-o", out / folder))

    out = built_once(tmp_path_factory, "coreml", build)
    return out, {which: (out / f"{which}.log").read_text() for which in exports}


@pytest.mark.xdist_group("coreml")
@pytest.mark.parametrize("which", ["fp16", "fp32", "int8", "weights"])
def test_coreml_bundle(coreml_bundles, which):
    import coremltools as ct

    out, logs = coreml_bundles
    precision = which if which in ("fp16", "fp32") else "int8"
    folder = {"fp16": out, "fp32": out / "fp32", "int8": out / "qat", "weights": out / "weights"}[which]
    bundle = folder / f"rar-tiny-{precision}-coreml"
    manifest = verify_bundle(bundle)
    assert list(manifest["artifacts"]) == ["rar.mlpackage", *tone_files("mlpackage")] and manifest["target"] == "coreml"
    spec = ct.utils.load_spec(str(bundle / "rar.mlpackage"))
    functions = {f.name: f for f in spec.description.functions}
    assert sorted(functions) == ["assess", "decode", "encode", "restore"]
    assert [i.name for i in functions["restore"].input] == ["latent", "cond"]
    assert [o.name for o in functions["assess"].output] == ["quality", "degradations", "cond"]
    assert list(functions["encode"].input[0].type.multiArrayType.shape) == [1, 3, 64, 64]
    meta = dict(spec.description.metadata.userDefined)
    assert meta["preset"] == "rar-tiny" and meta["precision"] == precision and meta["target"] == "coreml"
    ops = set().union(*manifest["coreml"]["ops"].values())
    if which in ("fp16", "fp32"):
        assert not ops & {"quantize", "dequantize", "constexpr_blockwise_shift_scale"}
    elif which == "int8":  # QAT graph: int8 activations and weights
        assert {"quantize", "dequantize"} <= ops
    else:  # float checkpoint: weight-only, and the user is told it will not be faster
        assert "constexpr_blockwise_shift_scale" in ops or "constexpr_affine_dequantize" in ops
        assert not ops & {"quantize", "dequantize"} and "not faster" in logs["weights"]
    assert "macOS" in logs[which] and "macOS" in manifest["coreml"]["parity_on"]
    # Off macOS no parity is measured: the manifest and the output say so. fp32 and the QAT int8 graph would
    # be compared with their own torch graph (no figure at all); fp16 and weight-only int8 carry an emulation
    # of what Core ML runs, named as such, never as the package's parity.
    parity = manifest["parity"]
    assert parity["status"] == "not run on this platform" and "macOS" in parity["reason"]
    assert f"parity ({precision}): not run on this platform" in logs[which] and "inf dB" not in logs[which]
    assert "loop_psnr_db" not in parity and "exact" not in logs[which]
    if which in ("fp32", "int8"):
        assert "emulation" not in parity
    else:
        emulation = parity["emulation"]
        assert "half precision" in emulation["compared"] and emulation["passed"]
        assert emulation["loop_psnr_db"] >= (35 if precision == "int8" else 40)
        assert "emulation, against the converted torch graph in half precision" in logs[which]


@pytest.mark.xdist_group("coreml")
def test_coreml_bundle_carries_the_tone_package(coreml_bundles):
    import coremltools as ct

    out, logs = coreml_bundles
    bundle = out / "rar-tiny-fp16-coreml"
    manifest = verify_bundle(bundle)
    entry = manifest["tone"]
    assert entry["graph"] == "tone.mlpackage"
    assert set(manifest["artifacts"]) >= {"tone.mlpackage", "tone/config.json", "tone/tone.safetensors"}
    assert entry["parity"]["status"].startswith("not run on this platform")  # Linux: no Core ML predictions
    spec = ct.utils.load_spec(str(bundle / "tone.mlpackage"))
    assert [i.name for i in spec.description.input] == ["thumbnail"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 3, 64, 64]
    assert [o.name for o in spec.description.output] == ["table", "logit"]
    assert json.loads(dict(spec.description.metadata.userDefined)["tone"])["gate"] == 0.0
    assert "tone: tone.mlpackage" in logs["fp16"]


@pytest.mark.xdist_group("coreml")
def test_coreml_verification_catches_a_wrong_package(coreml_bundles):
    from rar_edge.export.coreml import verify_package
    from rar_edge.model.presets import get_preset

    out, _ = coreml_bundles
    config = get_preset("rar-tiny").config
    package = out / "rar-tiny-fp16-coreml" / "rar.mlpackage"
    assert verify_package(package, config, (64, 64), "fp16")["deployment_target"] == "iOS18"
    with pytest.raises(RarEdgeError, match="encode input shape"):
        verify_package(package, config, (128, 128), "fp16")
    with pytest.raises(RarEdgeError, match="no quantized ops"):
        verify_package(package, config, (64, 64), "int8")


def test_post_training_int8_with_calib(tiny_checkpoint, photo_dir, tmp_path, monkeypatch):
    from rar_edge.export import bundle, parity

    # One post-training calibration serves every export below (each would calibrate the same programs again).
    programs, calibrate = {}, bundle.torch_programs

    def calibrated_once(source, *how):
        if how not in programs:
            programs[how] = calibrate(source, *how)
        return programs[how]

    monkeypatch.setattr(bundle, "torch_programs", calibrated_once)
    log = export_here("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                       "--calib", str(photo_dir), "--imgsz", "64", "-o", str(tmp_path))
    assert "post-training int8" in log and "more accurate" in log
    manifest = verify_bundle(tmp_path / "rar-tiny-int8-onnx")
    assert "post-training" in manifest["quantization"]["flow"] and manifest["parity"]["passed"]
    assert manifest["quantization"]["kept_float"] == ["assess"]  # as the QAT recipe: the loop's decisions stay float
    # The default int8 ONNX graphs: onnxruntime's quantizer, calibrated on crops of --calib's photos, which the
    # manifest names by the folder's name, never its path.
    quant = manifest["quantization"]
    assert quant["graph"].startswith("onnxruntime quantize_static") and "re-typed" not in quant["graph"]
    assert f"of {photo_dir.name!r} (--calib)" in quant["onnx_activations"] and str(photo_dir) not in json.dumps(manifest)

    # Asked for by name, onnxruntime's graphs are not replaced: the error says how to keep the programs' own.
    with monkeypatch.context() as m:
        m.setitem(parity.BOUNDS, "int8", {"psnr_db": 1e9, "quality_db": 0.0, "prob": 0.0})
        with pytest.raises(RarEdgeError, match="parity check failed .*nothing written; --int8-graph qat keeps"):
            bundle.export_bundle("onnx", "int8", str(tiny_checkpoint), None, (64, 64), False, tmp_path / "failed",
                                 calib=str(photo_dir), int8_graph="ort")
    assert list((tmp_path / "failed").iterdir()) == []

    # Where onnxruntime's graphs miss the bound (here made to, without building them), the default falls back to the
    # int8 programs' own graphs, says so in the summary and the manifest, and writes only the bundle that passed.
    real, tried = bundle._write_bundle, []

    def ort_graphs_fail(*args, **kw):
        tried.append(kw.get("int8_graph", args[8]))
        if tried[-1] == "ort":
            raise bundle.ParityFailed("parity check failed", ["loop 1.0 dB < 35 dB"])
        return real(*args, **kw)

    monkeypatch.setattr(bundle, "_write_bundle", ort_graphs_fail)
    summary = bundle.export_bundle("onnx", "int8", str(tiny_checkpoint), None, (64, 64), False,
                                   tmp_path / "fallback", calib=str(photo_dir))
    assert tried == ["ort", "qat"]
    assert "warning: onnxruntime's quantizer missed the parity bound (loop 1.0 dB < 35 dB)" in summary
    assert "--int8-graph qat" in summary
    quant = verify_bundle(tmp_path / "fallback" / "rar-tiny-int8-onnx")["quantization"]
    assert quant["graph"].startswith("the int8 programs' QDQ graph") and "loop 1.0 dB" in quant["fallback"]
    assert [p.name for p in (tmp_path / "fallback").iterdir()] == ["rar-tiny-int8-onnx"]

    # By default, where both miss it, the error names both graphs' failures (each attempt writes nothing: above).
    def both_fail(*args, **kw):
        psnr = {"ort": 20, "qat": 21}[kw.get("int8_graph", args[8])]
        raise bundle.ParityFailed("parity check failed", [f"decode_psnr_db {psnr}.0 < 35"])

    monkeypatch.setattr(bundle, "_write_bundle", both_fail)
    from rar_edge.runtime import backends

    monkeypatch.setattr(backends, "x86_without_vnni", lambda: False)  # 8-bit weights; no hint about their width
    with pytest.raises(RarEdgeError, match=re.escape("parity check failed for rar-tiny-int8-onnx with both int8 "
                                                     "graphs: ort decode_psnr_db 20.0 < 35; qat decode_psnr_db 21.0 "
                                                     "< 35; nothing written; or export")):
        bundle.export_bundle("onnx", "int8", str(tiny_checkpoint), None, (64, 64), False, tmp_path / "failed",
                             calib=str(photo_dir))
    assert len(programs) == 1  # one calibration for all of them
