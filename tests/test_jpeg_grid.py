"""JPEG's 8×8 block grid as a detector (runtime/jpeg_grid.py), in `Restorer.assess` and `rar-edge assess`;
bench/jpeg_grid.py's fit and report."""

from __future__ import annotations

import io
import json
import re
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
    # Flat 8×8 blocks: every step off the grid is 0, so the score is the grid's step over the 1e-4 floor, in
    # 8-bit levels: a type read at another scale would move it by that scale.
    levels = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    blocks = np.kron(levels, np.ones((8, 8, 1), np.uint8))
    s = grid_score(blocks)
    assert s > 1e4
    assert grid_score(blocks.astype(np.uint16) * 257) == pytest.approx(s, rel=1e-5)
    for t in (np.float32, np.float64):
        assert grid_score(blocks.astype(t) / 255) == pytest.approx(s, rel=1e-5)
    rgba = np.dstack([blocks, np.zeros(blocks.shape[:2], np.uint8)])
    assert grid_score(rgba) == s  # alpha is not read


def test_bad_pixels_get_a_one_line_error():
    from rar_edge.errors import RarEdgeError

    for bad, what in ((np.zeros((32, 32), np.uint8), "shape"), (np.zeros((32, 32, 1), np.uint8), "shape"),
                      (np.zeros((32, 32, 3), np.int32), "int32")):
        with pytest.raises(RarEdgeError, match=what):
            grid_score(bad)
    with pytest.raises(RarEdgeError, match="at least one line"):
        grid_score(np.zeros((32, 32, 3), np.uint8), lines=0)
    nan = np.full((32, 32, 3), np.nan, np.float32)
    assert grid_score(nan) == 1.0  # no evidence, not NaN


def test_with_grid_raises_only_jpeg_and_only_upward():
    from rar_edge.runtime.jpeg_grid import with_grid

    probs = {"noise": 0.7, "jpeg": 0.2}
    assert with_grid(probs, 0.9) == {"noise": 0.7, "jpeg": 0.9}
    assert with_grid(probs, 0.1) == probs and probs == {"noise": 0.7, "jpeg": 0.2}  # the input is not changed


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
    for image in (x, jpeg(x, 15)):
        for threshold in (0.05, 0.5, 0.9):
            res = restorer.assess(image, threshold=threshold)
            merged = {**res.degradations, "jpeg": max(res.degradations["jpeg"], res.jpeg_grid)}
            assert res.present == [n for n, p in merged.items() if p >= threshold]
    assert "jpeg" in restorer.assess(x, threshold=0.05).present  # the grid's 0.07 for a photo never compressed
    assert b.to_json()["jpeg_grid"] == round(b.jpeg_grid, 4)


def test_assess_cli_shows_the_grid(bundles, tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(CLEAN[0])).save(path, format="JPEG", quality=15)
    status, out, err = cli("assess", path, "--bundle", bundles["onnx"], "--json")
    record = json.loads(out)
    assert status == 0 and record["jpeg_grid"] > 0.95 and "jpeg" in record["present"]
    status, out, err = cli("assess", path, "--bundle", bundles["onnx"])
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split()[-3:] == ["jpeg", "grid", "present"]
    assert f"{record['jpeg_grid']:.2f}  {', '.join(record['present'])}" in row


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
    assert set(report["ms"]) == {f"{w}x{h}" for h, w in bench.COST_SIZES} | {"4000x3000, every line"}
    assert {"512x512", "2300x1535", "4000x3000", "8000x6000"} <= set(report["ms"])  # the sizes the docs cite
    with pytest.raises(SystemExit) as e:
        bench.main(["--fit", str(photo_dir), "--photos", str(photo_dir)])
    assert e.value.code == 2


