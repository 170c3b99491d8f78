"""bench/haze_prior.py: the dark channel prior's dehaze on held-out crops, and its gate by the dark channel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_bench


def test_the_dark_channel_dehaze_undoes_the_haze_model_it_inverts():
    """On an image hazed by I = J t + A (1 - t) with a known airlight, the dehaze comes closer to J; a clear
    image with dark shadows keeps a dark channel near 0."""
    baselines = load_bench("baselines")
    rng = np.random.default_rng(0)
    clear = np.clip(rng.random((64, 64, 3)) * 0.8 + 0.1, 0, 1)
    clear[::8] = 0.02  # shadows: the prior's dark pixels in every patch
    hazy = clear * 0.5 + 0.9 * 0.5
    assert np.percentile(baselines.dark_channel(clear), 10) < 0.05 < np.percentile(baselines.dark_channel(hazy), 10)
    err = lambda x: float(np.mean((np.clip(x, 0, 1) - clear) ** 2))  # noqa: E731
    assert err(baselines.dark_channel_dehaze(hazy, omega=0.95)) < 0.5 * err(hazy)


def test_bench_reports_aucs_oracle_and_gated_gains(photo_dir, bundles, tmp_path, capsys):
    bench = load_bench("haze_prior")
    out = tmp_path / "haze.json"
    assert bench.main(["--photos", str(photo_dir), "--bundle", str(bundles["onnx"]), "--syntheses", "v2",
                       "--crop", "64", "--omegas", "0.9,0.5", "--thresholds", "0.1,0.3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["v2"]
    assert set(report["auc"]) == {"assessor haze probability", "dark channel p10"}
    assert all(0.0 <= v <= 1.0 for v in report["auc"].values())
    assert set(report["oracle"]) == {"0.9", "0.5"} and set(report["oracle"]["0.5"]) == {"haze", "rain+haze"}
    assert set(report["gated"]) == {"0.1", "0.3"}
    for row in report["gated"].values():
        assert 0.0 <= row["clean changed"] <= 1.0 and "haze" in row and "clean" not in row
    # A stricter gate opens for fewer crops: no more clean crops changed.
    assert report["gated"]["0.3"]["clean changed"] <= report["gated"]["0.1"]["clean changed"]
    printed = capsys.readouterr().out
    assert "ROC-AUC for haze present" in printed and "| omega 0.5 where dark channel p10 ≥ |" in printed
    with pytest.raises(SystemExit) as e:
        bench.main(["--photos", str(tmp_path / "missing")])
    assert e.value.code == 2
