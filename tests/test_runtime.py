"""The torch-free runtime: Restorer, backends, budget scheduler, tiling, image modes, profiles, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rar_edge.errors import RarEdgeError
from rar_edge.loop import StopRule
from rar_edge.runtime.restorer import spread
from rar_edge.runtime.scheduler import CostModel, adaptive_loop
from rar_edge.runtime.tiling import Blender, grid, starts, window

from conftest import REPO, cli, run_cli


@pytest.fixture(scope="module")
def restorer(bundles):
    from rar_edge.runtime import Restorer

    return Restorer.load(bundles["onnx"])


def test_runtime_restores_with_torch_blocked(bundles):
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
from rar_edge.runtime import Restorer
r = Restorer.load({str(bundles["onnx"])!r})
res = r.restore((np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8), budget_ms=10000)
assert res.image.shape == (70, 90, 3) and res.image.dtype == np.uint8 and res.quality
print("ok", sorted(k for k, m in sys.modules.items() if m is not None and k.split(".")[0] in ("torch", "executorch")))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok []"


@pytest.mark.parametrize("backend", ["onnx", "executorch"])
def test_backends_agree_with_the_torch_loop(bundles, tiny_checkpoint, photo_array, backend):
    import torch

    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer
    from rar_edge.train.checkpoint import load_model

    image = np.ascontiguousarray(photo_array[:64, :64])
    model, _ = load_model(tiny_checkpoint)
    rule = StopRule(max_steps=3, target_quality=99.0, min_gain=-99.0)  # always 3 steps: compare every one
    with torch.no_grad():
        ref = model.restore_loop(torch.from_numpy(image.transpose(2, 0, 1))[None], rule)[0]
    res = Restorer.load(bundles[backend]).restore(image, max_steps=3, target_quality=99.0, min_gain=-99.0,
                                                  denoise=False)  # the loop alone: the torch loop has no noise stage
    assert res.steps_run == 3 and res.steps == ref.steps
    assert np.allclose(res.quality, ref.quality, atol=0.05)
    assert all(abs(res.degradations[k] - v) < 0.01 for k, v in ref.degradations.items())
    assert psnr(res.image, ref.image.numpy().transpose(1, 2, 0)) > 40
    # A step-size threshold between the largest and the smallest of the three steps: both loops refuse
    # the same step (the runtime measures it over its tiles in numpy, the torch loop in torch).
    from rar_edge.eval.evaluate import trajectory

    x = torch.from_numpy(image.transpose(2, 0, 1))[None]
    with torch.no_grad():
        _, _, change, _ = trajectory(model, x, x, 3, 40.0)
    rule = StopRule(max_steps=3, target_quality=99.0, min_gain=-99.0, min_change=float(change.min() + change.max()) / 2,
                    keep="last")
    with torch.no_grad():
        ref = model.restore_loop(x, rule)[0]
    res = Restorer.load(bundles[backend]).restore(image, max_steps=3, target_quality=99.0, min_gain=-99.0,
                                                  min_change=rule.min_change, keep="last")
    assert ref.stop_reason == res.stop_reason == "small_step" and res.steps == ref.steps < 3
    assert psnr(res.image, ref.image.numpy().transpose(1, 2, 0)) > 40


# --- scheduler, with a fake clock -----------------------------------------------------------------------

class FakeOps:
    """Entry points that advance a fake clock by fixed costs and report scripted qualities."""

    def __init__(self, qualities, costs=None, changes=None):
        self.now = 0.0
        self.qualities = list(qualities)
        self.changes = list(changes or [1.0] * len(qualities))  # relative size of step k+1 from state k
        self.costs = costs or {"encode": 10, "assess": 5, "restore": 20, "decode": 10}
        self.calls: list[str] = []

    def clock(self):
        return self.now / 1000.0

    def _tick(self, entry):
        self.now += self.costs[entry]
        self.calls.append(entry)

    def encode(self):
        self._tick("encode")
        return 0

    def assess(self, state):
        self._tick("assess")
        return self.qualities[state], [0.5], f"cond{state}"

    def restore(self, state, cond):
        assert cond == f"cond{state}"
        self._tick("restore")
        return state + 1

    def change(self, state, proposed):
        assert proposed == state + 1
        return self.changes[state]

    def decode(self, state):
        self._tick("decode")
        return f"image{state}"


def _run(ops, rule, budget):
    return adaptive_loop(ops, rule, budget, lambda e: ops.costs.get(e, 0), clock=ops.clock)


def test_scheduler_stops_on_target_on_no_gain_and_on_the_cap():
    rule = StopRule(max_steps=4, target_quality=30, min_gain=0.5)
    out = _run(FakeOps([20, 25, 31, 40, 41]), rule, None)
    assert (out.stop_reason, out.steps, out.image) == ("target", 2, "image2")
    out = _run(FakeOps([20, 25, 25.2, 40, 41]), rule, None)
    assert (out.stop_reason, out.steps_run) == ("no_gain", 2)
    out = _run(FakeOps([20, 21, 22, 23, 24]), rule, None)
    assert (out.stop_reason, out.steps_run, out.steps) == ("max_steps", 4, 4)


def test_scheduler_returns_the_best_assessed_latent():
    out = _run(FakeOps([20, 26, 24, 22, 21]), StopRule(max_steps=4, target_quality=99, min_gain=-99), None)
    assert out.steps_run == 4 and out.steps == 1 and out.image == "image1"


def test_scheduler_refuses_a_small_step_without_assessing_it():
    rule = StopRule(max_steps=4, target_quality=99, min_gain=-99, min_change=0.05)
    ops = FakeOps([20, 26, 24, 22, 21], changes=[0.2, 0.1, 0.01, 0.3])
    out = _run(ops, rule, None)
    assert (out.stop_reason, out.steps_run, out.steps, out.image) == ("small_step", 2, 1, "image1")
    assert ops.calls == ["encode", "assess", "restore", "assess", "restore", "assess", "restore", "decode"]


def test_scheduler_keep_last_decodes_the_last_step_and_undoes_a_losing_one():
    out = _run(FakeOps([20, 26, 24, 22, 21]), StopRule(max_steps=4, target_quality=99, min_gain=-99, keep="last"),
               None)
    assert (out.steps_run, out.steps, out.image) == (4, 4, "image4")
    out = _run(FakeOps([20, 26, 27, 22, 21]), StopRule(max_steps=4, target_quality=99, min_gain=-1, keep="last"),
               None)
    assert (out.stop_reason, out.steps_run, out.steps, out.image) == ("no_gain", 3, 2, "image2")


def test_scheduler_keeping_step_0_returns_no_image_and_runs_no_decode():
    # Pass-through (rar_edge.loop): assessed good at once, or every step assessed worse than the input.
    ops = FakeOps([45, 30])
    out = _run(ops, StopRule(max_steps=4, target_quality=40), None)
    assert (out.stop_reason, out.steps, out.image) == ("target", 0, None) and "decode" not in ops.calls
    ops = FakeOps([30, 29, 28])
    out = _run(ops, StopRule(max_steps=2, target_quality=99, min_gain=-99), None)
    assert (out.steps_run, out.steps, out.image) == (2, 0, None) and "decode" not in ops.calls
    assert not out.model_skipped


def test_scheduler_stops_when_the_budget_cannot_pay_for_another_step():
    rule = StopRule(max_steps=10, target_quality=99, min_gain=-99)
    # encode 10 + assess 5 = 15 spent; each step costs restore 20 + assess 5, and decode 10 must stay paid.
    ops = FakeOps(list(range(20, 40)))
    out = _run(ops, rule, budget=100)
    assert out.stop_reason == "budget" and out.steps_run == 3  # 15 + 3*25 = 90; a 4th would end at 125
    assert ops.now <= 100 and ops.calls[-1] == "decode"


def test_scheduler_skips_the_model_when_the_budget_cannot_pay_for_encode_and_decode():
    ops = FakeOps([20, 30])
    out = _run(ops, StopRule(), budget=20)
    assert out.model_skipped and out.image is None and out.steps == 0 and ops.calls == []
    assert out.needed_ms == 25  # encode 10 + assess 5 + decode 10: the smallest budget that runs the model
    assert _run(FakeOps([20, 30]), StopRule(max_steps=0), budget=25).needed_ms is None  # it ran
    late = FakeOps([20, 30])
    late.now = 12.0  # 12 ms spent before the loop (a wait, the tiling): a budget must pay for them too
    out = adaptive_loop(late, StopRule(), 30, lambda e: late.costs.get(e, 0), clock=late.clock, start=0.0)
    assert out.model_skipped and out.needed_ms == pytest.approx(37.0)


def test_scheduler_charges_the_runtime_overhead_on_every_pass():
    rule = StopRule(max_steps=10, target_quality=99, min_gain=-99)
    ops = FakeOps(list(range(20, 40)), costs={"encode": 10, "assess": 5, "restore": 20, "decode": 10, "overhead": 5})
    # Start: 10 + 5 + 10 + 5 = 30 fit; each step needs 20 + 5 + 10 + 5 = 40: at 15 and 40 ms they fit, at 65 not.
    out = _run(ops, rule, budget=100)
    assert out.stop_reason == "budget" and out.steps_run == 2  # 3 if the overhead were charged once


class PassOverheadOps(FakeOps):
    """FakeOps whose runtime spends its overhead as the real one does: once per pass (ending each assess) and
    once more on the decode's pass (blending the tiles, converting the output)."""

    def assess(self, state):
        out = super().assess(state)
        self._tick("overhead")
        return out

    def decode(self, state):
        out = super().decode(state)
        self._tick("overhead")
        return out


