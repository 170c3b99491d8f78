"""bench/detect_calibration.py: an assessor's detection per type, float and int8, per test synthesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rar_edge import DEGRADATIONS

from conftest import load_bench

calib = load_bench("detect_calibration")


def test_rows_match_the_assessor_on_the_test_set(tiny_checkpoint, photo_dir):
    model = calib.load(str(tiny_checkpoint), str(photo_dir))
    rows = calib.calibration_rows(model, 1, str(photo_dir), "v2")
    assert set(rows) == {"clean", *DEGRADATIONS}
    # Recomputed by hand for one type: the mean noise probability of the noise crops and their quality.
    clean, degraded, names, originals = calib.test_set(str(photo_dir), 1, 256, synthesis="v2")
    noisy = np.array(names) == "noise"
    x = torch.from_numpy(np.ascontiguousarray(degraded[noisy].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        quality, probs, _ = model.assess(model.encode(x))
    assert rows["noise"]["p"] == pytest.approx(float(probs[:, DEGRADATIONS.index("noise")].mean()), abs=1e-5)
    assert rows["noise"]["quality"] == pytest.approx(float(quality.mean()), abs=1e-4)
    mse = [np.mean((degraded[i].astype(np.float64) - clean[originals[i]]) ** 2) for i in np.flatnonzero(noisy)]
    assert rows["noise"]["true"] == pytest.approx(float(np.mean(10 * np.log10(1 / np.array(mse)))), abs=1e-3)
    for name in DEGRADATIONS:
        assert 0.0 <= rows[name]["auc"] <= 1.0 and 0.0 <= rows[name]["p"] <= 1.0


def test_int8_programs_and_bad_kinds(distilled, photo_dir):
    out, _ = distilled
    student = out / "student"
    float_rows = calib.calibration_rows(calib.load(str(student), str(photo_dir)), 1, str(photo_dir), "v2")
    int8_rows = calib.calibration_rows(calib.load(f"{student}:int8", str(photo_dir)), 1, str(photo_dir), "v2")
    # The int8 programs are another instrument than the float weights: their assessments differ.
    assert int8_rows["clean"]["quality"] != pytest.approx(float_rows["clean"]["quality"], abs=1e-4)
    with pytest.raises(SystemExit, match="unknown kind 'fp16'"):
        calib.load(f"{student}:fp16", str(photo_dir))
    with pytest.raises(SystemExit, match="holds no int8 programs"):
        calib.load(f"{out / 'float' / 'last'}:int8", str(photo_dir))
