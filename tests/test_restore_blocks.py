"""bench/restore_blocks.py: the restore step of each block kind, lowered fp32 and int8 for XNNPACK and onnxruntime."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import load_bench


def test_a_row_per_preset_with_every_runtime_and_precision(capsys, monkeypatch, tmp_path):
    bench = load_bench("restore_blocks")
    monkeypatch.setattr(sys, "argv", ["restore_blocks", "--presets", "rar-tiny", "--size", "32", "--runs", "1",
                                      "--rounds", "1", "--json", str(tmp_path / "r.json")])
    bench.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| rar-tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ms = [float(cells[i]) for i in (3, 4, 6, 7)]
    assert all(t > 0 for t in ms)  # no timing claim: bench/ makes those
    assert float(cells[5]) == pytest.approx(ms[0] / ms[1], abs=0.01)
    from rar_edge.model import create_model
    from rar_edge.model.complexity import entry_macs

    assert float(cells[2]) == pytest.approx(entry_macs(create_model("rar-tiny"), "restore", 32, 32) / 1e9, abs=1e-3)
    assert re.search(r'"xnnpack int8": [\d.]+', (tmp_path / "r.json").read_text())


def test_a_checkpoint_of_another_preset_is_refused(tmp_path):
    bench = load_bench("restore_blocks")
    from rar_edge.model import create_model
    from rar_edge.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=0)
    with pytest.raises(SystemExit, match="holds a rar-tiny model, not rar-edge-s"):
        bench.load("rar-edge-s", str(tmp_path / "ck"))
    # Without a checkpoint the zero-initialised head is perturbed: onnxruntime would drop a zero layer's work.
    assert create_model("rar-tiny").restorer.head.weight.abs().sum() == 0
    assert bench.load("rar-tiny", None).restorer.head.weight.abs().sum() > 0