def test_scheduler_reserves_the_decodes_own_pass():
    """Before a step the scheduler reserves the step's pass and the decode with its own pass of overhead: at
    50 ms a step would end at 80 and the decode with its blending at 95, over a 92 ms budget, so it stops."""
    rule = StopRule(max_steps=10, target_quality=99, min_gain=-99)
    costs = {"encode": 10, "assess": 5, "restore": 20, "decode": 10, "overhead": 5}
    ops = PassOverheadOps(list(range(20, 40)), costs=costs)
    out = _run(ops, rule, budget=92)
    assert (out.stop_reason, out.steps_run) == ("budget", 1) and ops.now == 65  # reserving one pass: 95 > 92
    ops = PassOverheadOps(list(range(20, 40)), costs=costs)  # with 6 ms more the second step fits
    out = _run(ops, rule, budget=96)
    assert out.steps_run == 2 and ops.now == 95


def test_scheduler_budget_counts_from_the_callers_start():
    ops = FakeOps(list(range(20, 40)))
    ops.now = 60.0  # 60 ms already spent (e.g. waiting for the lock) when the loop starts
    out = adaptive_loop(ops, StopRule(max_steps=10, target_quality=99, min_gain=-99), 100,
                        lambda e: ops.costs.get(e, 0), clock=ops.clock, start=0.0)
    assert out.stop_reason == "budget" and out.steps_run == 0 and ops.now <= 100


def test_scheduler_with_mispredicted_costs_overruns_by_less_than_a_step():
    """Predictions at half the real cost: the loop measures each pass against its prediction and scales
    the next prediction by it, so it stops within the budget."""
    rule = StopRule(max_steps=10, target_quality=99, min_gain=-99)
    ops = FakeOps(list(range(20, 40)))
    out = adaptive_loop(ops, rule, 100, lambda e: ops.costs.get(e, 0) / 2, clock=ops.clock)
    # The first pass took 15 ms for 7.5 predicted: predictions are doubled from then on, so a step + decode
    # is 35 ms: steps start at 15, 40, 65 (35 left) and not at 90 (10 left), then the decode ends at 100.
    assert out.stop_reason == "budget" and out.steps_run == 3 and ops.now == 100
    # With 110 ms, unscaled predictions (17.5 ms) would start a 4th step at 90 (20 left) and end at 125.
    ops = FakeOps(list(range(20, 40)))
    out = adaptive_loop(ops, rule, 110, lambda e: ops.costs.get(e, 0) / 2, clock=ops.clock)
    assert out.stop_reason == "budget" and out.steps_run == 3 and ops.now == 100
    blind = FakeOps(list(range(20, 40)))  # a scheduler predicting nothing steps until the time is already gone
    assert adaptive_loop(blind, rule, 100, lambda e: 0.0, clock=blind.clock).steps_run == 4 and blind.now > 100


def test_cost_model_prefers_measurements_and_leans_slow():
    cost = CostModel({"encode": 100.0})
    assert cost.predict("encode") == 100.0 and cost.predict("decode") == 0.0
    for ms in (10, 12, 11, 30, 10, 11, 12, 10, 11, 10):
        cost.record("encode", ms)
    assert cost.predict("encode") == 30  # the 90th percentile of 10 samples is the slowest here


# --- tiling and image shapes ----------------------------------------------------------------------------

