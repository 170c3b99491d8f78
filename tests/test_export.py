"""Exporters: bundles, manifest, checksums, parity, argument checks and clean failures, for every target."""

from __future__ import annotations

import json

import pytest

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import SCHEMA_VERSION, verify_bundle

from conftest import export_here, run_cli


def _export(*args: str):
    return run_cli("export", *args)


@pytest.fixture(scope="module")
def onnx_bundles(bundles, distilled, tmp_path_factory):
    """fp32 (dynamic; the runtime tests' bundle of the tiny checkpoint) and int8 (the distilled student's QAT
    programs) ONNX bundles."""
    out = tmp_path_factory.mktemp("exports")
    log = export_here("--target", "ort", "--checkpoint", str(distilled[0] / "student"), "--precision", "int8",
                       "--imgsz", "64", "-o", str(out))
    assert "parity" in log and "exported" in log
    # Only the exporter's own lines: torch.onnx's stage narration and warnings are silenced (--debug shows them).
    assert "[torch.onnx]" not in log and "torchvision" not in log and len(log.strip().splitlines()) <= 5, log
    return {"fp32": bundles["dynamic"], "int8": out / "rar-tiny-int8-onnx"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_bundle(onnx_bundles, precision):
    import onnx

    bundle = onnx_bundles[precision]
    manifest = verify_bundle(bundle)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["target"] == "onnx"
    assert manifest["precision"] == precision and manifest["preset"] == "rar-tiny"
    assert manifest["degradations"] == ["noise", "blur", "jpeg", "rain", "haze", "low_light"]
    assert set(manifest["entry_points"]) == {"encode", "assess", "restore", "decode"}
    assert sorted(manifest["artifacts"]) == ["assess.onnx", "decode.onnx", "encode.onnx", "restore.onnx"]
    parity = manifest["parity"]
    assert parity["status"] == "measured" and parity["passed"] and parity["loop_psnr_db"] >= (40 if precision == "fp32" else 35)
    assert manifest["dynamic"] == (precision == "fp32")
    ops = set()
    for name in manifest["artifacts"]:
        model = onnx.load(str(bundle / name))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version >= 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["preset"] == "rar-tiny" and json.loads(meta["degradations"]) == manifest["degradations"]
        ops |= {n.op_type for n in model.graph.node}
    assert ("QuantizeLinear" in ops and "DequantizeLinear" in ops) == (precision == "int8")


@pytest.fixture(scope="module")
def et_bundles(bundles, distilled, tmp_path_factory):
    """fp32 (the runtime tests' bundle of the tiny checkpoint) and int8 (the distilled student) ExecuTorch bundles."""
    out = tmp_path_factory.mktemp("et_exports")
    export_here("--target", "pte", "--checkpoint", str(distilled[0] / "student"), "--precision", "int8",
                 "--imgsz", "64", "-o", str(out))
    return {"fp32": bundles["executorch"], "int8": out / "rar-tiny-int8-executorch"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_executorch_bundle(et_bundles, precision):
    from executorch.runtime import Runtime

    bundle = et_bundles[precision]
    manifest = verify_bundle(bundle)
    assert list(manifest["artifacts"]) == ["rar.pte"] and manifest["input_shape"] == [64, 64]
    assert manifest["parity"]["passed"] and manifest["parity"]["loop_psnr_db"] >= (40 if precision == "fp32" else 35)
    program = Runtime.get().load_program(str(bundle / "rar.pte"))
    assert set(program.method_names) == {"encode", "assess", "restore", "decode"}
    # Besides convolutions and matmuls, the means over H and W (keepdim=True) and the gates' halves (slices,
    # not split) run in XNNPACK too, not in portable kernels between pieces of the delegated graph.
    for name, info in manifest["delegation"].items():
        assert info["delegated_ops"] > 0
        assert not any(k in op for op in info["outside_delegate"] for k in ("conv", "linear", "mm", "mean", "split")), \
            (name, info)


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
    with pytest.raises(RarEdgeError, match="parity check failed"):
        bundle.export_bundle("onnx", "fp32", str(tiny_checkpoint), None, (64, 64), False, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_target_all_and_aliases():
    from rar_edge.export.__main__ import check_args, resolve_targets

    assert check_args(resolve_targets("all"), None, None, False) == {
        "executorch": "fp32", "coreml": "fp16", "onnx": "fp32"}
    assert resolve_targets("ET") == ["executorch"] and resolve_targets("mlpackage") == ["coreml"]
    assert resolve_targets("ios") == ["coreml"] and resolve_targets("ort") == ["onnx"]


def test_dynamic_coreml_warns_about_the_neural_engine(capsys):
    from rar_edge.export.__main__ import check_args

    check_args(["coreml"], None, None, True)
    assert "Neural Engine" in capsys.readouterr().err


@pytest.fixture(scope="module")
def coreml_bundles(distilled, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml")
    student = str(distilled[0] / "student")
    logs = {"fp16": export_here("--target", "ios", "--checkpoint", student, "--imgsz", "64", "-o", str(out)),
            "fp32": export_here("--target", "coreml", "--checkpoint", student, "--precision", "fp32",
                                 "--imgsz", "64", "-o", str(out / "fp32")),
            "int8": export_here("--target", "coreml", "--checkpoint", student, "--precision", "int8",
                                 "--imgsz", "64", "-o", str(out / "qat"))}
    logs["weights"] = export_here("--target", "coreml", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                                   "--imgsz", "64", "-o", str(out / "weights"))
    return out, logs


@pytest.mark.parametrize("which", ["fp16", "fp32", "int8", "weights"])
def test_coreml_bundle(coreml_bundles, which):
    import coremltools as ct

    out, logs = coreml_bundles
    precision = which if which in ("fp16", "fp32") else "int8"
    folder = {"fp16": out, "fp32": out / "fp32", "int8": out / "qat", "weights": out / "weights"}[which]
    bundle = folder / f"rar-tiny-{precision}-coreml"
    manifest = verify_bundle(bundle)
    assert list(manifest["artifacts"]) == ["rar.mlpackage"] and manifest["target"] == "coreml"
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


def test_post_training_int8_with_calib(tiny_checkpoint, photo_dir, tmp_path):
    log = export_here("--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                       "--calib", str(photo_dir), "--imgsz", "64", "-o", str(tmp_path))
    assert "post-training int8" in log and "more accurate" in log
    manifest = verify_bundle(tmp_path / "rar-tiny-int8-onnx")
    assert "post-training" in manifest["quantization"]["flow"] and manifest["parity"]["passed"]
    assert manifest["quantization"]["kept_float"] == ["assess"]  # as the QAT recipe: the loop's decisions stay float
