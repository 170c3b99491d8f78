"""bench/harmed_crops.py: the held-out crops a bundle's loop made worse, with what it saw and did."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import load_bench


class Brightener:
    """A stand-in restorer: brightens crops whose mean is under 0.3 (as a loop that takes dark photos for
    under-exposed ones), returns the others as they came."""

    def restore(self, x, **rule):
        dark = float(x.mean()) < 0.3
        return SimpleNamespace(image=np.clip(x + 0.3, 0, 1) if dark else x, steps=2 if dark else 0,
                               degradations={"noise": 0.1, "low_light": 0.9 if dark else 0.2},
                               stop_reason="worse" if dark else "clean")


def test_rows_are_the_harmed_crops_worst_first():
    bench = load_bench("harmed_crops")
    rng = np.random.default_rng(0)
    clean = np.stack([np.full((8, 8, 3), 0.1), np.full((8, 8, 3), 0.6), np.full((8, 8, 3), 0.15)]).astype(np.float32)
    degraded = np.clip(clean + rng.normal(0, 0.02, clean.shape), 0, 1).astype(np.float32)
    rows = bench.harmed_rows(Brightener(), clean, np.concatenate([degraded, clean[:1]]),
                             ["noise", "noise", "blur", "clean"], [0, 1, 2, 0])
    assert {(r["case"], r["crop"]) for r in rows} == {("noise", 0), ("blur", 2)}  # not the bright crop, nor clean
    assert rows[0]["gain_db"] <= rows[1]["gain_db"] < -1.0
    for r in rows:
        assert r["top"] == "low_light" and r["top_p"] == 0.9 and r["steps"] == 2 and r["stop"] == "worse"
        assert abs(r["mean_change"] - 0.3) < 0.01 and r["input_mean"] < 0.3


def test_cli_lists_rows_of_a_bundle(bundles, photo_dir, tmp_path, capsys):
    bench = load_bench("harmed_crops")
    out = tmp_path / "h.json"
    assert bench.main([str(bundles["dynamic"]), "--photos", str(photo_dir), "--crop", "64", "--syntheses", "v2",
                       "--harm-db", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["v2"]
    text = capsys.readouterr().out
    assert f"v2: {len(rows)} of " in text and "most probable degradation of the harmed crops" in text
    assert rows, "the tiny test model's loop changes some crops for the worse"
    assert all(r["gain_db"] <= 0 and r["case"] != "clean" for r in rows)
    assert [r["gain_db"] for r in rows] == sorted(r["gain_db"] for r in rows)


def test_rule_reaches_every_restore(bundles, photo_dir, tmp_path):
    bench = load_bench("harmed_crops")
    out = tmp_path / "h.json"
    assert bench.main([str(bundles["dynamic"]), "--photos", str(photo_dir), "--crop", "64", "--syntheses", "v2",
                       "--harm-db", "-100", "--rule", "max_steps=1,min_better=0,min_detect=0,target_quality=100,"
                       "min_gain=-100,min_change=0,keep=last", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["v2"]
    assert rows and all(r["steps"] == 1 for r in rows)  # every degraded crop listed (-100 dB), each one step
    with pytest.raises(SystemExit):
        bench.main([str(bundles["dynamic"]), "--photos", str(photo_dir), "--rule", "cap=1"])


def test_not_a_bundle_is_refused(tmp_path):
    bench = load_bench("harmed_crops")
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path), "--photos", str(tmp_path)])
    assert e.value.code == 2
