"""bench/loop_cost.py: a checkpoint at fixed steps against its own stop rule, on the same held-out crops."""

from __future__ import annotations

import pytest

from conftest import load_bench


def test_fixed_steps_and_own_rule_rows(tiny_checkpoint, photo_dir, capsys):
    bench = load_bench("loop_cost")
    ckpt = str(tiny_checkpoint)
    assert bench.main([ckpt, "--own-rule", ckpt, "--photos", str(photo_dir), "--crop", "64", "--steps", "2",
                       "--syntheses", "v2"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {ckpt}")}
    fixed, own = rows[f"{ckpt} (2 fixed steps)"], rows[f"{ckpt} (own rule)"]
    assert float(fixed[-3]) == 2.0  # every crop, clean ones included, ran exactly 2 steps
    assert fixed[-2].strip() == "0%"  # so no clean crop came back unchanged
    assert 0 <= float(own[-3]) <= 4  # the tiny preset's own cap


def test_needs_a_checkpoint_and_a_positive_step_count(tmp_path):
    bench = load_bench("loop_cost")
    for args in ([], ["x", "--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            bench.main([*args, "--photos", str(tmp_path)])
        assert e.value.code == 2
