"""The noise stage (runtime/denoise.py): what it removes, what it leaves, and where ``restore`` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from rar_edge.eval.metrics import psnr
from rar_edge.runtime.denoise import BLOCK, denoise, noise_sigma

from conftest import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()[64:320, 96:352].astype(np.float32) / 255.0


def test_noise_sigma_is_unbiased_on_white_noise_and_follows_a_coloured_spectrum():
    rng = np.random.default_rng(0)
    white = noise_sigma(rng.normal(0, 0.05, (256, 256)).astype(np.float32))
    assert white[0] == 0.0  # the mean is never thresholded
    assert abs(white[1:].mean() / 0.05 - 1) < 0.05
    blurred = ndimage.gaussian_filter(rng.normal(0, 1, (256, 256)), 1.2).astype(np.float32)
    coloured = noise_sigma(blurred).reshape(BLOCK, BLOCK)
    assert coloured[0, 1] > 4 * coloured[7, 7]  # low frequencies carry blurred noise: one sigma would not do


@pytest.mark.parametrize("kind", ["white", "coloured"])
def test_it_removes_white_and_coloured_noise(kind):
    clean = photo()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, clean.shape)
    if kind == "coloured":  # as a demosaic leaves it
        noise = ndimage.gaussian_filter(noise, (1.0, 1.0, 0)) * 2.0
    noisy = np.clip(clean + 0.08 * noise, 0, 1).astype(np.float32)
    out = denoise(noisy)
    assert out.dtype == np.float32 and out.shape == clean.shape and 0 <= out.min() and out.max() <= 1
    assert psnr(out, clean) - psnr(noisy, clean) >= (5.0 if kind == "white" else 3.0)


@pytest.mark.parametrize("shape", [(8, 8), (9, 13), (37, 53), (8, 200), (130, 9)])
def test_with_no_threshold_it_gives_every_pixel_back(monkeypatch, shape):
    """K = 0 keeps every coefficient: the windows' transforms and their weighted overlap-add must then return
    the image itself, at odd sizes and on the edges too (the indexing of the four half-resolution planes)."""
    import rar_edge.runtime.denoise as stage

    monkeypatch.setattr(stage, "K", 0.0)
    x = np.random.default_rng(3).random((*shape, 3)).astype(np.float32)
    assert np.abs(stage.denoise(x) - x).max() < 1e-5


def test_a_border_without_noise_does_not_hide_the_noise():
    """Windows with no detail at all (a black border, a clipped area) are left out of the estimate: a flattest
    tenth made of them read zero noise everywhere and the stage did nothing."""
    clean = photo()
    noisy = np.clip(clean + np.random.default_rng(4).normal(0, 0.08, clean.shape), 0, 1).astype(np.float32)
    noisy[:40], clean = 0.0, clean.copy()
    clean[:40] = 0.0
    assert psnr(denoise(noisy), clean) - psnr(noisy, clean) >= 5.0
    assert not noise_sigma(np.zeros((64, 64), np.float32)).any()


def test_it_leaves_flat_and_tiny_images_and_keeps_odd_sizes():
    flat = np.full((64, 48, 3), 0.3, np.float32)
    assert np.abs(denoise(flat) - flat).max() < 1e-6
    tiny = np.random.default_rng(2).random((5, 7, 3)).astype(np.float32)
    back = denoise(tiny)
    assert np.array_equal(back, tiny) and back is not tiny  # no window fits: as it came, a copy
    odd = photo()[:37, :53]
    assert denoise(odd).shape == (37, 53, 3)
    assert psnr(denoise(odd), odd) > 30  # a clean photo is barely touched


def sample(name: str) -> tuple[np.ndarray, np.ndarray]:
    from rar_edge.runtime.images import load_image, unit_float

    meta = json.loads((SAMPLES / "samples.json").read_text())
    return (unit_float(load_image(SAMPLES / "degraded" / name).rgb),
            unit_float(load_image(SAMPLES / meta[name]["clean"]).rgb))


@pytest.fixture(scope="module")
def restorer():
    from rar_edge.runtime import Restorer

    return Restorer.load()  # the shipped default bundle


def test_restore_runs_it_after_the_loop_where_noise_is_found(restorer):
    noisy, clean = sample("06_mountains_blur+noise.png")
    res, without = restorer.restore(noisy), restorer.restore(noisy, denoise=False)
    assert "noise" in [k for k, v in res.degradations.items() if v >= 0.5]
    assert res.denoised and res.ms["denoise"] > 0 and not res.unchanged and res.to_json()["denoised"] is True
    assert not without.denoised and without.ms["denoise"] == 0.0
    assert res.steps == without.steps  # the same loop; the stage comes after it
    assert psnr(res.image, clean) - psnr(without.image, clean) >= 0.2
    original = sample("06_mountains_blur+noise.png")[1]  # a clean photo: nothing found, nothing run
    res = restorer.restore(original)
    assert not res.denoised and res.unchanged and np.array_equal(res.image, original)


def test_under_a_budget_it_runs_only_where_the_time_left_pays_for_it(restorer):
    from rar_edge.runtime import Restorer

    noisy, _ = sample("00_brushes_noise.png")
    assert Restorer.load()._noise_cost.predict(512, 512) is not None  # warmup() priced it
    cold = Restorer.load(warmup=False)
    assert cold._noise_cost.predict(512, 512) is None
    saved = restorer._noise_cost.rate
    try:
        restorer._noise_cost.rate = 1e9  # ms per megapixel: no budget pays for it
        res = restorer.restore(noisy, budget_ms=60_000)
        assert res.steps_run > 0 and not res.denoised and res.denoise_skipped and res.ms["denoise"] == 0.0
        assert res.to_json()["denoise_skipped"] is True
        unbudgeted = restorer.restore(noisy)  # no budget: it runs whatever it costs
        assert unbudgeted.denoised and not unbudgeted.denoise_skipped
    finally:
        restorer._noise_cost.rate = saved


def test_it_runs_on_every_kind_of_input_and_with_no_step_kept(restorer):
    """uint8 grey, RGBA (alpha kept), uint16 and PIL inputs come back as they came, denoised; with no step kept
    the stage runs on the input's own pixels."""
    from PIL import Image

    noisy, _ = sample("00_brushes_noise.png")
    u8 = (noisy * 255 + 0.5).astype(np.uint8)
    alpha = np.linspace(0, 255, u8.shape[0] * u8.shape[1]).reshape(u8.shape[:2]).astype(np.uint8)
    for image in (u8, np.dstack([u8, alpha]), (noisy * 65535).astype(np.uint16), Image.fromarray(u8)):
        res = restorer.restore(image)
        assert res.denoised, type(image)
        if isinstance(image, np.ndarray):
            assert res.image.dtype == image.dtype and res.image.shape == image.shape
        else:
            assert res.image.size == image.size and res.image.mode == "RGB"
    rgba = restorer.restore(np.dstack([u8, alpha])).image
    assert np.array_equal(rgba[..., 3], alpha)
    grey = restorer.restore(u8.mean(axis=2).astype(np.uint8))
    assert grey.image.shape == u8.shape[:2]
    none = restorer.restore(noisy, max_steps=0)
    assert none.steps == 0 and none.denoised and not none.unchanged
    assert psnr(none.image, sample("00_brushes_noise.png")[1]) > psnr(noisy, sample("00_brushes_noise.png")[1]) + 3


