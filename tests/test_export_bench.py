"""bench/export_bench.py: the export command of each row (the exports themselves: tests/test_export.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import load_bench


def test_rows_export_with_the_exposure_stage_unless_told_and_calibrate_float_int8_only(tmp_path):
    bench = load_bench("export_bench")
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    ckpt.mkdir()
    cmd = bench.export_command(ckpt, "onnx", "fp32", "photos", 512, out)
    assert cmd[1:3] == ["-m", "rar_edge.export"] and "--no-tone" not in cmd and "--calib" not in cmd
    assert cmd[cmd.index("--target") + 1] == "onnx" and cmd[cmd.index("-o") + 1] == str(out)
    assert "--no-tone" in bench.export_command(ckpt, "coreml", "fp16", None, 256, out, tone=False)
    int8 = bench.export_command(ckpt, "executorch", "int8", "photos", 512, out)
    assert int8[int8.index("--calib") + 1] == "photos"  # a float checkpoint's int8: post-training, calibrated
    (ckpt / "int8").mkdir()  # a distilled student's QAT int8: no calibration
    assert "--calib" not in bench.export_command(Path(ckpt), "executorch", "int8", "photos", 512, out)