def test_tiles_cover_the_image_and_blend_exactly():
    assert starts(64, 64, 16) == [0] and starts(200, 64, 16) == [0, 45, 91, 136]
    tiles = grid(150, 200, (64, 64), 16)
    img = np.random.default_rng(0).random((150, 200, 3)).astype(np.float32)
    blend = Blender(150, 200, 3, (64, 64), 16)
    for t in tiles:
        blend.add(t, img[t.y:t.y + 64, t.x:t.x + 64])
    assert np.allclose(blend.result(), img, atol=1e-6)  # identical tiles blend back to the image


def test_blend_is_the_window_weighted_mean_of_the_tiles():
    """The separable summed weights give what an explicit per-pixel weight map gives, for tiles that disagree."""
    h, w, tile, overlap = 150, 200, (64, 64), 16
    tiles = grid(h, w, tile, overlap)
    rng = np.random.default_rng(0)
    pieces = [rng.random((64, 64, 3)).astype(np.float32) for _ in tiles]
    acc, weight = np.zeros((h, w, 3)), np.zeros((h, w, 1))
    last_y, last_x = max(t.y for t in tiles), max(t.x for t in tiles)
    blend = Blender(h, w, 3, tile, overlap)
    for t, p in zip(tiles, pieces):
        win = window(tile, overlap, (t.y > 0, t.y < last_y, t.x > 0, t.x < last_x))[..., None].astype(np.float64)
        acc[t.y:t.y + 64, t.x:t.x + 64] += p * win
        weight[t.y:t.y + 64, t.x:t.x + 64] += win
        blend.add(t, p)
    np.testing.assert_allclose(blend.result(), acc / weight, rtol=1e-5, atol=1e-6)


def test_uint8_is_converted_per_tile_like_float_and_left_untouched(restorer):
    """uint8 pixels go to float tile by tile: the same pixels as the float32 input, and the caller's array is
    only read (several tiles, a step taken)."""
    u8 = (np.random.default_rng(3).random((100, 90, 3)) * 255).astype(np.uint8)
    kept = u8.copy()
    from_u8 = restorer.restore(u8, max_steps=1, target_quality=1e9, min_gain=-1e9, keep="last")
    from_float = restorer.restore(u8.astype(np.float32) / 255.0, max_steps=1, target_quality=1e9, min_gain=-1e9,
                                  keep="last")
    assert from_u8.steps == 1 and from_u8.tiles > 1
    assert np.array_equal(u8, kept)
    assert np.array_equal(from_u8.image, (from_float.image * 255 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (333, 100, 3), (64, 64, 3)])
def test_any_size_comes_back_at_its_size(restorer, shape):
    img = (np.random.default_rng(1).random(shape) * 255).astype(np.uint8)
    res = restorer.restore(img, max_steps=1)
    assert res.image.shape == shape and res.image.dtype == np.uint8
    assert res.tiles == len(grid(max(shape[0], 64), max(shape[1], 64), (64, 64), 16))


def test_dynamic_bundle_tiles_at_the_chosen_size(bundles):
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundles["dynamic"], tile=48)
    res = r.restore(np.full((100, 30, 3), 0.5, np.float32), max_steps=1)
    assert res.image.shape == (100, 30, 3) and res.tiles == 3  # 48x32 tiles (30 rounds up to 32)


def test_spread_picks_distinct_tiles_across_the_image():
    assert spread(15, None) == list(range(15)) and spread(4, 9) == [0, 1, 2, 3]
    assert spread(15, 1) == [7]  # one tile: the middle one
    for n, most in ((15, 6), (63, 16), (10, 9)):
        idx = spread(n, most)
        assert len(set(idx)) == most and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n
        assert idx[0] < n / most and idx[-1] >= n - n / most  # from the first run of tiles to the last


def test_assess_tiles_assesses_a_sample_per_step(bundles):
    from rar_edge.runtime import Restorer

    image = np.random.default_rng(5).random((100, 90, 3)).astype(np.float32)
    fixed = dict(max_steps=2, target_quality=1e9, min_gain=-1e9, min_change=0.0, keep="last")
    everything = Restorer.load(bundles["dynamic"], tile=48).restore(image, **fixed)
    sampled = Restorer.load(bundles["dynamic"], tile=48, assess_tiles=2)
    calls = []
    run = sampled.backend.run
    sampled.backend.run = lambda entry, inputs: calls.append(entry) or run(entry, inputs)
    res = sampled.restore(image, **fixed)
    assert res.tiles == everything.tiles == 9 and res.steps == 2
    assert calls.count("assess") == 2 * 3 and calls.count("restore") == 9 * 2  # 2 tiles per assessment, 3 assessments
    assert not np.array_equal(res.image, everything.image)  # the conditioning is the sample's mean
    all_of_them = Restorer.load(bundles["dynamic"], tile=48, assess_tiles=9).restore(image, **fixed)
    assert np.array_equal(all_of_them.image, everything.image)
    for bad in (0, 2.5, True):
        with pytest.raises(RarEdgeError, match="assess_tiles must be a whole number"):
            Restorer.load(bundles["dynamic"], assess_tiles=bad, warmup=False)
    assert Restorer.load(bundles["dynamic"], assess_tiles=np.int64(3), warmup=False).assess_tiles == 3


def test_half_latents_hold_float16_and_call_in_float32(bundles):
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer
    from rar_edge.runtime.restorer import _TiledImage

    image = np.random.default_rng(6).random((100, 90, 3)).astype(np.float32)
    fixed = dict(max_steps=2, target_quality=1e9, min_gain=-1e9, min_change=0.0, keep="last")
    full = Restorer.load(bundles["dynamic"], tile=48).restore(image, **fixed)
    half = Restorer.load(bundles["dynamic"], tile=48, half_latents=True)
    dtypes = []
    run = half.backend.run
    half.backend.run = lambda entry, inputs: dtypes.extend(x.dtype for x in inputs) or run(entry, inputs)
    res = half.restore(image, **fixed)
    assert set(dtypes) == {np.dtype(np.float32)}  # every backend call still gets float32
    assert {z.dtype for z in _TiledImage(half, image).encode()} == {np.dtype(np.float16)}
    assert res.steps == full.steps == 2 and not np.array_equal(res.image, full.image)
    assert psnr(res.image, full.image) > 45  # close to the float32 latents' output


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "float", "pil_rgba", "pil_palette"])
def test_input_kinds_round_trip(restorer, kind):
    rng = np.random.default_rng(2)
    rgb = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    alpha = (rng.random((40, 50)) * 255).astype(np.uint8)
    image = {"gray": rgb[..., 0], "rgba": np.dstack([rgb, alpha]), "uint16": rgb.astype(np.uint16) * 257,
             "float": rgb / 255.0, "pil_rgba": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
             "pil_palette": Image.fromarray(rgb).convert("P")}[kind]
    res = restorer.restore(image, max_steps=1, target_quality=1e9, min_gain=-1e9, keep="last")  # one step
    out = res.image
    assert res.steps == 1
    if kind.startswith("pil"):
        assert out.size == (50, 40) and out.mode == ("RGBA" if kind == "pil_rgba" else "RGB")
        if kind == "pil_rgba":
            assert np.array_equal(np.asarray(out)[..., 3], alpha)  # alpha passes through untouched
        return
    expected = {"gray": np.uint8, "rgba": np.uint8, "uint16": np.uint16, "float": np.float64}[kind]
    assert out.shape == image.shape and out.dtype == expected
    if kind == "rgba":
        assert np.array_equal(out[..., 3], alpha)
    # No step taken: the input comes back exactly as given.
    same = restorer.restore(image, max_steps=0).image
    assert same.dtype == image.dtype and np.array_equal(same, image), kind


