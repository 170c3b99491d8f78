"""The exposure stage (restore --tone): the head in torch and in the runtime's numpy, training, the Restorer, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cli
from rar_edge.errors import RarEdgeError
from rar_edge.model.tone import BINS, CURVE_PARAMS, ITERS, THUMB, ToneHead, apply_curve, features
from rar_edge.runtime.tone import DEFAULT_TONE, ToneCurve
from rar_edge.train.tone import ToneTrainConfig, load_tone, save_tone, train_tone


def _head(brighten: float = 0.0, logit: float = 0.0, seed: int | None = None) -> ToneHead:
    """A head whose curve raises every mid-tone by ``brighten`` (alpha = tanh(brighten) per iteration) and
    whose logit is ``logit``, whatever the image; or (``seed``) random weights everywhere."""
    head = ToneHead()
    with torch.no_grad():
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            for p in head.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        else:
            head.mlp[2].bias[: 3 * ITERS] = brighten
            head.mlp[2].bias[-1] = logit
    return head.eval()


def test_curve_is_the_identity_at_zero_and_brightens_with_positive_alphas():
    x = torch.rand(2, 3, 8, 8)
    p = torch.zeros(2, CURVE_PARAMS)
    assert torch.allclose(apply_curve(x, p), x)
    p[:, : 3 * ITERS] = 1.0  # alpha = tanh(1) > 0 in every iteration: every mid-tone rises
    y = apply_curve(x, p)
    mid = (x > 0.01) & (x < 0.99)
    assert bool((y[mid] > x[mid]).all())
    p = torch.zeros(1, CURVE_PARAMS)
    p[0, 3 * ITERS : 3 * ITERS + 3] = float(np.log(2.0))  # gain 2, offset -0.1
    p[0, 3 * ITERS + 3 :] = -0.1
    assert torch.allclose(apply_curve(x[:1] * 0.4, p), (x[:1] * 0.8 - 0.1).clamp(0, 1), atol=1e-6)


def test_a_new_head_returns_the_input_and_its_features_are_a_histogram():
    x = torch.rand(3, 3, 96, 80)
    p, logit = ToneHead()(x)
    assert torch.allclose(apply_curve(x, p), x) and torch.equal(logit, torch.zeros(3))
    f = features(x)
    hist = f[:, 6:].view(3, 3, BINS)
    assert torch.allclose(hist.sum(2), torch.ones(3, 3), atol=1e-5)  # soft bins share each pixel out
    assert torch.allclose(f[:, :3], torch.nn.functional.adaptive_avg_pool2d(x, THUMB).mean((2, 3)))


@pytest.mark.parametrize("size", [(256, 256), (250, 333), (77, 130), (40, 64)])
def test_the_runtime_computes_what_the_torch_head_does(tmp_path, size):
    head = _head(seed=3)
    save_tone(head, tmp_path / "head", {"note": "test"})
    tone = ToneCurve.load(tmp_path / "head")
    x = torch.rand(1, 3, *size) ** 2
    rgb = x[0].permute(1, 2, 0).numpy()
    with torch.no_grad():
        p, logit = head(x)
        want = apply_curve(x, p)[0].permute(1, 2, 0).numpy()
    # thumbnails of sizes not a multiple of 64 (overlapping bins) and smaller than 64 (repeated pixels) too
    assert np.abs(tone.features(rgb) - features(x)[0].numpy()).max() < 1e-5
    p_np, logit_np = tone.estimate(rgb)
    assert np.abs(p_np - p[0].numpy()).max() < 1e-5 and abs(logit_np - float(logit)) < 1e-5
    assert np.abs(tone.apply(rgb, p_np) - want).max() < 5e-4  # float rounded to 16 bits for the table
    u8 = np.round(rgb * 255).astype(np.uint8)  # 8-bit pixels as they are loaded: exact on the table's grid
    x8 = torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert np.abs(tone.features(u8) - features(x8)[0].numpy()).max() < 1e-5
    with torch.no_grad():
        want8 = apply_curve(x8, head(x8)[0])[0].permute(1, 2, 0).numpy()
    assert np.abs(tone.apply(u8, tone.estimate(u8)[0]) - want8).max() < 1e-5


def test_saved_head_loads_back_the_same_in_torch_and_refuses_what_is_not_one(tmp_path):
    head = _head(seed=5)
    save_tone(head, tmp_path / "h", {"data": str(tmp_path / "photos")})
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_tone(tmp_path / "h")(x)[0], head(x)[0])
    config = json.loads((tmp_path / "h" / "config.json").read_text())
    assert not config["training"]["data"].startswith("/")  # no machine path in what may ship
    with pytest.raises(RarEdgeError, match="no tone head in .*not a folder"):
        ToneCurve.load(tmp_path / "nothing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(RarEdgeError, match="no tone head in .*config.json missing"):
        ToneCurve.load(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"kind": "something else"}))
    (tmp_path / "bad" / "tone.safetensors").write_bytes(b"\x02\x00")
    with pytest.raises(RarEdgeError, match="not a readable safetensors file"):
        ToneCurve.load(tmp_path / "bad")
    (tmp_path / "bad" / "tone.safetensors").write_bytes((tmp_path / "h" / "tone.safetensors").read_bytes())
    with pytest.raises(RarEdgeError, match="does not hold a tone head"):
        ToneCurve.load(tmp_path / "bad")


def test_train_tone_learns_to_brighten_dark_crops(photo_dir, tmp_path):
    done = train_tone(ToneTrainConfig(data=str(photo_dir), out=str(tmp_path / "t"), minutes=None, steps=30,
                                      batch=8, crop=64, lr=5e-3), progress=False)
    assert done["steps"] == 30
    tone = ToneCurve.load(tmp_path / "t")
    clean = np.asarray(Image.open(sorted(photo_dir.iterdir())[0]).convert("RGB"), np.float32) / 255
    dark = clean * 0.25
    params, _ = tone.estimate(dark)
    err = [float(np.mean((y - clean) ** 2)) for y in (dark, tone.apply(dark, params))]
    assert err[1] < 0.7 * err[0]  # 30 steps already undo part of a 4x darkening


def _restorer(bundle, tmp_path, brighten: float, logit: float):
    from rar_edge.runtime import Restorer

    save_tone(_head(brighten, logit), tmp_path / f"h{logit}", {})
    return Restorer.load(bundle, tone_head=tmp_path / f"h{logit}")


def test_restore_tones_only_where_the_head_finds_the_photo_under_exposed(bundles, tmp_path, photo_array):
    dark = (photo_array[:64, :64] * 0.3).astype(np.float32)
    never = dict(max_steps=0, denoise=False)  # no restore step, no noise stage: the output is the exposure stage's
    on = _restorer(bundles["onnx"], tmp_path, brighten=1.0, logit=5.0)
    res = on.restore(dark, tone=True, **never)
    assert res.tone.applied and res.steps == 0 and not res.unchanged
    assert float(res.image.mean()) > 1.5 * float(dark.mean()) and res.image.dtype == dark.dtype
    assert res.to_json()["tone"] == {"applied": True, "under_exposed_logit": 5.0, "gate": 0.0} and "tone" in res.ms
    assert on.restore(dark, **never).tone is None  # not asked: no stage, the input as given
    assert np.array_equal(on.restore(dark, **never).image, dark)
    off = _restorer(bundles["onnx"], tmp_path, brighten=1.0, logit=-5.0)
    res = off.restore(dark, tone=True, **never)
    assert not res.tone.applied and res.unchanged and np.array_equal(res.image, dark)
    # with steps, the loop restores the toned photo: the same as restoring that photo without the stage
    forced = dict(max_steps=1, target_quality=1e9, min_gain=-1e9, keep="last", denoise=False)
    toned = on.tone_curve()(dark)[0]
    assert np.allclose(on.restore(dark, tone=True, **forced).image, on.restore(toned, **forced).image, atol=1e-6)
    u8 = (dark * 255).astype(np.uint8)  # 8-bit in, 8-bit out, toned
    res = on.restore(u8, tone=True, **never)
    assert res.image.dtype == np.uint8 and res.image.mean() > 1.5 * u8.mean()


def test_cli_restore_tone_writes_the_toned_photo_and_says_so(bundles, tmp_path, photo_array):
    src = tmp_path / "dark.png"
    Image.fromarray((photo_array[:64, :64] * 0.3 * 255).astype(np.uint8)).save(src)
    save_tone(_head(1.0, 5.0), tmp_path / "head", {})
    args = ["restore", src, "-o", tmp_path / "out", "--bundle", bundles["onnx"], "--max-steps", "0"]
    status, out, err = cli(*args, "--tone", "--tone-head", tmp_path / "head", "--json")
    assert status == 0, err
    record = json.loads(out.splitlines()[-1])
    assert record["tone"]["applied"] and record["steps"] == 0 and "unchanged" not in record
    assert np.asarray(Image.open(tmp_path / "out" / "dark.png")).mean() > 1.5 * np.asarray(Image.open(src)).mean()
    status, out, _ = cli(*args, "--tone", "--tone-head", tmp_path / "head", "--overwrite")
    assert status == 0 and "tone curve applied (under-exposed)" in out
    status, _, err = cli(*args, "--tone-head", tmp_path / "head")  # the head without the stage: refused
    assert status != 0 and "add --tone" in err
    status, _, err = cli(*args, "--tone", "--tone-head", tmp_path / "missing")
    assert status != 0 and "no tone head in" in err and len(err.strip().splitlines()) == 1


def test_cli_checkpoint_path_tones_like_the_runtime(tiny_checkpoint, tmp_path, photo_array):
    src = tmp_path / "dark.png"
    Image.fromarray((photo_array[:64, :64] * 0.3 * 255).astype(np.uint8)).save(src)
    save_tone(_head(1.0, 5.0), tmp_path / "head", {})
    status, out, err = cli("restore", src, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint, "--max-steps", "0",
                           "--tone", "--tone-head", tmp_path / "head", "--json", "--no-denoise")  # the curve alone
    assert status == 0, err
    record = json.loads(out.splitlines()[-1])
    assert record["tone"]["applied"] and record["ms"]["tone"] > 0 and record["ms"]["total"] >= record["ms"]["tone"]
    want = ToneCurve.load(tmp_path / "head")(np.asarray(Image.open(src), np.float32) / 255)[0]
    got = np.asarray(Image.open(tmp_path / "out" / "dark.png"), np.float32) / 255
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6


def test_cli_train_tone_writes_a_head_the_runtime_reads(photo_dir, tmp_path):
    status, out, err = cli("train-tone", "--data", photo_dir, "--out", tmp_path / "t", "--steps", "2",
                           "--batch", "2", "--crop", "32")
    assert status == 0, err
    assert "done: " in out and "--tone --tone-head" in out
    assert ToneCurve.load(tmp_path / "t").gate == 0.0
    status, _, err = cli("train-tone", "--data", tmp_path / "none", "--out", tmp_path / "u", "--steps", "2")
    assert status != 0 and not (tmp_path / "u").exists()


def test_the_shipped_head_brightens_under_exposed_photos_and_leaves_well_exposed_ones():
    from rar_edge.runtime.images import load_image, unit_float

    tone = ToneCurve.load()  # the shipped head (DEFAULT_TONE)
    gains = []
    for path in sorted((DEFAULT_TONE.parents[2] / "samples" / "clean").iterdir()):
        clean = unit_float(load_image(path).rgb)
        assert not tone(clean)[1].applied, f"{path.name}: a well-exposed photo toned"
        dark = clean * 0.3  # an exposure 1.7 stops short: a plain scaling, not the training synthesis's models
        toned, decision = tone(dark)
        assert decision.applied, f"{path.name}: an under-exposed photo left dark"
        gains.append(10 * np.log10(np.mean((dark - clean) ** 2) / np.mean((toned - clean) ** 2)))
    # measured when it shipped (2026-12-07): +3.8 to +10.3 dB, mean +8.1 over the nine clean samples
    assert min(gains) > 3.0 and np.mean(gains) > 7.0, gains


def test_tone_cost_bench_prints_a_row_per_size_and_refuses_no_runs(capsys):
    from conftest import load_bench

    bench = load_bench("tone_cost")
    assert bench.main(["--sizes", "64,40x70", "--runs", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["size", "64×64", "40×70"]
    assert all(float(r.split("|")[2]) > 0 and float(r.split("|")[3]) > 0 for r in rows[1:])
    with pytest.raises(SystemExit) as e:
        bench.main(["--runs", "0"])
    assert e.value.code == 2


def test_restore_output_suggests_tone_where_low_light_is_found_and_says_what_the_stage_did(capsys):
    from rar_edge.cli import _print_record

    record = {"input": "in.png", "output": "out.png", "quality": [20.0, 24.0], "steps": 1, "stop_reason": "worse",
              "ms": {"total": 5.0}, "degradations": {"noise": 0.1, "low_light": 0.8}}
    _print_record(record, as_json=False)
    assert capsys.readouterr().out.rstrip().endswith("--tone corrects its exposure first)")
    _print_record({**record, "degradations": {"noise": 0.9, "low_light": 0.2}}, as_json=False)
    assert "--tone" not in capsys.readouterr().out  # nothing dark found: no hint
    for applied, said in ((True, "tone curve applied (under-exposed); found"), (False, "tone curve not needed; found")):
        _print_record({**record, "tone": {"applied": applied, "under_exposed_logit": 1.0, "gate": 0.0}}, as_json=False)
        out = capsys.readouterr().out
        assert said in out and "--tone corrects" not in out  # asked for: the hint is moot


def test_bundle_quality_adds_a_tone_row_per_bundle(bundles, tmp_path, photo_array):
    from conftest import load_bench

    bench = load_bench("bundle_quality")
    save_tone(_head(1.0, 5.0), tmp_path / "head", {})
    b = bundles["dynamic"]
    methods = bench.bundle_methods(b, {"max_steps": 0, "denoise": False}, tone=True, tone_head=str(tmp_path / "head"))
    assert list(methods) == [str(b), f"{b} --tone"]
    dark = np.ascontiguousarray(photo_array[:64, :64] * 0.3)
    plain, toned = methods[str(b)](dark)[0], methods[f"{b} --tone"](dark)[0]
    assert np.array_equal(plain, dark) and toned.mean() > 1.5 * dark.mean()
    assert list(bench.bundle_methods(b)) == [str(b)]
    with pytest.raises(SystemExit) as e:
        bench.main([str(b), "--photos", str(tmp_path), "--tone-head", str(tmp_path / "head")])
    assert e.value.code == 2


def test_a_broken_head_is_refused_in_one_line(tmp_path):
    save_tone(_head(seed=1), tmp_path / "good", {})
    good = (tmp_path / "good" / "tone.safetensors").read_bytes()
    config = json.loads((tmp_path / "good" / "config.json").read_text())

    def broken(name: str, weights: bytes = good, cfg=config) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "tone.safetensors").write_bytes(weights)
        (folder / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
        with pytest.raises(RarEdgeError) as e:
            ToneCurve.load(folder)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "cut short" in broken("truncated", good[:-100])
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + n])
    header["w1"]["data_offsets"] = [0, 10**9]
    text = json.dumps(header).encode()
    assert "cut short" in broken("offsets", len(text).to_bytes(8, "little") + text + good[8 + n :])
    assert "cannot read the tone head" in broken("notjson", cfg="{oops")
    assert "bad or missing size" in broken("noiters", cfg={k: v for k, v in config.items() if k != "iters"})
    assert "gate_logit must be a finite number" in broken("nan", cfg={**config, "gate_logit": "nan"})
    assert "do not match its config" in broken("bins", cfg={**config, "bins": 8})
    with pytest.raises(RarEdgeError, match="not a folder"):
        ToneCurve.load(tmp_path / "good" / "config.json")


def test_restore_tone_keeps_the_input_kind_alpha_and_runs_under_any_budget(bundles, tmp_path, photo_array):
    r = _restorer(bundles["onnx"], tmp_path, brighten=1.0, logit=5.0)
    dark = (photo_array[:64, :64] * 0.3).astype(np.float32)
    never = dict(max_steps=0)
    alpha = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64, 1)
    rgba = r.restore(np.concatenate([dark, alpha], 2), tone=True, **never).image
    assert rgba.shape == (64, 64, 4) and np.array_equal(rgba[..., 3:], alpha) and rgba[..., :3].mean() > 1.5 * dark.mean()
    gray = r.restore(dark.mean(2), tone=True, **never).image
    assert gray.shape == (64, 64) and gray.mean() > 1.5 * dark.mean()
    u16 = (dark * 65535).astype(np.uint16)
    out16 = r.restore(u16, tone=True, **never).image
    assert out16.dtype == np.uint16 and out16.mean() > 1.5 * u16.mean()
    pil = r.restore(Image.fromarray((dark * 255).astype(np.uint8)), tone=True, **never).image
    assert isinstance(pil, Image.Image) and np.asarray(pil).mean() > 1.5 * dark.mean() * 255
    # a budget too short for encode + decode: the stage has run (it is not scheduled), the model has not
    res = r.restore(dark, tone=True, budget_ms=1e-3)
    assert res.model_skipped and res.tone.applied and res.quality == [] and res.image.mean() > 1.5 * dark.mean()
    assert res.ms["tone"] > 0 and res.ms["total"] >= res.ms["tone"]


def test_cli_says_the_photo_was_toned_when_the_budget_ran_out(bundles, tmp_path, photo_array):
    src = tmp_path / "dark.png"
    Image.fromarray((photo_array[:64, :64] * 0.3 * 255).astype(np.uint8)).save(src)
    save_tone(_head(1.0, 5.0), tmp_path / "head", {})
    status, out, err = cli("restore", src, "-o", tmp_path / "out", "--bundle", bundles["onnx"], "--budget-ms", "0.001",
                           "--tone", "--tone-head", tmp_path / "head")
    assert status == 0, err
    assert re.search(r"tone curve applied, no restore step \(budget below encode \+ decode: this photo needs a "
                     r"budget of about \d+ ms\)", out), out


def test_assess_tone_says_whether_restore_tone_would_brighten(bundles, tmp_path, photo_array):
    dark = (photo_array[:64, :64] * 0.3).astype(np.float32)
    on = _restorer(bundles["onnx"], tmp_path, brighten=1.0, logit=5.0)
    a = on.assess(dark, tone=True)
    assert a.tone.applied and a.to_json()["tone"]["applied"] and on.assess(dark).tone is None
    assert a.quality == on.assess(dark).quality  # the assessment itself is the image's, untoned
    assert not _restorer(bundles["onnx"], tmp_path, brighten=1.0, logit=-5.0).assess(dark, tone=True).tone.applied
    samples = DEFAULT_TONE.parents[2] / "samples" / "degraded"  # the shipped head, through the CLI
    status, out, err = cli("assess", samples / "05_coffee_low_light.png", samples / "00_brushes_noise.png", "--tone")
    assert status == 0, err
    lines = out.splitlines()
    assert "under-exposed" in lines[0] and "  yes (logit +" in lines[1] and "  no (logit -" in lines[2]
    status, out, _ = cli("assess", samples / "05_coffee_low_light.png", "--tone", "--json")
    assert json.loads(out.splitlines()[-1])["tone"]["applied"] is True
