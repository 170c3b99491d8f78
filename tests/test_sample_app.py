"""samples/app.py: the sample app runs on a bundle with torch blocked, writes every photo, reports failures."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "samples" / "degraded").glob("*.png"))[:2]

# Runs the app as a script in a fresh interpreter where any import of torch fails.
RUN_BLOCKED = """
import runpy, sys
sys.modules["torch"] = None
sys.argv = [{app!r}, *sys.argv[1:]]
try:
    runpy.run_path({app!r}, run_name="__main__")
except SystemExit as e:
    sys.exit(e.code)
"""


def run_app(*args: str) -> subprocess.CompletedProcess:
    code = RUN_BLOCKED.format(app=str(ROOT / "samples" / "app.py"))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_app_restores_every_photo_without_torch(bundles, tmp_path):
    out = tmp_path / "out"
    r = run_app(bundles["onnx"], *PHOTOS, "-o", out, "--budget-ms", "5000")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [p.name for p in PHOTOS]
    assert all("assessed quality" in line and line.rstrip().endswith(".png") for line in lines)
    from rar_edge.runtime import Restorer

    api = Restorer.load(bundles["onnx"])
    for p in PHOTOS:
        with Image.open(out / p.name) as restored, Image.open(p) as original:
            assert restored.size == original.size and restored.mode == "RGB"
            # The app's file holds what the API returns for the same photo (the budget never binds here).
            expected = api.restore(np.asarray(original.convert("RGB")), budget_ms=5000).image
            assert np.abs(np.asarray(restored).astype(int) - expected.astype(int)).max() <= 1
    assert sorted(f.name for f in out.iterdir()) == sorted(p.name for p in PHOTOS)  # no temporary left


def test_app_reports_a_bad_photo_and_goes_on(bundles, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    r = run_app(bundles["onnx"], bad, PHOTOS[0], "-o", out)
    assert r.returncode == 1
    assert "notes.png: cannot restore" in r.stderr
    assert (out / PHOTOS[0].name).is_file() and not (out / "notes.png").exists()


def test_app_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    r = run_app(tmp_path, PHOTOS[0], "-o", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "manifest.json is missing" in r.stderr
    assert not (tmp_path / "out").exists()


def test_app_tone_corrects_an_under_exposed_photo_without_torch(bundles, tmp_path):
    dark = ROOT / "samples" / "degraded" / "05_coffee_low_light.png"
    r = run_app(bundles["onnx"], dark, "-o", tmp_path / "out", "--tone", "--budget-ms", "5000")
    assert r.returncode == 0, r.stderr
    assert "found" in r.stdout and "exposure corrected" in r.stdout
    with Image.open(tmp_path / "out" / dark.name) as out, Image.open(dark) as src:
        assert np.asarray(out).mean() > 2 * np.asarray(src.convert("RGB")).mean()  # the shipped head brightens it


def test_app_names_jpeg_from_its_block_grid(bundles, tmp_path):
    from rar_edge.runtime import Restorer
    from rar_edge.runtime.restorer import FOUND_AT

    jpeg = ROOT / "samples" / "degraded" / "02_coffee_jpeg.png"  # a JPEG round trip saved as PNG: its grid stays
    with Image.open(jpeg) as im:
        assessed = Restorer.load(bundles["onnx"]).assess(np.asarray(im.convert("RGB")))
    assert assessed.degradations["jpeg"] < FOUND_AT <= assessed.jpeg_grid  # the grid alone finds it
    r = run_app(bundles["onnx"], jpeg, "-o", tmp_path / "out")  # no budget: the grid is measured on the first call
    assert r.returncode == 0, r.stderr
    found = r.stdout.split("found ", 1)[1].split(";", 1)[0].split(", ")
    assert "jpeg" in found, r.stdout