@pytest.mark.parametrize("bad, message", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or Inf"),
    (np.zeros((8, 8, 3), np.int32), "dtype int32"),
    (np.zeros((8, 8, 5), np.uint8), "must be (H,W)"),
    (np.full((8, 8, 3), 3.0, np.float32), "must be in [0, 1]"),
    ("image.png", "numpy array or a PIL image"),
])
def test_bad_arrays_are_refused_in_one_line(restorer, bad, message):
    with pytest.raises(RarEdgeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        restorer.restore(bad)


# --- bundles and backends -------------------------------------------------------------------------------

def test_damaged_bundle_unknown_backend_and_coreml_here(bundles, tmp_path):
    import shutil

    from rar_edge.runtime import Restorer

    with pytest.raises(RarEdgeError, match="unknown backend 'tpu'"):
        Restorer.load(bundles["onnx"], backend="tpu")
    with pytest.raises(RarEdgeError, match="runs executorch bundles"):
        Restorer.load(bundles["onnx"], backend="et")
    # A misspelt option names itself and what the backend takes, not an internal class's __init__.
    with pytest.raises(RarEdgeError, match="unknown option thread for the onnx backend; it takes providers, spin, "
                                           "threads"):
        Restorer.load(bundles["onnx"], thread=2)
    copy = tmp_path / "b"
    shutil.copytree(bundles["onnx"], copy)
    with open(copy / "restore.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xfe")
    with pytest.raises(RarEdgeError, match="SHA-256"):
        Restorer.load(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["target"] = "coreml"
    if sys.platform != "darwin":
        from rar_edge.runtime.backends import open_backend

        with pytest.raises(RarEdgeError, match="only on macOS"):
            open_backend(copy, manifest)


def test_tile_and_overlap_arguments_are_checked(bundles):
    from rar_edge.runtime import Restorer

    with pytest.raises(RarEdgeError, match="fixed tile 64x64"):
        Restorer.load(bundles["onnx"], tile=128, warmup=False)
    with pytest.raises(RarEdgeError, match="overlap must be"):
        Restorer.load(bundles["dynamic"], tile=64, overlap=40, warmup=False)
    # Not a size in range: one line naming it, before any tile is allocated (a huge tile ran out of memory,
    # a negative one crashed, 0 ran silently at the default).
    for bad in (0, -16, 8192, 1_000_000, 100):
        with pytest.raises(RarEdgeError, match=rf"tile must be a multiple of \d+ from \d+ to 4096 pixels, got {bad}"):
            Restorer.load(bundles["dynamic"], tile=bad, warmup=False)
    r = Restorer.load(bundles["dynamic"], tile=64)  # warm-up measures 64x64 tiles
    small = r.cost_model((32, 32))  # a size not seen yet starts from the 64x64 figures, scaled by pixels
    assert small.predict("restore") == pytest.approx(r.cost_model((64, 64)).predict("restore") / 4)


def test_a_photo_kept_at_step_0_comes_back_bit_exact_without_a_decode(restorer, photo_array):
    res = restorer.restore(photo_array, target_quality=-1e9)  # every assessment meets the target
    assert (res.steps, res.steps_run, res.stop_reason) == (0, 0, "target") and not res.model_skipped
    assert res.image.dtype == photo_array.dtype and np.array_equal(res.image, photo_array)
    assert res.ms["decode"] == 0.0 and res.ms["encode"] > 0.0
    stepped = restorer.restore(photo_array, max_steps=1, target_quality=1e9, min_gain=-1e9, keep="last")
    assert stepped.steps == 1 and stepped.ms["decode"] > 0.0 and not np.array_equal(stepped.image, photo_array)


def test_api_arguments_of_the_wrong_kind_are_one_line_errors(restorer, bundles):
    """Strings, floats for counts, infinite budgets, a non-function progress: one RarEdgeError naming the
    argument, before any work (they crashed deep in the loop, or overflowed the lock's timeout)."""
    from rar_edge.runtime import Restorer

    img = (np.random.default_rng(4).random((32, 32, 3)) * 255).astype(np.uint8)
    for kwargs, message in ((dict(budget_ms="150"), "budget_ms must be a positive number"),
                            (dict(budget_ms=float("inf")), "budget_ms must be a positive number"),
                            (dict(budget_ms=1e15), r"below 8\.64e\+07"),
                            (dict(budget_ms=True), "budget_ms must be"),
                            (dict(max_steps="3"), "max_steps must be a whole number"),
                            (dict(max_steps=2.5), "max_steps must be a whole number"),
                            (dict(min_change="0.1"), "min_change must be a number"),
                            (dict(target_quality="x"), "target_quality must be a number, got 'x'"),
                            (dict(progress=5), "progress must be a function")):
        with pytest.raises(RarEdgeError, match=message):
            restorer.restore(img, **kwargs)
    with pytest.raises(RarEdgeError, match="threshold must be a probability"):
        restorer.assess(img, threshold="0.5")
    assert restorer.restore(img, budget_ms=86_000_000, max_steps=np.int64(1)).budget_ms == 86_000_000
    # One provider named as a string is that provider, not a list of one-letter names.
    with pytest.raises(RarEdgeError) as e:
        Restorer.load(bundles["onnx"], providers="cuda", warmup=False)
    assert "CUDAExecutionProvider" in str(e.value) and "c, u, d, a" not in str(e.value)
    assert Restorer.load(bundles["onnx"], providers="cpu", warmup=False).backend.providers == ["CPUExecutionProvider"]


def test_a_pil_image_comes_back_in_its_own_orientation_and_size(restorer):
    im = Image.fromarray((np.random.default_rng(5).random((32, 48, 3)) * 255).astype(np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° to display": a file would be turned upright; an image handed over is not
    tagged = Image.open(_saved(im, exif))
    assert tagged.getexif()[0x0112] == 6
    res = restorer.restore(tagged, max_steps=1, min_detect=0, target_quality=99, min_gain=-99, keep="last")
    assert res.image.size == tagged.size == (48, 32)


def _saved(im, exif):
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif.tobytes())
    buf.seek(0)
    return buf


def test_budget_zero_model_path_returns_the_input(restorer):
    img = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    res = restorer.restore(img, budget_ms=0.001)
    assert res.model_skipped and res.steps == 0 and res.quality == [] and np.array_equal(res.image, img)
    assert res.budget_bound and res.stop_reason == "budget"
    # It says what would have run the model: the measured encode + assess + decode (and the runtime's passes).
    ran = restorer.restore(img, max_steps=0, min_detect=0, target_quality=-1e9)
    assert res.needed_ms > 0.5 * (ran.ms["encode"] + ran.ms["assess"]) and res.to_json()["needed_ms"] > 0
    assert ran.needed_ms is None and ran.to_json()["needed_ms"] is None


def test_images_over_max_megapixels_are_refused_before_any_work(bundles):
    from rar_edge.runtime import Restorer

    with pytest.raises(RarEdgeError, match="max_megapixels must be a positive number"):
        Restorer.load(bundles["onnx"], max_megapixels=0, warmup=False)
    r = Restorer.load(bundles["onnx"], max_megapixels=0.002, warmup=False)  # 2,000 pixels
    with pytest.raises(RarEdgeError, match=r"image is 64x40 \(0.00256 MP\), over the limit of 0.002 MP"):
        r.restore(np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(RarEdgeError, match="over the limit"):
        r.restore(Image.new("RGB", (64, 40)))
    assert r._ms == {}  # refused before any entry point ran
    assert r.restore(np.zeros((40, 50, 3), np.uint8)).image.shape == (40, 50, 3)  # 2,000 pixels: allowed


# --- image files ----------------------------------------------------------------------------------------

def test_image_files_keep_alpha_icc_and_orientation(tmp_path):
    from rar_edge.runtime.images import load_image, save_image

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = 255
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    icc = b"fake-icc-profile-bytes"
    im.save(tmp_path / "rot.jpg", exif=exif, icc_profile=icc)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.rgb.shape == (30, 20, 3) and loaded.icc_profile == icc
    save_image(tmp_path / "out.png", loaded.rgb, None, loaded.icc_profile)
    assert Image.open(tmp_path / "out.png").info.get("icc_profile") == icc

    Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)).save(tmp_path / "g16.png")
    g16 = load_image(tmp_path / "g16.png")
    assert g16.rgb.shape == (20, 30, 3) and 0.9 < g16.rgb.max() <= 1.0  # 16-bit scaled, not clipped at 255
    assert g16.rgb.dtype == np.float32
    Image.fromarray(rgb).save(tmp_path / "p8.png")
    p8 = load_image(tmp_path / "p8.png").rgb  # 8 bits stay 8 bits, exactly the file's values (no float copy)
    assert p8.dtype == np.uint8 and np.array_equal(p8, rgb)
    save_image(tmp_path / "p8_out.png", p8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p8_out.png")), rgb)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").rgb.shape == (20, 30, 3)
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)]), "RGBA").save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    assert a.alpha is not None and abs(float(a.alpha.mean()) - 128 / 255) < 1e-6
    assert np.array_equal(a.rgb, rgb)
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "anim.gif").info["frames"] == 2  # first frame used


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not an image at all", "not an image"),
                                               (None, "no such file")])