def test_the_denoise_argument_must_be_a_bool(restorer):
    from rar_edge.errors import RarEdgeError

    with pytest.raises(RarEdgeError, match="denoise must be True or False"):
        restorer.restore(sample("00_brushes_noise.png")[0], denoise="no")


def test_cli_runs_it_by_default_says_so_and_no_denoise_skips_it(tmp_path):
    src = SAMPLES / "degraded" / "00_brushes_noise.png"
    status, out, err = cli("restore", src, "-o", tmp_path / "a")
    assert status == 0, err
    assert "+ the noise stage" in out
    status, out, err = cli("restore", src, "-o", tmp_path / "c", "--json")
    record = json.loads(out)
    assert status == 0 and record["denoised"] is True and record["ms"]["denoise"] > 0
    status, out, err = cli("restore", src, "-o", tmp_path / "b", "--no-denoise", "--json")
    assert status == 0, err
    assert json.loads(out)["denoised"] is False
    from PIL import Image

    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a" / src.name)),
                              np.asarray(Image.open(tmp_path / "b" / src.name)))


def test_a_photo_denoised_without_a_step_is_written_not_copied(tmp_path):
    """files.py copies the input's bytes only for a photo that came back as given: the noise stage changes it."""
    from PIL import Image

    from rar_edge.runtime.files import restore_files

    src = tmp_path / "in.png"
    Image.fromarray((photo() * 255).astype(np.uint8)).save(src)

    def restore(rgb):
        return np.zeros(rgb.shape, np.float32), {"steps": 0, "denoised": True, "quality": [20.0], "ms": {"total": 1}}

    record, = restore_files(restore, [str(src)], tmp_path / "out")
    assert "unchanged" not in record
    assert np.asarray(Image.open(tmp_path / "out" / "in.png")).max() == 0  # the restore's pixels, not the input's


