"""bench/runtime_bench.py --compare: exported bundles timed in alternating processes, medians per setting."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import load_bench


def test_compare_prints_a_row_per_bundle_and_setting(bundles, capsys):
    bench = load_bench("runtime_bench")
    # "none" (torch's threads left alone) is an ExecuTorch setting: an ONNX bundle runs as it is.
    out = bench.compare([str(bundles["executorch"]), str(bundles["onnx"])], repeats=2, settings=["none"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 2 and len(out) == 2
    for key, res in out.items():
        assert len(res["totals"]) == 2  # one process per round
        med = res["median_ms"]
        parts = sum(med[e] for e in ("encode", "assess", "restore", "decode", "overhead"))
        assert med["total"] >= 0.9 * parts > 0  # the total holds its parts (the runtime's own wait aside)
    assert any(re.match(r"\| rt_bundles/rar-tiny-fp32-executorch \| none \|", r) for r in rows)


def test_compare_stops_on_a_bundle_that_fails_in_one_line(tmp_path):
    bench = load_bench("runtime_bench")
    with pytest.raises(SystemExit, match=r"latency of .*nothing failed: "):
        bench.compare([str(tmp_path / "nothing")], repeats=1, settings=["default"])