def test_bad_image_files(tmp_path, content, message):
    from rar_edge.runtime.images import load_image

    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RarEdgeError, match=message):
        load_image(path)


def test_truncated_png(tmp_path):
    from rar_edge.runtime.images import load_image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(RarEdgeError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_max_megapixels_reads_only_the_header(tmp_path):
    from rar_edge.runtime.images import load_image

    Image.fromarray(np.zeros((400, 500, 3), np.uint8) + 90).save(tmp_path / "big.png")
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # a header that promises 500x400, half the data
    with pytest.raises(RarEdgeError, match="truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(RarEdgeError, match=r"cut.png is 500x400 \(0.2 MP\), over the limit of 0.1 MP"):
        load_image(tmp_path / "cut.png", max_megapixels=0.1)  # refused from the header: nothing decoded
    assert load_image(tmp_path / "big.png", max_megapixels=0.2).rgb.shape == (400, 500, 3)


# --- CLI ------------------------------------------------------------------------------------------------

def test_cli_restore_bundle_json_contract_and_bad_file(bundles, tmp_path):
    good = tmp_path / "in" / "a.png"
    good.parent.mkdir()
    Image.fromarray((np.random.default_rng(4).random((50, 70, 3)) * 255).astype(np.uint8)).save(good)
    bad = tmp_path / "in" / "b.png"
    bad.write_bytes(b"\x89PNG broken")
    res = run_cli("restore", str(good), str(bad), "-o", str(tmp_path / "out"), "--bundle", str(bundles["onnx"]),
                  "--budget-ms", "60000", "--json")
    assert res.returncode == 1
    records = [json.loads(line) for line in res.stdout.splitlines()]
    ok = records[0]
    assert {"input", "output", "steps", "quality", "degradations", "ms", "budget_ms", "budget_bound"} <= set(ok)
    assert ok["ms"]["total"] > 0 and ok["budget_ms"] == 60000 and Image.open(ok["output"]).size == (70, 50)
    assert "error" in records[1] and "b.png" in res.stderr
    assert not (tmp_path / "out" / "b.png").exists()


def test_cli_restore_skips_images_over_max_megapixels(bundles, tmp_path):
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.png")
    out = tmp_path / "out"
    res = run_cli("restore", str(tmp_path / "big.png"), str(tmp_path / "small.png"), "-o", str(out),
                  "--bundle", str(bundles["onnx"]), "--max-megapixels", "0.001")
    assert res.returncode == 1 and "big.png is 60x40" in res.stderr
    assert (out / "small.png").is_file() and not (out / "big.png").exists()
    res = run_cli("restore", str(tmp_path / "small.png"), "-o", str(out), "--bundle", str(bundles["onnx"]),
                  "--max-megapixels", "-1")
    assert res.returncode == 2 and "--max-megapixels must be a positive number" in res.stderr
    for flag, value, message in (("--min-change", "-0.5", "--min-change must be a fraction"),
                                 ("--max-steps", "-1", "--max-steps must be 0 or more"),
                                 ("--min-better", "1", "--min-better must be a probability"),
                                 ("--min-detect", "1.5", "--min-detect must be a probability"),
                                 ("--keep", "first", "invalid choice"),
                                 ("--target-quality", "nan", "--target-quality must be a number of dB"),
                                 ("--min-gain", "nan", "--min-gain must be a number of dB"),
                                 ("--assess-tiles", "0", "--assess-tiles must be a whole number of tiles >= 1")):
        res = run_cli("restore", str(tmp_path / "small.png"), "-o", str(out), "--bundle", str(bundles["onnx"]),
                      flag, value)
        assert res.returncode == 2 and message in res.stderr.strip().splitlines()[-1], res.stderr


def test_cli_runtime_options_need_a_bundle(tiny_checkpoint, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    for flags in (["--half-latents"], ["--assess-tiles", "4"]):
        res = run_cli("restore", str(img), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), *flags)
        assert res.returncode == 2, res.stderr
        assert f"{flags[0]} is a runtime option (the default bundle or --bundle)" in res.stderr, res.stderr
    assert not (tmp_path / "out" / "a.png").exists()


def test_cli_restore_refuses_writing_over_its_input(bundles, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    res = run_cli("restore", str(img), "-o", str(tmp_path), "--bundle", str(bundles["onnx"]))
    assert res.returncode == 2 and "is the input itself" in res.stderr


def test_profile_cli_and_profile_parsing(bundles, tmp_path):
    from rar_edge.runtime import Restorer, load_profile
    from rar_edge.runtime.profile import parse_profile

    out = tmp_path / "p.json"
    res = run_cli("profile", "--bundle", str(bundles["onnx"]), "--runs", "3", "--providers", "cpu", "-o", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "measured on CPUExecutionProvider" in res.stdout and "--providers cpu --budget-ms" in res.stdout
    prof = load_profile(out)
    assert prof.method == "measured" and prof.backend == "onnx" and set(prof.sizes) == {"64x64"}
    assert prof.providers == ["CPUExecutionProvider"]
    assert all(v["p90_ms"] >= v["median_ms"] > 0 for v in prof.sizes["64x64"].values())
    assert prof.entry_ms((128, 128))["decode"] == pytest.approx(4 * prof.sizes["64x64"]["decode"]["p90_ms"])
    r = Restorer.load(bundles["onnx"], profile=out, warmup=False)
    assert r.cost_model((64, 64)).predict("restore") == prof.sizes["64x64"]["restore"]["p90_ms"]
    data = json.loads(out.read_text())
    for broken, message in ((dict(data, format="x"), "not a rar_edge device profile"),
                            (dict(data, method="guessed"), "method"),
                            (dict(data, sizes={"64": data["sizes"]["64x64"]}), "is not 'HxW'"),
                            (dict(data, sizes={"64x64": {"encode": {"median_ms": 1}}}), "lacks finite")):
        with pytest.raises(RarEdgeError, match=message):
            parse_profile(broken)
    res = run_cli("profile", "--bundle", str(bundles["onnx"]), "--sizes", "128", "-o", str(tmp_path / "q.json"))
    assert res.returncode == 2 and "fixed input shape" in res.stderr and not (tmp_path / "q.json").exists()
    # A profile measured with another bundle (here: another precision) is refused, not silently used.
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(data, bundle=dict(data["bundle"], precision="int8"))))
    with pytest.raises(RarEdgeError, match="measured with another bundle"):
        Restorer.load(bundles["onnx"], profile=other, warmup=False)
    # ... and so is one measured on another execution provider (a GPU's times would overrun every CPU budget).
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps(dict(data, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])))
    with pytest.raises(RarEdgeError, match="measured on CUDAExecutionProvider and this bundle runs on CPUExecution"):
        Restorer.load(bundles["onnx"], profile=gpu, warmup=False)
    with pytest.raises(RarEdgeError, match="'providers' must be a list"):
        parse_profile(dict(data, providers="cuda"))


