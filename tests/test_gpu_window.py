"""bench/gpu_window.py: every stage of a GPU window (probe, time-budgeted training, pack), in smoke mode on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from rar_edge.train.checkpoint import load_model

from conftest import load_bench


def test_smoke_window_yields_a_packed_model_and_rates(tmp_path, capsys):
    gw = load_bench("gpu_window")
    assert gw.main(["--smoke", "--out", str(tmp_path / "w")]) == 0
    stages = json.loads((tmp_path / "w" / "window.json").read_text())
    assert set(stages) == {"probe eager", "train", "total"}
    assert stages["probe eager"]["img_per_s"] > 0 and stages["train"]["img_per_s"] > 0
    assert stages["total"]["seconds"] < 60
    model, cfg = load_model(tmp_path / "w" / "packed")
    assert cfg["weights_dtype"] == "float16" and "bench/gpu_window.py" in cfg["note"]
    assert cfg["train_config"]["minutes"] > 0 and cfg["train_config"]["channels_last"] is False
    # The packed model is the run's best checkpoint, and trained: not the initial weights.
    from rar_edge.model import RAR, get_preset

    run_best, _ = load_model(tmp_path / "w" / "run" / "best")
    packed, best = model.state_dict(), run_best.state_dict()
    assert packed.keys() == best.keys()
    for k in best:
        torch.testing.assert_close(packed[k], best[k].half().float(), msg=k)
    torch.manual_seed(0)
    initial = RAR(get_preset("rar-tiny").config).state_dict()
    assert any(not torch.equal(packed[k], initial[k].half().float()) for k in initial if initial[k].is_floating_point())
    assert len(list((tmp_path / "w" / "run" / "marks").iterdir())) == 3
    out = capsys.readouterr().out
    assert "probe eager:" in out and "img/s" in out and "packed" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_no_gpu_is_a_one_line_error_before_work(tmp_path, capsys):
    gw = load_bench("gpu_window")
    assert gw.main(["--out", str(tmp_path / "w"), "--data", str(tmp_path)]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert not (tmp_path / "w" / "run").exists()


def test_a_used_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "w" / "run").mkdir(parents=True)
    assert load_bench("gpu_window").main(["--smoke", "--out", str(tmp_path / "w")]) == 2
    assert "already holds a GPU window's run" in capsys.readouterr().err


def test_unwritable_output_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert load_bench("gpu_window").main(["--smoke", "--out", str(tmp_path / "f" / "w")]) == 2
    assert "cannot write" in capsys.readouterr().err
