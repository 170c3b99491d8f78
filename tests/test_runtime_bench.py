"""bench/runtime_bench.py --compare: exported bundles timed in alternating processes, medians per setting."""

from __future__ import annotations

import pytest

from conftest import load_bench


def test_compare_measures_each_torch_setting_on_executorch_and_onnx_once(bundles, capsys):
    bench = load_bench("runtime_bench")
    et, onnx = str(bundles["executorch"]), str(bundles["onnx"])
    out = bench.compare([et, onnx], repeats=1, settings=["default", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # The torch-thread settings are ExecuTorch's: the ONNX bundle runs once, as it is.
    assert sorted(out) == sorted([f"{et}|default", f"{et}|2", f"{onnx}|default"]) and len(rows) == 3
    assert out[f"{et}|default"]["torch_threads"] == 1 and out[f"{et}|2"]["torch_threads"] == 2  # reached the backend
    assert out[f"{onnx}|default"]["torch_threads"] is None
    for res in out.values():
        med = res["median_ms"]
        parts = sum(med[e] for e in ("encode", "assess", "restore", "decode", "overhead"))
        assert len(res["totals"]) == 1 and med["total"] >= 0.9 * parts > 0  # the total holds its parts


@pytest.mark.parametrize("args, message", [
    (dict(repeats=0, settings=["default"]), r"--repeats must be at least 1"),
    (dict(repeats=1, settings=["two"]), r"--torch-threads takes default, none or a thread count >= 1.*'two'"),
    (dict(repeats=1, settings=["0"]), r"--torch-threads takes .*'0'"),
])
def test_bad_options_are_one_line_errors_before_any_run(bundles, args, message):
    bench = load_bench("runtime_bench")
    with pytest.raises(SystemExit, match=message):
        bench.compare([str(bundles["executorch"])], **args)


def test_a_folder_that_is_not_a_bundle_is_refused_before_any_run(tmp_path):
    bench = load_bench("runtime_bench")
    with pytest.raises(SystemExit, match=r"nothing is not an exported bundle \(no readable manifest.json\)"):
        bench.compare([str(tmp_path / "nothing")], repeats=1, settings=["default"])