# --- budgets across a sequence of photos, threads and cold starts ------------------------------------------

def _noisy(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.random((1, 1, 3)) * 0.6 + 0.2 + rng.normal(0, 0.1, (h, w, 3)), 0, 1).astype(np.float32)


def test_a_large_photo_does_not_switch_the_model_off_for_small_ones(bundles):
    """Issue 21: the overhead of a many-tile photo was recorded as a per-call constant of the tile size, and
    skipped calls recorded nothing, so every later small photo was skipped for good."""
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundles["onnx"])  # fixed 64x64 tile
    small = _noisy(64, 64)
    free = [r.restore(small, max_steps=1, target_quality=99, min_gain=-99).ms["total"] for _ in range(3)]
    budget = 4 * max(free) + 20
    assert not r.restore(small, budget_ms=budget).model_skipped
    big = r.restore(_noisy(1024, 1024, 1))  # ~400 tiles, no budget
    # The scenario holds: its overhead alone would not fit the small budget (with a margin for a busy machine:
    # at 640x640 a loaded CI host once measured 43 ms of overhead against a 51 ms budget).
    assert big.tiles > 300 and big.ms["overhead"] > budget
    after = [r.restore(small, budget_ms=budget) for _ in range(3)]
    assert not any(res.model_skipped for res in after)
    assert all(res.ms["total"] <= budget for res in after)


def test_warmup_measures_the_overhead_per_tile(bundles):
    from rar_edge.runtime import Restorer
    from rar_edge.runtime.scheduler import OVERHEAD

    r = Restorer.load(bundles["onnx"])
    cost = r.costs[(64, 64)]
    assert len(cost.samples[OVERHEAD]) == 1 and cost.predict(OVERHEAD) > 0
    assert all(len(cost.samples[e]) >= 1 for e in ("encode", "assess", "restore", "decode"))


