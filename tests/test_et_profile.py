"""bench/et_profile.py: interleaved per-method timings of ExecuTorch bundles, and per-operator ETDump profiles."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import load_bench


def test_op_profile_names_the_delegates_operators(bundles):
    bench = load_bench("et_profile")
    total, kinds = bench.op_profile(bundles["executorch"] / "rar.pte", "restore", runs=3)
    assert total > 0 and kinds
    assert not any(re.search(r" #\d+$", k) for k in kinds)  # instances folded into their kind
    assert any(k.startswith("Convolution") or k.startswith("Fully Connected") for k in kinds)  # XNNPACK's own names
    assert all(ms >= 0 and n >= 1 for ms, n in kinds.values())
    assert "DELEGATE_CALL" not in kinds and "Method::execute" not in kinds  # totals, not operators
    assert sum(ms for ms, _ in kinds.values()) <= total * 1.05  # the operators run inside the call


def test_table_has_a_row_per_method_with_ratios_to_the_first(bundles, capsys, monkeypatch):
    bench = load_bench("et_profile")
    b = str(bundles["executorch"])
    monkeypatch.setattr(sys, "argv", ["et_profile", b, b, "--methods", "assess,restore", "--rounds", "2", "--runs", "2",
                                      "--profile", "assess", "--top", "3"])
    bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| assess |") or line.startswith("| restore |")]
    assert len(rows) == 2
    for row in rows:
        ratios = [float(r) for r in re.findall(r"\(([\d.]+)\)", row)]
        assert len(ratios) == 2 and ratios[0] == 1.0 and ratios[1] > 0  # no timing claim: bench/ makes those
    assert out.count("assess: ") == 2 and out.count(" ms per call (ETDump)") == 2
    assert len(re.findall(r"^\s+[\d.]+ ms\s+[\d.]+ %\s+x\d+", out, flags=re.M)) == 6  # --top 3 per bundle


def test_a_folder_without_a_pte_is_a_one_line_error(tmp_path, monkeypatch):
    bench = load_bench("et_profile")
    monkeypatch.setattr(sys, "argv", ["et_profile", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"no rar\.pte in .*pass ExecuTorch bundle folders"):
        bench.main()


def test_an_unknown_method_is_a_one_line_error(bundles, monkeypatch):
    bench = load_bench("et_profile")
    monkeypatch.setattr(sys, "argv", ["et_profile", str(bundles["executorch"]), "--methods", "assess,enhance"])
    with pytest.raises(SystemExit, match=r"has no method enhance; it has assess, decode, encode, restore$"):
        bench.main()
