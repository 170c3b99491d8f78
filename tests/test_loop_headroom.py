"""bench/loop_headroom.py: the loop against fixed step counts and a per-image oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rar_edge.eval.fit_stop import Trajectories

from conftest import load_bench


def test_headroom_scores_the_loop_fixed_steps_and_the_best_step_per_image():
    bench = load_bench("loop_headroom")
    # Two noise images (best at 2 and 1 steps), one blur image (steps only lose), one clean crop.
    psnr = np.array([[20.0, 22.0, 25.0], [20.0, 24.0, 23.0], [30.0, 29.0, 28.0], [40.0, 38.0, 37.0]])
    traj = Trajectories(["noise", "noise", "blur", "clean"], np.zeros((4, 3)), psnr, np.array([20.0, 20.0, 30.0, 40.0]),
                        np.zeros((4, 2)))
    rows = bench.headroom(traj, np.array([1, 1, 0, 0]))  # the loop stops every image after 1 step or none
    assert rows["loop"]["cases"] == {"noise": 3.0, "blur": 0.0} and rows["loop"]["clean_unchanged"] == 1.0
    assert rows["oracle"]["cases"] == {"noise": 4.5, "blur": 0.0}  # best of 0..2 per image; 0 is the input
    assert rows["2 steps"]["cases"] == {"noise": 4.0, "blur": -2.0} and rows["1 steps"]["cases"]["blur"] == -1.0
    assert rows["oracle"]["single"] == pytest.approx(2.25) and np.isnan(rows["oracle"]["composite"])


def test_headroom_runs_a_checkpoints_own_loop(tiny_checkpoint, photo_dir, tmp_path, capsys):
    bench = load_bench("loop_headroom")
    out = tmp_path / "h.json"
    assert bench.main(["--checkpoint", str(tiny_checkpoint), "--photos", str(photo_dir), "--syntheses", "v2",
                       "--cap", "2", "--crop", "64", "--max-images", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["v2"]
    assert list(rows) == ["loop", "oracle", "1 steps", "2 steps"]
    for case, oracle in rows["oracle"]["cases"].items():  # the oracle keeps each image's best: nothing beats it
        assert oracle >= max(rows[k]["cases"][case] for k in ("loop", "1 steps", "2 steps")) - 1e-9 and oracle >= 0
    printed = capsys.readouterr().out
    assert "| oracle |" in printed and "centre crops of 64² per case" in printed
