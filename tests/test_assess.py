"""`Restorer.assess` and `rar-edge assess`: the assessor alone, torch-free, per image and per tile."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rar_edge.errors import RarEdgeError
from rar_edge.runtime import Restorer

from conftest import cli


def test_assess_is_the_loops_first_assessment(bundles, photo_array):
    restorer = Restorer.load(bundles["onnx"])
    image = photo_array[:64, :64]
    a = restorer.assess(image)
    res = restorer.restore(image, max_steps=1, target_quality=99.0, min_gain=-99.0)
    assert a.quality == pytest.approx(res.quality[0], abs=1e-4)
    assert a.degradations == pytest.approx(res.degradations, abs=1e-6)
    assert a.present == [n for n, p in a.degradations.items() if p >= 0.5] and a.tiles == 1


def test_a_large_photo_is_tiled_and_pooled_in_the_error_domain(bundles, photo_array):
    from rar_edge.runtime.restorer import pool_psnr

    restorer = Restorer.load(bundles["dynamic"], tile=48)
    image = np.ascontiguousarray(photo_array[:96, :96])
    a = restorer.assess(image, per_tile=True, threshold=0.3)
    assert a.tiles == len(a.tile_quality) > 1
    assert a.quality == pytest.approx(pool_psnr(a.tile_quality))
    assert a.present == [n for n, p in a.degradations.items() if p >= 0.3]
    with pytest.raises(RarEdgeError, match="threshold must be a probability"):
        restorer.assess(image, threshold=1.5)


def test_assess_cli_table_json_and_bad_input(bundles, photo_dir, tmp_path):
    photos = sorted(p for p in photo_dir.iterdir() if p.is_file())[:2]
    status, out, err = cli("assess", *photos, "--bundle", bundles["onnx"], "--json")
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["input"] for r in rows] == [str(p) for p in photos]
    assert all(set(r["degradations"]) == {"noise", "blur", "jpeg", "rain", "haze", "low_light"} for r in rows)
    status, out, err = cli("assess", photos[0], "--bundle", bundles["onnx"])
    assert status == 0 and out.splitlines()[0].startswith("image") and photos[0].name[:20] in out
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    status, out, err = cli("assess", photos[0], bad, "--bundle", bundles["onnx"])
    assert status == 1 and "notes.txt" in err and "1 of 2 inputs failed" in err
    # A single bad input: one error line, exit 2, and no table header above nothing.
    status, out, err = cli("assess", bad, "--bundle", bundles["onnx"])
    assert status == 2 and out == "" and err.strip().splitlines() == [
        f"rar-edge assess: error: {bad}: not an image Pillow can read (wrong extension or corrupt file)"], err
    status, out, err = cli("assess", bad, photos[0], "--bundle", bundles["onnx"])
    assert status == 1 and out.splitlines()[0].startswith("image") and len(out.splitlines()) == 2  # header + row
    status, out, err = cli("assess", photos[0], "--threshold", "2", "--bundle", bundles["onnx"])
    assert status == 2 and "--threshold must be a probability" in err and len(err.strip().splitlines()) == 1