def test_no_cost_knowledge_takes_the_safe_path_and_says_so(bundles):
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundles["onnx"], warmup=False)  # no warm-up, no profile: nothing known
    img = (_noisy(64, 64) * 255).astype(np.uint8)
    res = r.restore(img, budget_ms=1000)
    assert res.model_skipped and res.cost_unknown and res.stop_reason == "budget" and np.array_equal(res.image, img)
    assert res.to_json()["cost_unknown"] is True
    # The cold call started a warm-up in the background: once it is done, budgeted calls run the model.
    assert r.warming is not None
    r.warming.join(timeout=60)
    res = r.restore(img, budget_ms=1000)
    assert not res.model_skipped and not res.cost_unknown and res.steps_run > 0
    cold = Restorer.load(bundles["onnx"], warmup=False)
    unbudgeted = cold.restore(img, max_steps=1, target_quality=99, min_gain=-99, keep="last")  # measures as it goes
    assert not unbudgeted.model_skipped and unbudgeted.steps_run == 1 and cold.warming is None
    assert not cold.restore(img, budget_ms=1000).cost_unknown


def test_waiting_for_the_lock_counts_against_the_budget(bundles):
    import threading

    from rar_edge.runtime import Restorer

    r = Restorer.load(bundles["onnx"])
    results = {}
    r._lock.acquire()  # another thread's restore holds the model
    photo = _noisy(64, 64)
    worker = threading.Thread(target=lambda: results.setdefault("res", r.restore(photo, budget_ms=100)))
    worker.start()
    worker.join(timeout=30)
    # It gave up waiting when its budget ran out, while the model was still held: it does not overrun by
    # the rest of someone else's restore.
    assert not worker.is_alive()
    r._lock.release()
    res = results["res"]
    assert res.ms["wait"] >= 95 and res.model_skipped and res.stop_reason == "budget" and res.steps == 0
    assert res.ms["total"] >= res.ms["wait"]
    assert np.array_equal(res.image, photo) and res.image is not photo
    assert res.waited_out and res.to_json()["waited_out"] is True  # flagged: the wait alone spent the budget
    assert not r.restore(_noisy(64, 64), budget_ms=100).waited_out  # no other thread: no wait
    # It keeps back what handing the input back costs (1 ms, and 1 ms per MB to copy): a 36 MB photo stops
    # waiting about 37 ms before its budget ends, and its total counts the copy.
    r._lock.acquire()
    try:
        big = np.zeros((3000, 4000, 3), np.uint8)
        res = r.restore(big, budget_ms=100)
    finally:
        r._lock.release()
    assert res.waited_out and res.ms["wait"] < 90 and res.ms["total"] >= res.ms["wait"]


# --- pass-through returns the caller's image; files keep their bytes and metadata ---------------------------

PASS = dict(target_quality=-1e9)  # assessed "good enough" at once: 0 steps, the input back
STEP = dict(max_steps=1, target_quality=1e9, min_gain=-1e9, keep="last")  # one step, decoded


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.uint8, np.uint16])
def test_arrays_keep_their_dtype_and_pass_through_exactly(restorer, dtype):
    rng = np.random.default_rng(3)
    img = rng.random((64, 64, 3))
    img = (img * np.iinfo(dtype).max).astype(dtype) if np.issubdtype(dtype, np.integer) else img.astype(dtype)
    same = restorer.restore(img, **PASS)
    assert same.steps == 0 and same.image.dtype == dtype and np.array_equal(same.image, img)
    assert same.image is not img  # a copy: the caller may change its array afterwards
    stepped = restorer.restore(img, **STEP)
    assert stepped.steps == 1 and stepped.image.dtype == dtype and stepped.image.shape == img.shape
    assert not np.array_equal(stepped.image, img)
    # Scaled back to the input's range (a uint16 result scaled by 255 would be far off).
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
    assert 0.2 < float(np.mean(stepped.image.astype(np.float64))) / top / float(np.mean(img.astype(np.float64)) / top) < 5


def _pil_modes():
    rng = np.random.default_rng(4)
    rgb = Image.fromarray((rng.random((64, 48, 3)) * 255).astype(np.uint8))
    rotated = rgb.copy()
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    rotated.info["exif"] = exif.tobytes()
    return {"L": rgb.convert("L"), "P": rgb.convert("P"), "LA": rgb.convert("LA"), "CMYK": rgb.convert("CMYK"),
            "I;16": Image.fromarray((rng.random((64, 48)) * 65535).astype(np.uint16)), "exif-rotated": rotated}


@pytest.mark.parametrize("name", list(_pil_modes()))
def test_pil_images_pass_through_as_given(restorer, name):
    im = _pil_modes()[name]
    res = restorer.restore(im, **PASS)
    assert res.steps == 0 and res.image.mode == im.mode and res.image.size == im.size
    assert res.image.tobytes() == im.tobytes() and res.image.info.get("exif") == im.info.get("exif")


def test_dark_16_bit_image_is_scaled_by_its_mode_not_its_maximum(tmp_path):
    from rar_edge.runtime.images import load_image

    dark = np.full((32, 32), 200, np.uint16)  # 0.3 % of full scale: a dark 16-bit photo, max <= 255
    Image.fromarray(dark).save(tmp_path / "dark.png")
    loaded = load_image(tmp_path / "dark.png")
    assert loaded.info["mode"] in ("I;16", "I") and abs(float(loaded.rgb.mean()) - 200 / 65535) < 1e-6


def _photo_with_metadata(path, orientation=1):
    rng = np.random.default_rng(5)
    im = Image.fromarray(np.clip(rng.normal(0.5, 0.15, (64, 128, 3)) * 255, 0, 255).astype(np.uint8))
    exif = im.getexif()
    exif[0x0132] = "2026:11:30 12:00:00"  # DateTime
    exif[0x010F] = "TestCam"  # Make
    exif[0x0112] = orientation
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(path, quality=40, exif=exif.tobytes(), icc_profile=icc)
    return icc


def test_cli_restore_writes_the_input_bytes_when_no_step_is_taken(bundles, tmp_path):
    _photo_with_metadata(tmp_path / "photo.jpg")
    res = run_cli("restore", str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "out"), "--bundle", str(bundles["onnx"]),
                  "--target-quality", "-1000", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["steps"] == 0
    assert (tmp_path / "out" / "photo.jpg").read_bytes() == (tmp_path / "photo.jpg").read_bytes()


def test_cli_restored_output_keeps_exif_and_icc_with_orientation_applied(bundles, tmp_path):
    icc = _photo_with_metadata(tmp_path / "photo.jpg", orientation=6)
    res = run_cli("restore", str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "out"), "--bundle", str(bundles["onnx"]),
                  "--max-steps", "1", "--target-quality", "1000", "--min-gain", "-1000", "--keep", "last")
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "out" / "photo.jpg") as out, Image.open(tmp_path / "photo.jpg") as src:
        exif = out.getexif()
        assert exif[0x0132] == "2026:11:30 12:00:00" and exif[0x010F] == "TestCam"
        assert exif.get(0x0112, 1) == 1  # the pixels are upright now
        assert src.size == (128, 64) and out.size == (64, 128)  # orientation 6 applied: width and height swapped
        assert out.info.get("icc_profile") == icc


