"""bench/restore_blocks.py: the restore step of each block kind, lowered fp32 and int8 for XNNPACK and onnxruntime."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import load_bench


def test_a_row_per_preset_with_every_runtime_and_precision(capsys, monkeypatch, tmp_path):
    bench = load_bench("restore_blocks")
    monkeypatch.setattr(sys, "argv", ["restore_blocks", "--presets", "rar-tiny", "--size", "32", "--runs", "1",
                                      "--rounds", "1", "--json", str(tmp_path / "r.json")])
    bench.main()
    row = json.loads((tmp_path / "r.json").read_text())["rar-tiny"]
    runtimes = ["xnnpack fp32", "xnnpack int8", "onnxruntime fp32", "onnxruntime int8"]
    assert all(row[k] > 0 for k in runtimes)  # no timing claim: bench/ makes those
    from rar_edge.model import create_model
    from rar_edge.model.complexity import entry_macs

    model = create_model("rar-tiny")
    assert row["gmac"] == pytest.approx(entry_macs(model, "restore", 32, 32) / 1e9, rel=1e-9)
    assert row["params"] == sum(p.numel() for p in model.restorer.parameters())
    printed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| rar-tiny |"))
    cells = [c.strip() for c in printed.strip("|").split("|")]
    assert float(cells[5]) == pytest.approx(row["xnnpack fp32"] / row["xnnpack int8"], abs=0.006)
    assert float(cells[8]) == pytest.approx(row["onnxruntime fp32"] / row["onnxruntime int8"], abs=0.006)


def test_bad_arguments_are_one_line_errors(tmp_path, monkeypatch):
    bench = load_bench("restore_blocks")
    from rar_edge.model import create_model
    from rar_edge.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=0)
    with pytest.raises(SystemExit, match="holds a rar-tiny model, not rar-edge-s"):
        bench.load("rar-edge-s", str(tmp_path / "ck"))
    for argv, message in ((["--checkpoint", "rar-tiny"], "takes PRESET=DIR"),
                          (["--presets", "rar-tiny", "--checkpoint", "rar-edge-s=x"], "not in --presets"),
                          (["--presets", "rar-tiny", "--size", "40"], "multiple of 16"),
                          (["--presets", "rar-nope"], "unknown preset 'rar-nope'")):
        monkeypatch.setattr(sys, "argv", ["restore_blocks", *argv])
        with pytest.raises(SystemExit, match=message):
            bench.main()
    # Without a checkpoint the zero-initialised head is perturbed: onnxruntime would drop a zero layer's work.
    assert create_model("rar-tiny").restorer.head.weight.abs().sum() == 0
    assert bench.load("rar-tiny", None).restorer.head.weight.abs().sum() > 0
