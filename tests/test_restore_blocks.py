"""bench/restore_blocks.py: entry points of each block kind, lowered fp32 and int8 for XNNPACK and onnxruntime."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import load_bench


def test_a_row_per_preset_and_entry_with_every_runtime_and_precision(capsys, monkeypatch, tmp_path):
    bench = load_bench("restore_blocks")
    # The restore step (two inputs), lowered four ways; one entry is enough here (two took 100-170 s of the
    # suite's time: every lowering is an export), the loop over entries is the next test's.
    monkeypatch.setattr(sys, "argv", ["restore_blocks", "--presets", "rar-tiny", "--size", "32", "--runs", "1",
                                      "--rounds", "1", "--entries", "restore", "--json", str(tmp_path / "r.json")])
    bench.main()
    rows = json.loads((tmp_path / "r.json").read_text())["rar-tiny"]
    assert list(rows) == ["restore"]  # no loop row without all four entries
    from rar_edge.model import create_model
    from rar_edge.model.complexity import entry_macs

    model = create_model("rar-tiny")
    printed = capsys.readouterr().out.splitlines()
    row = rows["restore"]
    assert all(row[k] > 0 for k in bench.LOWERINGS)  # no timing claim: bench/ makes those
    assert row["gmac"] == pytest.approx(entry_macs(model, "restore", 32, 32) / 1e9, rel=1e-9)
    assert row["params"] == sum(p.numel() for p in model.restorer.parameters())
    line = next(x for x in printed if x.startswith("| rar-tiny | restore |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[6]) == pytest.approx(row["xnnpack fp32"] / row["xnnpack int8"], abs=0.006)
    assert float(cells[9]) == pytest.approx(row["onnxruntime fp32"] / row["onnxruntime int8"], abs=0.006)
    assert not any("2-step loop" in x for x in printed)


def test_every_entry_and_the_loop_per_preset(capsys, monkeypatch, tmp_path):
    # Lowering is covered above; here each call's figures are made up (distinct per entry, lowering and model)
    # to check what the loop sums and that each preset's own model is timed.
    bench = load_bench("restore_blocks")
    from rar_edge.model.blocks import ConvBlock

    seen = []

    def fake_measure(model, name, size, runs, rounds, threads):
        dense = isinstance(model.assessor.scales[0].blocks[0], ConvBlock)
        seen.append((name, dense))
        base = {"encode": 1.0, "assess": 10.0, "restore": 100.0, "decode": 1000.0}[name] * (2 if dense else 1)
        return {"gmac": 0.0, "params": 0, **{k: base * (i + 1) for i, k in enumerate(bench.LOWERINGS)}}

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(sys, "argv", ["restore_blocks", "--presets", "rar-tiny,rar-edge-s-dense", "--entries",
                                      "encode,assess,restore,decode", "--json", str(tmp_path / "r.json")])
    bench.main()
    assert sorted(seen) == sorted((e, d) for e in ("encode", "assess", "restore", "decode") for d in (False, True))
    rows = json.loads((tmp_path / "r.json").read_text())
    assert list(rows) == ["rar-tiny", "rar-edge-s-dense"]
    for label, factor in (("rar-tiny", 1), ("rar-edge-s-dense", 2)):
        loop = rows[label]["loop"]
        for i, lowering in enumerate(bench.LOWERINGS):  # 1 encode, 3 assess, 2 restore, 1 decode
            assert loop[lowering] == pytest.approx(factor * (i + 1) * (1 + 30 + 200 + 1000))
        # int8 with the assessor's fp32 calls: xnnpack int8 is lowering 2, its fp32 lowering 1; ort 4 and 3
        assert loop["xnnpack int8, float assess"] == pytest.approx(factor * (2 * 1201 + 30))
        assert loop["onnxruntime int8, float assess"] == pytest.approx(factor * (4 * 1201 + 3 * 30))
    out = capsys.readouterr().out
    # the XNNPACK loop row of rar-tiny: fp32 1231, int8 with float assess 2432, all int8 2462
    assert "| rar-tiny | XNNPACK | 1231.0 | 2432.0 | 0.51 | 2462.0 | 0.50 |" in out


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
                          (["--presets", "rar-nope"], "unknown preset 'rar-nope'"),
                          (["--presets", "rar-tiny", "--entries", "assess,squash"], "--entries takes entry points")):
        monkeypatch.setattr(sys, "argv", ["restore_blocks", *argv])
        with pytest.raises(SystemExit, match=message):
            bench.main()
    # Without a checkpoint the zero-initialised head is perturbed: onnxruntime would drop a zero layer's work.
    assert create_model("rar-tiny").restorer.head.weight.abs().sum() == 0
    assert bench.load("rar-tiny", None).restorer.head.weight.abs().sum() > 0