def test_tiles_pool_quality_in_the_error_domain_and_pad_like_the_torch_path():
    from rar_edge.runtime.restorer import pool_psnr
    from rar_edge.runtime.tiling import pad_to

    assert pool_psnr([30.0, 30.0]) == pytest.approx(30.0)
    # One tile at 20 dB among three at 40: the whole image's PSNR is ~26 dB, not the mean 35 dB.
    assert pool_psnr([40.0, 40.0, 40.0, 20.0]) == pytest.approx(-10 * np.log10((3e-4 + 1e-2) / 4))
    img = np.arange(5 * 4 * 1, dtype=np.float32).reshape(5, 4, 1)
    padded = pad_to(img, 8, 6)
    assert np.array_equal(padded[5:, :4, 0], img[[3, 2, 1], :, 0])  # reflect, edge row not repeated
    assert np.array_equal(padded[:5, 4:, 0], img[:, [2, 1], 0])
    tiny = pad_to(img[:2, :2], 8, 8)  # pad larger than the side: the edge is repeated
    assert np.array_equal(tiny[7, :2, 0], img[1, :2, 0])


def test_a_tiled_restore_agrees_with_the_torch_loop_on_the_whole_image(bundles, tiny_checkpoint, photo_array):
    """9 tiles of 48 (overlapping, blended) against the torch loop over the whole 96x112 image in one piece:
    the same steps and stop reason, and outputs >= 40 dB apart (seams, padding and blending cost no quality)."""
    import torch

    from rar_edge.eval.metrics import psnr
    from rar_edge.infer import restore_array
    from rar_edge.runtime import Restorer
    from rar_edge.train.checkpoint import load_model

    image = np.ascontiguousarray(photo_array[:96, :112]).astype(np.float32) / 255.0
    rule = dict(max_steps=2, target_quality=99.0, min_gain=-99.0, keep="last")
    tiled = Restorer.load(bundles["dynamic"], tile=48).restore(image, **rule, denoise=False)  # the loop alone
    model, _ = load_model(tiny_checkpoint)
    with torch.no_grad():
        whole, info = restore_array(model.eval(), image, StopRule(**rule))
    assert tiled.tiles > 4
    assert (tiled.steps, tiled.stop_reason) == (info["steps"], info["stop_reason"]) == (2, "max_steps")
    assert psnr(tiled.image, whole) >= 40.0
    assert psnr(tiled.image, image) < 50.0  # the model's outputs are compared, not two pass-throughs


def test_progress_reports_every_model_call_and_ends_complete(bundles, photo_array):
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundles["dynamic"], tile=48)
    seen: list[tuple[int, int]] = []
    res = r.restore(np.ascontiguousarray(photo_array[:96, :96]), max_steps=2, target_quality=99.0, min_gain=-99.0,
                    progress=lambda done, total: seen.append((done, total)))
    calls = res.tiles * (1 + 3 + 2 + 1)  # encode, assess (input + 2 steps), 2 restores, decode: per tile
    assert len(seen) == calls + 1 and seen[-1] == (calls, calls)  # one per call, then the end
    assert [d for d, _ in seen[:-1]] == list(range(1, calls + 1)) and {t for _, t in seen} == {calls}
    stopped: list[tuple[int, int]] = []
    r.restore(np.ascontiguousarray(photo_array[:96, :96]), max_steps=4, target_quality=0.0,
              progress=lambda done, total: stopped.append((done, total)))  # stops at once (target reached)
    assert stopped[-1][0] == stopped[-1][1] and len(stopped) == 2 * res.tiles + 1  # encode + assess, then the end


def test_providers_choose_onnxruntime_execution_providers(bundles, tmp_path):
    from rar_edge.runtime.backends import resolve_providers

    assert resolve_providers("tensorrt, cuda") == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                   "CPUExecutionProvider"]
    assert resolve_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    photo = REPO / "samples" / "degraded" / "00_brushes_noise.png"
    status, out, err = cli("assess", photo, "--bundle", bundles["onnx"], "--providers", "cpu", "--json")
    assert status == 0 and json.loads(out.splitlines()[0])["quality"] > 0, err
    # A provider this onnxruntime lacks: one line that names the ones it has, before any work.
    status, out, err = cli("restore", photo, "-o", tmp_path / "out", "--bundle", bundles["onnx"],
                           "--providers", "NoSuchExecutionProvider")
    assert status == 2 and err.count("\n") == 1 and "no NoSuchExecutionProvider; available: " in err
    assert "CPUExecutionProvider" in err.split("available: ")[1] and not (tmp_path / "out" / photo.name).exists()
    status, _, err = cli("assess", photo, "--bundle", bundles["executorch"], "--providers", "cpu")
    assert status == 2 and "pass an ONNX bundle" in err


def test_executorch_backend_keeps_torch_at_one_thread_unless_told(bundles):
    """torch computes nothing in the ExecuTorch backend; its pool would compete with XNNPACK's (backends.py)."""
    code = f"""
import torch
from rar_edge.errors import RarEdgeError
from rar_edge.runtime import Restorer
torch.set_num_threads(2)
Restorer.load({str(bundles["executorch"])!r}, warmup=False, torch_threads=None)
left = torch.get_num_threads()
Restorer.load({str(bundles["executorch"])!r}, warmup=False)
default = torch.get_num_threads()
Restorer.load({str(bundles["executorch"])!r}, warmup=False, torch_threads=2)
asked = torch.get_num_threads()
try:
    Restorer.load({str(bundles["executorch"])!r}, warmup=False, torch_threads=0)
    err = "none"
except RarEdgeError as e:
    err = str(e)
print(left, default, asked, err, sep="|")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    left, default, asked, err = res.stdout.strip().splitlines()[-1].split("|")
    assert (left, default, asked) == ("2", "1", "2")
    assert "torch_threads must be a whole number of at least 1" in err


def test_executorch_torch_threads_must_be_a_whole_number(bundles):
    from rar_edge.runtime import Restorer

    for bad in (1.5, "2", True):
        with pytest.raises(RarEdgeError, match="torch_threads must be a whole number of at least 1"):
            Restorer.load(bundles["executorch"], warmup=False, torch_threads=bad)
    with pytest.raises(RarEdgeError, match="torch_threads sets torch's threads for the executorch backend; .* runs on onnx"):
        Restorer.load(bundles["onnx"], warmup=False, torch_threads=1)