def test_bench_reports_each_order_and_gate_and_fits_the_jpeg_gate(photo_dir, tmp_path, capsys):
    from conftest import load_bench

    bench = load_bench("noise_stage")
    out = tmp_path / "noise.json"
    assert bench.main(["--photos", str(photo_dir), "--syntheses", "v2", "--crop", "64", "--no-timing", "--fit",
                       "--thresholds", "0,4,1000", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "timing_ms" not in report
    r = report["v2"]
    gains = {"loop", "after, ungated", "after, noise found", "after, JPEG gate", "before, noise found"}
    assert set(r["noise"]) == gains | {"before", "after"} and set(r["mean, single"]) == gains
    assert "before" not in r["blur"] and set(r["clean"]) == gains - {"loop"}
    assert r["noise"]["after"] > r["noise"]["loop"]  # the stage takes noise the loop left
    assert r["clean"]["after, noise found"] <= r["clean"]["after, ungated"]  # a gate can only spare clean crops
    rows = {row["threshold"]: row for row in report["fit"]["rows"]}
    # an unreachable threshold is the noise gate alone; a threshold of 0 runs the stage wherever JPEG is found
    assert rows[1000]["composite"] == pytest.approx(r["mean, composite"]["after, noise found"])
    assert rows[0]["clean changed"] >= rows[1000]["clean changed"] == 0.0
    meets = [t for t, row in sorted(rows.items()) if row["its cost"] >= -0.01 and row["clean changed"] == 0.0]
    assert report["fit"]["chosen"] == (meets[0] if meets else None)  # the lowest threshold meeting both bounds
    assert meets and meets[-1] == 1000  # the noise gate alone changes no clean crop and no case without noise
    assert "| noise |" in capsys.readouterr().out
    assert bench.jpeg_gate(["jpeg"], 5.0) and not bench.jpeg_gate(["jpeg"], 3.0) and bench.jpeg_gate(["noise"], 0.0)


def test_the_torch_path_runs_the_runtimes_stage_by_the_runtimes_rule(tiny_checkpoint, tmp_path, monkeypatch):
    """``rar-edge restore --checkpoint`` (the torch reference) asks the runtime's rule and runs the same stage, with
    the runtime's keys; ``--no-denoise`` skips it there too."""
    import rar_edge.runtime.restorer as restorer_module
    from PIL import Image

    asked = []
    monkeypatch.setattr(restorer_module, "wants_noise_stage", lambda probs, h, w: asked.append((h, w)) or True)
    src = tmp_path / "noisy.png"
    Image.fromarray((photo()[:64, :48] * 255).astype(np.uint8)).save(src)
    status, out, err = cli("restore", src, "-o", tmp_path / "a", "--checkpoint", tiny_checkpoint, "--json")
    record = json.loads(out.splitlines()[-1])
    assert status == 0, err
    assert asked == [(64, 48)] and record["denoised"] is True and record["denoise_skipped"] is False
    assert record["ms"]["denoise"] > 0
    status, out, err = cli("restore", src, "-o", tmp_path / "b", "--checkpoint", tiny_checkpoint, "--json",
                           "--no-denoise")
    record = json.loads(out.splitlines()[-1])
    assert status == 0 and record["denoised"] is False and record["ms"]["denoise"] == 0.0