def test_bench_replays_a_loop_with_the_gate_reading_the_grid(photo_dir, tiny_checkpoint, tmp_path, capsys):
    bench = load_bench("jpeg_grid")
    out = tmp_path / "loop.json"
    assert bench.main(["--photos", str(photo_dir), "--loop", str(tiny_checkpoint), "--syntheses", "v2",
                       "--crop", "64", "--max-images", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["loop"]["v2"]
    assert set(rows) == {"loop", "gate reads the grid", "grid_found"}
    assert rows["grid_found"]["jpeg"] > 0 and rows["grid_found"]["clean"] == 0  # the recording's own inputs
    assert {"jpeg", "noise+jpeg"} <= set(rows["loop"]["cases"])
    # The grid only raises the gate's JPEG probability, and only a little where there is no grid: inputs
    # without JPEG replay as they did.
    for case in ("noise", "blur", "rain"):
        assert rows["gate reads the grid"]["cases"][case] == rows["loop"]["cases"][case]
    assert "gate reads the grid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.main(["--fit", str(photo_dir), "--loop", str(tiny_checkpoint)])
    assert e.value.code == 2


def test_a_sample_of_lines_reads_the_grid_of_a_large_photo():
    from skimage import data

    # 2048 × 2048 (sampled every second line), mirrored: tiles side by side would step at their seams, on the grid
    x = np.pad(data.astronaut(), ((0, 1536), (0, 1536), (0, 0)), mode="symmetric")
    y = jpeg(x, 30)
    for image in (x, y):
        assert grid_score(image) == pytest.approx(grid_score(image, lines=1 << 30), abs=0.05)
    assert grid_score(y, lines=16) != grid_score(y)  # the sample is what ``lines`` says
    assert jpeg_probability(grid_score(y)) > 0.95 > 0.2 > jpeg_probability(grid_score(x))


def test_restore_reports_the_grid_without_acting_on_it(bundles, tmp_path, monkeypatch):
    import rar_edge.runtime.restorer as restorer_module

    restorer = Restorer.load(bundles["onnx"])
    y = jpeg(photo(CLEAN[0]), 15)
    res = restorer.restore(y, max_steps=2, min_detect=0)
    assert res.jpeg_grid == pytest.approx(jpeg_probability(grid_score(y))) and res.jpeg_grid > 0.95
    assert res.to_json()["jpeg_grid"] == round(res.jpeg_grid, 4) and res.ms["jpeg_grid"] > 0
    # The loop does not read it: with no grid found, the same steps, qualities and pixels.
    monkeypatch.setattr(restorer_module, "grid_probability", lambda rgb: jpeg_probability(1.0))
    blind = restorer.restore(y, max_steps=2, min_detect=0)
    assert blind.jpeg_grid < 0.2 and res.steps_run == blind.steps_run > 0
    assert (res.steps, res.stop_reason, res.quality, res.degradations) == \
        (blind.steps, blind.stop_reason, blind.quality, blind.degradations)
    assert np.array_equal(res.image, blind.image)


def test_the_grid_never_breaks_a_budget(bundles, monkeypatch):
    import time

    import rar_edge.runtime.restorer as restorer_module

    restorer = Restorer.load(bundles["onnx"], warmup=False)  # warmup() would measure the grid too
    y = jpeg(photo(CLEAN[0]), 15)
    # Unmeasured, a budgeted call leaves it out; an unbudgeted call measures it, and budgets that pay for it
    # get it after that.
    assert restorer.restore(y, budget_ms=1e6).jpeg_grid is None
    assert restorer.restore(y).jpeg_grid > 0.95
    assert restorer.restore(y, budget_ms=1e6).jpeg_grid > 0.95
    assert Restorer.load(bundles["onnx"]).restore(y, budget_ms=1e6).jpeg_grid > 0.95  # warmup() measured it
    # A grid that costs 300 ms: measured once, then left out where the budget cannot pay four times that.
    slow = restorer_module.grid_probability

    def slow_probability(rgb):
        time.sleep(0.3)
        return slow(rgb)

    monkeypatch.setattr(restorer_module, "grid_probability", slow_probability)
    res = restorer.restore(y)
    assert res.ms["jpeg_grid"] >= 300 and res.ms["overhead"] < 300  # its time is its own, not the overhead's
    budgeted = restorer.restore(y, budget_ms=400)
    assert budgeted.jpeg_grid is None and budgeted.ms["jpeg_grid"] == 0.0 and budgeted.ms["total"] < 400


def test_small_photos_are_priced_as_a_quarter_megapixel_and_do_not_set_the_rate(bundles, monkeypatch):
    import time

    import rar_edge.runtime.restorer as restorer_module
    from rar_edge.runtime.stage_cost import GRID_MARGIN, StageCost

    restorer = Restorer.load(bundles["onnx"], warmup=False)
    real, delay = restorer_module.grid_probability, {"s": 0.0}

    def timed(rgb):
        time.sleep(delay["s"])
        return real(rgb)

    monkeypatch.setattr(restorer_module, "grid_probability", timed)
    small = jpeg(photo(CLEAN[0]), 15)  # 256²: 0.066 MP
    large = jpeg(np.tile(photo(CLEAN[0]), (2, 2, 1)), 15)  # 512²: 0.262 MP, over StageCost.MIN_MP
    assert small.shape[0] * small.shape[1] < StageCost.MIN_MP * 1e6 <= large.shape[0] * large.shape[1]
    assert GRID_MARGIN * 100 > 300  # the margins below hold for the 300 ms budgets
    # A large photo whose grid costs 100 ms sets the rate: about 380 ms per megapixel.
    delay["s"] = 0.1
    assert restorer.restore(large, max_steps=0, denoise=False).ms["jpeg_grid"] >= 100
    # A small photo is priced as StageCost.MIN_MP: 4 x 380 x 0.25 = 380 ms, more than a 300 ms budget leaves,
    # though its own area (0.066 MP) would price it at 100 ms.
    delay["s"] = 0.0
    assert restorer.restore(small, budget_ms=300, max_steps=0, denoise=False).jpeg_grid is None
    # A budget that leaves more than that pays for it; the small photo's quick grid cannot lower the rate, so
    # the large photo is still priced at 4 x 100 ms and left out of a 300 ms budget.
    assert restorer.restore(small, budget_ms=2000, max_steps=0, denoise=False).jpeg_grid > 0.95
    delay["s"] = 0.1
    assert restorer.restore(large, budget_ms=300, max_steps=0, denoise=False).jpeg_grid is None


def test_the_grid_cost_keeps_the_highest_rate_and_prices_small_photos_as_a_quarter_megapixel():
    from rar_edge.runtime.stage_cost import GRID_MARGIN, StageCost

    cost = StageCost(GRID_MARGIN)
    assert cost.predict(512, 512) is None and cost.predict(64, 64) is None and not cost.affordable(64, 64, 1e9)
    cost.record(64, 64, 0.5)  # a thumbnail: its own time prices small photos; its own rate large ones, for now
    assert cost.predict(32, 32) == 0.5 and cost.predict(512, 512) == pytest.approx(0.5 / 0.004096 * 0.262144)
    cost.record(500, 500, 2.0)  # 8 ms per megapixel
    assert cost.predict(1000, 1000) == pytest.approx(8.0) and cost.predict(64, 64) == pytest.approx(2.0)
    cost.record(3000, 4000, 24.0)  # 2 ms per megapixel: a large photo's lower rate does not lower the price
    assert cost.rate == pytest.approx(8.0)
    cost.record(1500, 2000, 30.0)  # 10 ms per megapixel: a higher one raises it
    assert cost.predict(3000, 4000) == pytest.approx(120.0)
    assert cost.affordable(3000, 4000, GRID_MARGIN * 120.0) and not cost.affordable(3000, 4000, 479.0)
    cost.record(100, 100, 9.0)  # a small photo that took long: it prices small photos, not large ones
    assert cost.predict(64, 64) == 9.0 and cost.predict(1000, 1000) == pytest.approx(10.0)


def test_restore_cli_names_jpeg_the_assessor_misses(bundles, tmp_path):
    from rar_edge.runtime.restorer import FOUND_AT

    y = jpeg(photo(CLEAN[0]), 15)
    assert Restorer.load(bundles["onnx"]).assess(y).degradations["jpeg"] < FOUND_AT  # the grid alone finds it
    path = tmp_path / "photo.png"
    Image.fromarray(y).save(path)  # the pixels as decoded: no second compression
    status, out, err = cli("restore", path, "-o", tmp_path / "out", "--bundle", bundles["onnx"],
                           "--min-detect", "0.999999")
    assert status == 0, err
    assert re.search(r"found \S*jpeg\S*; 0 steps \(clean: no degradation reached the clean gate's threshold\)",
                     out), out
    assert "(JPEG blocking: the loop does not undo it yet)" in out
