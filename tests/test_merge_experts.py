"""bench/merge_experts.py: task arithmetic over expert checkpoints."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import load_bench


def test_merge_sums_the_parts_changes_and_averages_the_rest():
    bench = load_bench("merge_experts")
    base = {"restorer.w": np.zeros(3, np.float32), "encoder.w": np.ones(2, np.float32), "steps": np.array([5])}
    a = {"restorer.w": np.array([1, 0, 0], np.float32), "encoder.w": np.array([3, 1], np.float32), "steps": np.array([9])}
    b = {"restorer.w": np.array([0, 2, 0], np.float32), "encoder.w": np.array([1, 3], np.float32), "steps": np.array([7])}
    m = bench.merge(base, [a, b], scale=0.5, parts={"restorer"})
    np.testing.assert_allclose(m["restorer.w"], [0.5, 1.0, 0.0])  # base + 0.5 * (sum of changes)
    np.testing.assert_allclose(m["encoder.w"], [2.0, 2.0])  # base + mean change
    assert m["steps"].tolist() == [5] and m["restorer.w"].dtype == np.float32


def test_cli_writes_a_checkpoint_and_refuses_unrelated_experts(tmp_path, monkeypatch, capsys):
    bench = load_bench("merge_experts")
    for name, value in (("base", 0.0), ("e1", 1.0), ("other", 0.0)):
        (tmp_path / name).mkdir()
        shape = (2,) if name != "other" else (3,)
        save_file({"restorer.w": np.full(shape, value, np.float32)}, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "config.json").write_text(json.dumps({"preset": "rar-tiny"}))
    monkeypatch.setattr(sys, "argv", ["m", "--base", str(tmp_path / "base"), "--expert", str(tmp_path / "e1"),
                                      "--scale", "2", "--out", str(tmp_path / "out")])
    bench.main()
    assert load_file(str(tmp_path / "out" / "last" / "model.safetensors"))["restorer.w"].tolist() == [2.0, 2.0]
    assert json.loads((tmp_path / "out" / "last" / "config.json").read_text())["merged"]["scale"] == 2.0
    monkeypatch.setattr(sys, "argv", ["m", "--base", str(tmp_path / "base"), "--expert", str(tmp_path / "other"),
                                      "--out", str(tmp_path / "out2")])
    with pytest.raises(SystemExit, match="not a fine-tune"):
        bench.main()
