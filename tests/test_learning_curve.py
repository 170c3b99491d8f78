"""bench/learning_curve.py: a recipe trained to time marks, every snapshot evaluated at fixed steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rar_edge import DEGRADATIONS
from rar_edge.eval.evaluate import evaluate
from rar_edge.train.checkpoint import load_model

from conftest import load_bench


def test_learning_curve_trains_to_marks_and_evaluates_each(photo_dir, tmp_path, capsys):
    lc = load_bench("learning_curve")
    out = tmp_path / "run"
    args = ["--train", f"--preset rar-tiny --data {photo_dir} --batch 2 --crop 32 --warmup 1",
            "--out", str(out), "--marks", "0.03,0.1", "--photos", str(photo_dir), "--syntheses", "v1,v2",
            "--crop", "32", "--max-images", "2", "--steps", "1", "--json", str(tmp_path / "lc.json")]
    assert lc.main(args) == 0
    rows = json.loads((tmp_path / "lc.json").read_text())
    assert [(r["snapshot"], r["synthesis"]) for r in rows] == [
        ("0.03min", "v1"), ("0.03min", "v2"), ("0.1min", "v1"), ("0.1min", "v2"), ("last", "v1"), ("last", "v2")]
    assert rows[0]["spent_s"] >= 1.8 and rows[0]["step"] < rows[2]["step"] <= rows[4]["step"]  # the last mark ends the budget
    # A mark row is its own snapshot's evaluation, not the last checkpoint's.
    mark, _ = load_model(out / "marks" / "0.03min")
    mark_ref = evaluate(mark, str(photo_dir), lc.fixed_steps(1), crop=32, max_images=2, synthesis="v1")
    assert rows[0]["summary"]["noise"] == pytest.approx(mark_ref["cases"]["noise"]["psnr_out"]
                                                        - mark_ref["cases"]["noise"]["psnr_in"])
    # Each row is what `rar-edge eval` reports for that snapshot at fixed steps, summarised.
    model, _ = load_model(out / "last")
    ref = evaluate(model, str(photo_dir), lc.fixed_steps(1), crop=32, max_images=2, synthesis="v2")
    gains = {d: ref["cases"][d]["psnr_out"] - ref["cases"][d]["psnr_in"] for d in DEGRADATIONS}
    np.testing.assert_allclose([rows[5]["summary"][d] for d in DEGRADATIONS], [gains[d] for d in DEGRADATIONS])
    assert abs(rows[5]["summary"]["single"] - np.mean(list(gains.values()))) < 1e-9
    assert rows[5]["summary"]["mean"] == pytest.approx((rows[5]["summary"]["single"] + rows[5]["summary"]["composite"]) / 2)
    # A checkpoint folder given as a run is its own one snapshot (a baseline beside the runs).
    assert lc.snapshots(out / "last") == [("checkpoint", out / "last")]
    assert [label for label, _ in lc.snapshots(out)] == ["0.03min", "0.1min", "last"]
    assert rows[5]["summary"]["clean_psnr_out"] == pytest.approx(ref["cases"]["clean"]["psnr_out"])
    assert all(res["steps"] == 1 for res in ref["cases"].values())
    assert "| run | snapshot | step | test synthesis |" in capsys.readouterr().out


def test_a_run_with_a_weight_average_lists_each_marks_raw_weights_after_it(tmp_path):
    lc = load_bench("learning_curve")
    for folder in ("marks/15min", "marks/30min", "marks/7.5min", "marks-raw/15min", "marks-raw/7.5min", "last"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text("{}")
    assert lc.snapshots(tmp_path) == [
        ("7.5min", tmp_path / "marks/7.5min"), ("7.5min raw", tmp_path / "marks-raw/7.5min"),
        ("15min", tmp_path / "marks/15min"), ("15min raw", tmp_path / "marks-raw/15min"),
        ("30min", tmp_path / "marks/30min"), ("last", tmp_path / "last")]
    # the last checkpoint's raw weights, beside its average in the extras
    from safetensors.torch import save_file

    save_file({"raw/w": torch.zeros(1), "average_count/updates": torch.zeros(())}, tmp_path / "last/extras.safetensors")
    assert lc.snapshots(tmp_path)[-2:] == [("last", tmp_path / "last"), ("last raw", tmp_path / "last")]
