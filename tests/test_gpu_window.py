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


def test_gpu_data_is_a_compact_copy_within_its_budget(photo_dir, tmp_path):
    """bench/gpu_data.py: JPEG copies at the trainer's size, the held-out ones first, training photos until the
    budget is spent; a folder that is not `rar-edge photos` output, or a used --out, is refused."""
    import shutil

    from PIL import Image

    gd = load_bench("gpu_data")
    photos = tmp_path / "photos"
    for split in ("train", "heldout"):
        shutil.copytree(photo_dir, photos / split)
    n = len(list((photos / "train").iterdir()))
    _, _, val_bytes = gd.compact(photos / "heldout", tmp_path / "probe_val", 1e9, limit=2)
    _, _, one = gd.compact(photos / "train", tmp_path / "probe_train", 1e9, limit=1)
    budget = val_bytes + 1.5 * one  # the 2 held-out copies and one and a half training photos' worth
    out = tmp_path / "gpu"
    assert gd.main(["--photos", str(photos), "--out", str(out), "--budget-mb", str(budget / 1e6), "--val", "2"]) == 0
    assert len(list((out / "heldout").iterdir())) == 2
    train = sorted((out / "train").iterdir())
    assert 1 <= len(train) < n and all(p.suffix == ".jpg" for p in train)
    assert sum(p.stat().st_size for p in (*train, *(out / "heldout").iterdir())) <= budget
    with Image.open(train[0]) as im:
        assert max(im.size) <= gd.MAX_SIDE and im.mode == "RGB"
    assert gd.main(["--photos", str(photos), "--out", str(out)]) == 2  # not empty
    assert gd.main(["--photos", str(photo_dir), "--out", str(tmp_path / "x")]) == 2  # no train/ heldout/
