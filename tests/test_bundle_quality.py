"""bench/bundle_quality.py: held-out gains of bundles through the runtime, side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import load_bench


def test_summary_gains_are_output_minus_input():
    bench = load_bench("bundle_quality")
    cases = {"noise": 25.0, "blur": 30.0, "blur+noise": 22.0, "clean": 100.0}
    inputs = {c: {"psnr": p, "steps": 0, "unchanged": 1.0} for c, p in cases.items()}
    out = {"noise": {"psnr": 28.0, "steps": 3, "harmed": 0.0, "gain_min": 1.5},
           "blur": {"psnr": 29.0, "steps": 1, "harmed": 0.5, "gain_min": -9.0},
           "blur+noise": {"psnr": 24.5, "steps": 2, "harmed": 0.25, "gain_min": -2.0}, "clean": {"psnr": 90.0, "steps": 0, "unchanged": 0.75, "psnr_min": 31.5}}
    s = bench.summary(out, inputs)
    assert s["cases"] == {"noise": 3.0, "blur": -1.0, "blur+noise": 2.5}  # clean is not a degraded case
    assert s["single"] == 1.0 and s["composite"] == 2.5 and s["mean"] == 1.75
    assert s["steps"] == 1.5 and s["clean_unchanged"] == 0.75
    assert s["clean_psnr_min"] == 31.5  # how far the changed clean crop fell
    assert s["harmed"] == 0.25 and s["worst_gain"] == -9.0  # over the degraded cases only


def test_gain_db_caps_and_clips():
    """bench/report.py's gain_db: an exact copy of the clean crop reads as the cap, the gain is output minus input
    after both are clipped to [0, 1] (an out-of-range output is judged as the runtime would save it)."""
    report = load_bench("report")
    clean = np.full((8, 8, 3), 0.5, np.float32)
    noisy = clean + 0.1 * (np.indices((8, 8, 3)).sum(0) % 2 * 2 - 1).astype(np.float32)  # +-0.1: 20 dB
    assert report.gain_db(clean, noisy, clean) == pytest.approx((report.PSNR_CAP_DB, report.PSNR_CAP_DB - 20.0))
    p, gain = report.gain_db(noisy, clean, clean)  # a restore that harms a clean crop by that much
    assert p == pytest.approx(20.0) and gain == pytest.approx(20.0 - report.PSNR_CAP_DB)
    p_clip, _ = report.gain_db(noisy + 5.0, noisy, clean)  # everything clipped to 1: 0.5 off everywhere
    assert p_clip == pytest.approx(-20 * np.log10(0.5))


def test_evaluate_counts_harmed_crops():
    """bench/report.py's evaluate: per case, the share of crops left >= HARM_DB below their input and the lowest
    gain; a method that returns its input harms nothing (gain 0), one that ruins one crop of two is caught."""
    report = load_bench("report")
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (2, 16, 16, 3)).astype(np.float32)
    degraded = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    methods = {"input": lambda x: (x, 0), "ruin": lambda x: (1 - x if x[0, 0, 0] == degraded[0, 0, 0, 0] else x, 1)}
    per = report.evaluate(methods, clean, degraded, ["noise", "noise"], [0, 1])
    assert per["input"]["noise"]["harmed"] == 0.0 and per["input"]["noise"]["gain_min"] == 0.0
    assert per["ruin"]["noise"]["harmed"] == 0.5 and per["ruin"]["noise"]["gain_min"] < -report.HARM_DB


def test_bundles_side_by_side(bundles, photo_dir, tmp_path, capsys):
    """Two bundles of the same weights on two runtimes (ONNX dynamic, ExecuTorch 64x64): one row each, keyed by
    bundle, and the same gains within float rounding (a loop decision at a threshold may flip); a bundle named twice is measured once."""
    bench = load_bench("bundle_quality")
    out = tmp_path / "q.json"
    onnx, pte = str(bundles["dynamic"]), str(bundles["executorch"])
    samples = tmp_path / "samples"  # two photo crops as samples: one noisy, one as it came (gain 0 when untouched)
    (samples / "degraded").mkdir(parents=True)
    (samples / "clean").mkdir()
    photo = np.asarray(Image.open(sorted(photo_dir.glob("*.png"))[0]).convert("RGB"))[:64, :64]
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(samples / "clean" / "a.png")
    for name, img in (("noisy.png", noisy), ("clean.png", photo)):
        Image.fromarray(img).save(samples / "degraded" / name)
    (samples / "samples.json").write_text(json.dumps({"noisy.png": {"clean": "clean/a.png", "degradations": ["noise"]},
                                                      "clean.png": {"clean": "clean/a.png", "degradations": []}}))
    assert bench.main([onnx, pte, onnx, "--photos", str(photo_dir), "--crop", "64", "--syntheses", "v2",
                       "--json", str(out), "--samples", str(samples)]) == 0
    on_samples = json.loads(out.read_text())["samples"]
    assert list(on_samples) == [onnx, pte]
    for row in on_samples.values():
        assert list(row["images"]) == ["noisy.png", "clean.png"]
        assert np.isclose(row["mean"], np.mean([r["gain"] for r in row["images"].values()]))
        untouched = row["images"]["clean.png"]
        assert all(np.isfinite(r["gain"]) for r in row["images"].values())  # capped: a perfect input is 100 dB
        assert untouched["steps"] > 0 or untouched["gain"] == 0.0  # no step: the input back, bit-exact
    results = json.loads(out.read_text())["v2"]
    assert list(results) == [onnx, pte]
    for row in results.values():
        assert set(row["cases"]) == {"noise", "blur", "jpeg", "rain", "haze", "low_light", "blur+noise",
                                     "noise+jpeg", "rain+haze", "blur+noise+jpeg"}
        assert np.isclose(row["mean"], (row["single"] + row["composite"]) / 2)
        assert all(np.isfinite(v) for v in row["cases"].values()) and 0 <= row["steps"] <= 4
        # the worst clean crop: the cap (100 dB) when every one came back unchanged, below it otherwise
        assert (row["clean_psnr_min"] == 100.0) == (row["clean_unchanged"] == 1.0)
        assert 0 <= row["harmed"] <= 1 and row["worst_gain"] <= min(row["cases"].values())
    a, b = results[onnx], results[pte]
    assert abs(a["steps"] - b["steps"]) <= 0.1 and all(abs(a["cases"][c] - b["cases"][c]) < 0.1 for c in a["cases"])
    printed, sample_table = capsys.readouterr().out.split("samples/: PSNR gain in dB (steps run) per image")
    assert sum(line.startswith("| rar-tiny-fp32-") for line in sample_table.splitlines()) == 2
    table = printed.splitlines()
    for name, row in (("rar-tiny-fp32-onnx (dyn)", a), ("rar-tiny-fp32-executorch", b)):
        lines = [line for line in table if line.startswith(f"| {name}")]
        assert len(lines) == 1 and f"{row['mean']:+.2f}" in lines[0], name
        assert lines[0].endswith(f" | {row['clean_psnr_min']:.1f} |"), name


def test_rule_overrides_parse_and_refuse():
    bench = load_bench("bundle_quality")
    assert bench.parse_rule("max_steps=3, min_detect=0,keep=last") == {"max_steps": 3, "min_detect": 0.0, "keep": "last"}
    assert bench.parse_rule("") == {}
    for bad in ("steps=3", "max_steps", "max_steps=three"):
        with pytest.raises(ValueError, match="--rule"):
            bench.parse_rule(bad)


def test_rule_forces_steps_on_every_bundle(bundles, photo_dir, tmp_path):
    """--rule overrides each bundle's own loop: every crop, clean ones too, takes exactly the forced steps."""
    bench = load_bench("bundle_quality")
    out = tmp_path / "q.json"
    onnx = str(bundles["dynamic"])
    forced = "max_steps=2,min_better=0,min_detect=0,target_quality=100,min_gain=-100,min_change=0"
    assert bench.main([onnx, "--photos", str(photo_dir), "--crop", "64", "--syntheses", "v2", "--rule", forced,
                       "--json", str(out)]) == 0
    row = json.loads(out.read_text())["v2"][onnx]
    assert row["steps"] == 2.0 and row["clean_unchanged"] < 1.0  # the clean gate is off too
    with pytest.raises(SystemExit) as e:
        bench.main([onnx, "--photos", str(photo_dir), "--rule", "steps=2"])
    assert e.value.code == 2


def test_not_a_bundle_is_refused(tmp_path):
    bench = load_bench("bundle_quality")
    with pytest.raises(SystemExit) as e:
        bench.main([str(tmp_path), "--photos", str(tmp_path)])
    assert e.value.code == 2
