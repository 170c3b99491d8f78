"""JPEG's 8×8 block grid as a detector (runtime/jpeg_grid.py), in `Restorer.assess` and `rar-edge assess`;
bench/jpeg_grid.py's fit and report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rar_edge.runtime import Restorer
from rar_edge.runtime.jpeg_grid import grid_score, jpeg_probability

from conftest import REPO, cli, load_bench

CLEAN = sorted((REPO / "samples" / "clean").glob("*.png"))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def photo(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_low_quality_jpeg_is_found_and_photos_never_compressed_are_not():
    assert len(CLEAN) >= 5
    for path in CLEAN:
        x = photo(path)
        assert 0.9 < grid_score(x) < 1.1 and jpeg_probability(grid_score(x)) < 0.2, path.name
        y = jpeg(x, 20)
        assert grid_score(y) > 1.4 and jpeg_probability(grid_score(y)) > 0.95, path.name
    # Coarser quantization, larger steps on the grid: the score falls as the quality rises.
    x = photo(CLEAN[0])
    scores = [grid_score(jpeg(x, q)) for q in (10, 30, 60, 95)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0] - 0.5


def test_the_score_reads_any_pixel_type_alike():
    y = jpeg(photo(CLEAN[0]), 20)
    s = grid_score(y)
    assert grid_score(y.astype(np.uint16) * 257) == pytest.approx(s, rel=1e-5)
    assert grid_score(y.astype(np.float32) / 255) == pytest.approx(s, rel=1e-5)
    rgba = np.dstack([y, np.full(y.shape[:2], 255, np.uint8)])
    assert grid_score(rgba) == pytest.approx(s, rel=1e-6)  # alpha is not read


def test_the_grid_is_found_from_either_corner_and_lost_off_it():
    y = jpeg(photo(CLEAN[1]), 20)
    found = jpeg_probability(grid_score(y))
    assert found > 0.95
    # Turned upright by an EXIF orientation, or cropped from the top-left: the grid ends at the far corner.
    for turned in (np.rot90(y), np.rot90(y, 2), y[:, ::-1], y[3:, 5:]):
        assert jpeg_probability(grid_score(np.ascontiguousarray(turned))) > 0.95
    # Cropped off the grid on both sides, or resized: no grid left to find.
    assert jpeg_probability(grid_score(y[3:-2, 5:-1])) < 0.5
    resized = np.asarray(Image.fromarray(y).resize((203, 203), Image.BICUBIC))
    assert jpeg_probability(grid_score(resized)) < 0.5
    # Too small to hold two blocks a side: no evidence either way.
    assert grid_score(y[:15, :40]) == 1.0


def test_assess_names_jpeg_where_the_grid_is_found(bundles):
    restorer = Restorer.load(bundles["onnx"])
    x = photo(CLEAN[0])
    a, b = restorer.assess(x), restorer.assess(jpeg(x, 15))
    assert a.jpeg_grid == pytest.approx(jpeg_probability(grid_score(x))) and a.jpeg_grid < 0.2
    assert b.jpeg_grid > 0.95 and "jpeg" in b.present
    # present: the assessor's own findings, and jpeg where either says so, at the caller's threshold.
    for res in (a, b):
        merged = {**res.degradations, "jpeg": max(res.degradations["jpeg"], res.jpeg_grid)}
        assert res.present == [n for n, p in merged.items() if p >= 0.5]
    assert "jpeg" not in restorer.assess(jpeg(x, 15), threshold=0.99999999).present
    assert b.to_json()["jpeg_grid"] == round(b.jpeg_grid, 4)


def test_assess_cli_shows_the_grid(bundles, tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(CLEAN[0])).save(path, format="JPEG", quality=15)
    status, out, err = cli("assess", path, "--bundle", bundles["onnx"])
    assert status == 0, err
    header, row = out.splitlines()
    assert "jpeg grid" in header and row.split()[-1].endswith("jpeg")  # present ends the row
    grid = float(row.split()[-2].rstrip(","))
    assert grid > 0.95
    status, out, err = cli("assess", path, "--bundle", bundles["onnx"], "--json")
    assert status == 0 and json.loads(out)["jpeg_grid"] > 0.95 and "jpeg" in json.loads(out)["present"]


def test_bench_fits_a_rising_logistic_and_reports_the_auc(photo_dir, bundles, tmp_path, capsys):
    bench = load_bench("jpeg_grid")
    out = tmp_path / "fit.json"
    assert bench.main(["--fit", str(photo_dir), "--syntheses", "v2", "--crop", "96", "--json", str(out)]) == 0
    fit = json.loads(out.read_text())["fit"]
    assert fit["weight"] > 0 and fit["crops"] == 11 * len([p for p in photo_dir.iterdir() if p.is_file()])
    assert 0.5 < fit["auc"] <= 1.0
    assert "WEIGHT, BIAS = " in capsys.readouterr().out
    assert bench.main(["--photos", str(photo_dir), "--bundle", str(bundles["onnx"]), "--syntheses", "v2",
                       "--crop", "96", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    v2 = report["held_out"]["v2"]
    assert v2["grid"] > 0.5 and set(v2["found_at_0.5"]) >= {"jpeg", "clean"}
    assert set(report["ms"]) == {"512x512", "4000x3000"}
    with pytest.raises(SystemExit) as e:
        bench.main(["--fit", str(photo_dir), "--photos", str(photo_dir)])
    assert e.value.code == 2


def test_bench_replays_a_loop_with_the_gate_reading_the_grid(photo_dir, tiny_checkpoint, tmp_path, capsys):
    bench = load_bench("jpeg_grid")
    out = tmp_path / "loop.json"
    assert bench.main(["--photos", str(photo_dir), "--loop", str(tiny_checkpoint), "--syntheses", "v2",
                       "--crop", "64", "--max-images", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["loop"]["v2"]
    assert set(rows) == {"loop", "gate reads the grid"}
    assert {"jpeg", "noise+jpeg"} <= set(rows["loop"]["cases"])
    # The grid only raises the gate's JPEG probability, and only a little where there is no grid: inputs
    # without JPEG replay as they did.
    for case in ("noise", "blur", "rain"):
        assert rows["gate reads the grid"]["cases"][case] == rows["loop"]["cases"][case]
    assert "gate reads the grid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.main(["--fit", str(photo_dir), "--loop", str(tiny_checkpoint)])
    assert e.value.code == 2
