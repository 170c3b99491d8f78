"""bench/gpu_window.py: every stage of a GPU window (probe, time-budgeted training, pack), in smoke mode on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from rar_edge.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("gpu_window", ROOT / "bench" / "gpu_window.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_window_yields_a_packed_model_and_rates(tmp_path, capsys):
    gw = _bench()
    assert gw.main(["--smoke", "--out", str(tmp_path / "w")]) == 0
    stages = json.loads((tmp_path / "w" / "window.json").read_text())
    assert set(stages) == {"probe eager", "train", "total"}
    assert stages["probe eager"]["img_per_s"] > 0 and stages["train"]["img_per_s"] > 0
    assert stages["total"]["seconds"] < 60
    model, cfg = load_model(tmp_path / "w" / "packed")
    assert cfg["weights_dtype"] == "float16" and "bench/gpu_window.py" in cfg["note"]
    assert cfg["train_config"]["minutes"] > 0 and cfg["train_config"]["channels_last"] is False
    # Trained weights, not the initial ones: the packed model is the run's best (or last) checkpoint.
    run_best, _ = load_model(tmp_path / "w" / "run" / "best")
    for (k, a), (_, b) in zip(run_best.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(b, a.half().float(), msg=k)
    assert len(list((tmp_path / "w" / "run" / "marks").iterdir())) == 3
    out = capsys.readouterr().out
    assert "probe eager:" in out and "img/s" in out and "packed" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_no_gpu_is_a_one_line_error_before_work(tmp_path, capsys):
    gw = _bench()
    assert gw.main(["--out", str(tmp_path / "w"), "--data", str(tmp_path)]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert not (tmp_path / "w" / "run").exists()


def test_unwritable_output_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert _bench().main(["--smoke", "--out", str(tmp_path / "f" / "w")]) == 2
    assert "cannot write" in capsys.readouterr().err
