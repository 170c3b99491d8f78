"""Degradation synthesis: every model of every synthesis, ranges, labels, composites, reproducibility."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rar_edge import DEGRADATIONS
from rar_edge.data.degrade import (APPLY_ORDER, SYNTHESES, apply_degradations, degrade, model_names,
                                   sample_specs)
from rar_edge.data.synth.common import library_rng
from rar_edge.data.synth.legacy import blur_kernels

#: The documented parameter of each model at severity 0 and 1 (docs/degradations.md), with a tolerance.
EXPECTED_PARAMS = {
    ("v1", "noise"): (5, 50, 0), ("v1", "blur"): (0, 1, 0), ("v1", "jpeg"): (60, 10, 0.51),
    ("v1", "rain"): (0.001, 0.006, 0), ("v1", "haze"): (0.5, 3.0, 0), ("v1", "low_light"): (0.5, 0.08, 0),
    ("v2", "noise"): (1, 50, 0), ("v2", "jpeg"): (90, 10, 0.51), ("v2", "rain"): (0.0005, 0.006, 0),
    ("v2", "haze"): (0.9, 0.3, 0.02),  # the mean transmission obtained: beta is solved to meet the target
}
V2_BLUR_EXTENT = {"gaussian": (1.2, 7), "anisotropic": (1.6, 8), "defocus": (2, 12), "linear_motion": (3, 15),
                  "curved_motion": (3, 15)}
V2_LOW_LIGHT = {"gamma": (0.5, 0.08), "linear": (0.5, 0.05), "tone_curve": (0.6, 0.1)}
#: Models with nothing random but their severity: another seed gives the same image.
DETERMINISTIC = {("v1", "jpeg", "v1"), ("v2", "jpeg", "jpeg_420"), ("v2", "jpeg", "jpeg_444"),
                 ("v2", "blur", "gaussian"), ("v2", "blur", "defocus")}
MODELS = [(syn, name, k, m) for syn in SYNTHESES for name in DEGRADATIONS for k, m in enumerate(model_names(syn, name))]


@pytest.fixture()
def clean(photo_array) -> torch.Tensor:
    return torch.from_numpy(photo_array).permute(2, 0, 1)[None].repeat(8, 1, 1, 1).contiguous()


def _only(name: str, n: int, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(n, len(DEGRADATIONS))
    labels[:, DEGRADATIONS.index(name)] = 1
    return labels, labels * s


def _run(clean, syn, name, k, s, seed=0):
    labels, sev = _only(name, clean.shape[0], s)
    models = torch.full(labels.shape, k, dtype=torch.long)
    return apply_degradations(clean, labels, sev, torch.Generator().manual_seed(seed), syn, models=models)


def _base(syn: str) -> str:
    """v3 is v2 plus models: what v2's models promise, v3's keep."""
    return "v2" if syn == "v3" else syn


def _expected(syn, name, model):
    syn = _base(syn)
    if (syn, name) in EXPECTED_PARAMS:
        return EXPECTED_PARAMS[(syn, name)]
    lo, hi = V2_BLUR_EXTENT[model] if name == "blur" else V2_LOW_LIGHT[model]
    return lo, hi, 0


@pytest.mark.parametrize("syn,name,k,model", MODELS, ids=[f"{s}-{n}-{m}" for s, n, _, m in MODELS])
@pytest.mark.parametrize("s", [0.0, 1.0])
def test_each_model_degrades_and_reports_its_documented_param(clean, syn, name, k, model, s):
    b = _run(clean, syn, name, k, s)
    j = DEGRADATIONS.index(name)
    lo, hi, tol = _expected(syn, name, model)
    want = lo + (hi - lo) * s
    assert torch.allclose(b.params[:, j], torch.full((clean.shape[0],), float(want)), atol=tol + 1e-4 * abs(want) + 1e-6)
    assert [b.model_name(i, name) for i in range(clean.shape[0])] == [model] * clean.shape[0]
    assert torch.equal(b.labels, _only(name, clean.shape[0], s)[0])
    assert b.degraded.min() >= 0 and b.degraded.max() <= 1
    mse = (b.degraded - b.clean).pow(2).mean(dim=(1, 2, 3))
    assert torch.all(mse > 1e-6), f"{syn}/{name}/{model} at severity {s} left an image unchanged"
    assert torch.all(b.params[:, [i for i in range(len(DEGRADATIONS)) if i != j]] == 0)


@pytest.mark.parametrize("syn,name,k,model", MODELS, ids=[f"{s}-{n}-{m}" for s, n, _, m in MODELS])
def test_each_model_is_reproducible_and_severity_orders_damage(clean, syn, name, k, model):
    a, b = _run(clean, syn, name, k, 0.6, seed=3), _run(clean, syn, name, k, 0.6, seed=3)
    assert torch.equal(a.degraded, b.degraded)
    other = _run(clean, syn, name, k, 0.6, seed=4).degraded
    assert torch.equal(a.degraded, other) == ((_base(syn), name, model) in DETERMINISTIC)
    errs = [float((_run(clean, syn, name, k, s, seed=2).degraded - clean).pow(2).mean()) for s in (0.1, 0.9)]
    assert errs[1] > errs[0]


@pytest.mark.parametrize("model", model_names("v2", "noise"))
def test_v2_noise_sigma_at_mid_grey(clean, model):
    gray = torch.full_like(clean, 0.5)  # every noise model has exactly sigma there
    for s in (0.2, 1.0):
        b = _run(gray, "v2", "noise", model_names("v2", "noise").index(model), s, seed=1)
        sigma = float((b.degraded - gray).std()) * 255
        expected = 1 + 49 * s
        assert abs(sigma - expected) < 0.1 * expected + 0.5, (model, s, sigma)


def test_v1_noise_sigma_matches_documented_value(clean):
    gray = torch.full_like(clean, 0.5)
    for s in (0.0, 1.0):
        sigma = float((_run(gray, "v1", "noise", 0, s, seed=1).degraded - gray).std()) * 255
        assert abs(sigma - (5 + 45 * s)) < 0.1 * (5 + 45 * s) + 0.5


@pytest.mark.parametrize("syn,k,model", [(syn, k, m) for syn in SYNTHESES for k, m in enumerate(model_names(syn, "blur"))])
def test_blur_kernels_keep_flat_images_flat_and_remove_detail(clean, syn, k, model):
    """A normalised kernel leaves a constant image constant; any blur removes high frequencies."""
    flat = torch.full_like(clean, 0.37)
    assert torch.allclose(_run(flat, syn, "blur", k, 0.8).degraded, flat, atol=1e-5)
    b = _run(clean, syn, "blur", k, 0.7, seed=3)
    hf = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert torch.all(hf(b.degraded) < 0.85 * hf(clean)), model


def test_legacy_blur_kernels_are_normalised():
    n = 9
    k = blur_kernels(torch.arange(n) % 3, torch.linspace(0, 1, n), torch.linspace(0, 3, n))
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(n)) and torch.all(k >= 0)


@pytest.mark.parametrize("syn", SYNTHESES)
def test_haze_brightens_and_flattens_and_low_light_darkens_with_every_model(clean, syn):
    mean, std = clean.mean(dim=(1, 2, 3)), clean.std(dim=(1, 2, 3))
    for k, model in enumerate(model_names(syn, "haze")):
        b = _run(clean, syn, "haze", k, 0.8, seed=4)
        assert torch.all(b.degraded.mean(dim=(1, 2, 3)) > mean + 0.005), model
        assert torch.all(b.degraded.std(dim=(1, 2, 3)) < 0.8 * std), model  # airlight washes contrast out
    for k, model in enumerate(model_names(syn, "low_light")):
        b = _run(clean, syn, "low_light", k, 0.8, seed=4)
        assert torch.all(b.degraded.mean(dim=(1, 2, 3)) < mean - 0.05), model


def test_v3_tone_curve_meets_its_brightness_ratio_and_overcast_rain_dims_the_scene(clean):
    """v3's photometric models: the tone curve's mean brightness is its ratio of the clean image's (or
    darker, where a steep curve needs a gain above 1) and it crushes shadows more than highlights; rain
    under an overcast sky leaves the scene darker than the clean image, where the other models brighten it."""
    k = model_names("v3", "low_light").index("tone_curve")
    for s in (0.2, 0.9):
        b = _run(clean, "v3", "low_light", k, s, seed=2)
        ratio = b.degraded.mean(dim=(1, 2, 3)) / clean.mean(dim=(1, 2, 3))
        want = 0.6 + (0.1 - 0.6) * s
        assert torch.all(ratio < want + 0.01) and float(ratio.max()) > want - 0.01, (s, ratio)
        # shadows (clean's darkest quarter) keep a smaller share of their brightness than highlights do
        flat_clean, flat = clean.flatten(1), b.degraded.flatten(1)
        lo, hi = flat_clean.quantile(0.25, dim=1, keepdim=True), flat_clean.quantile(0.75, dim=1, keepdim=True)
        kept = [(flat * m).sum(1) / (flat_clean * m).sum(1) for m in ((flat_clean <= lo).float(), (flat_clean >= hi).float())]
        assert torch.all(kept[0] < kept[1]), (s, kept)
    rain = _run(clean, "v3", "rain", model_names("v3", "rain").index("overcast"), 0.1, seed=3)
    assert torch.all(rain.degraded.mean(dim=(1, 2, 3)) < clean.mean(dim=(1, 2, 3)) - 0.01)
    streaks = _run(clean, "v3", "rain", model_names("v3", "rain").index("streaks"), 0.1, seed=3)
    assert torch.all(streaks.degraded.mean(dim=(1, 2, 3)) > clean.mean(dim=(1, 2, 3)))
    assert model_names("v3", "noise") == model_names("v2", "noise")


def test_v2_haze_airlight_is_coloured_and_jpeg_subsampling_differs(clean):
    white = torch.zeros_like(clean)  # a black scene shows the airlight alone
    b = _run(white.repeat(4, 1, 1, 1), "v2", "haze", 1, 1.0, seed=5)
    tint = b.degraded.mean(dim=(2, 3))
    assert float((tint[:, 0] - tint[:, 2]).abs().max()) > 0.03  # warm or blue for some images
    j420, j444 = _run(clean, "v2", "jpeg", 0, 0.8, seed=1), _run(clean, "v2", "jpeg", 1, 0.8, seed=1)
    assert not torch.equal(j420.degraded, j444.degraded)


def test_every_model_is_drawn_and_the_draw_is_reproducible(clean):
    big = clean.repeat(8, 1, 1, 1)[:, :, :48, :48]
    labels = torch.ones(big.shape[0], len(DEGRADATIONS))
    b = apply_degradations(big, labels, labels * 0.5, torch.Generator().manual_seed(9))
    for j, name in enumerate(DEGRADATIONS):
        assert set(b.models[:, j].tolist()) == set(range(len(model_names("v2", name)))), name
    again = apply_degradations(big, labels, labels * 0.5, torch.Generator().manual_seed(9))
    assert torch.equal(b.degraded, again.degraded) and torch.equal(b.models, again.models)


def test_composites_apply_in_physical_order(clean, monkeypatch):
    calls: list[str] = []
    for name in DEGRADATIONS:
        for model, fn in list(SYNTHESES["v2"][name].items()):
            def recorder(x, s, gen, name=name, fn=fn):
                calls.append(name)
                return fn(x, s, gen)
            monkeypatch.setitem(SYNTHESES["v2"][name], model, recorder)
    labels = torch.ones(2, len(DEGRADATIONS))
    apply_degradations(clean[:2], labels, labels * 0.5, torch.Generator().manual_seed(6))
    seen = list(dict.fromkeys(calls))
    assert seen == ["haze", "rain", "blur", "low_light", "noise", "jpeg"]  # atmosphere, optics, sensor, codec
    assert tuple(seen) == APPLY_ORDER


def test_composites_set_several_labels_and_sampling_is_reproducible(clean):
    gen = torch.Generator().manual_seed(5)
    labels, sev = sample_specs(400, gen, p_clean=0.1, p_composite=0.4)
    counts = labels.sum(1)
    assert set(counts.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert 0.03 < float((counts == 0).float().mean()) < 0.2
    assert torch.all((sev > 0) <= (labels > 0))
    for syn in SYNTHESES:
        a, b = degrade(clean, seed=7, synthesis=syn), degrade(clean, seed=7, synthesis=syn)
        assert torch.equal(a.degraded, b.degraded) and torch.equal(a.labels, b.labels)
        assert not torch.equal(a.degraded, degrade(clean, seed=8, synthesis=syn).degraded)


def test_type_weights_draw_a_type_more_often_alone_and_in_composites():
    haze = DEGRADATIONS.index("haze")
    even, _ = sample_specs(3000, torch.Generator().manual_seed(3))
    weighted, _ = sample_specs(3000, torch.Generator().manual_seed(3), type_weights={"haze": 3.0})
    share = lambda labels: float(labels[:, haze].sum() / labels.sum())  # noqa: E731
    assert 0.14 < share(even) < 0.19  # 1 of 6
    assert 0.28 < share(weighted) < 0.37  # 3 of 8 singles; composites draw it at most once
    composites = weighted[weighted.sum(1) > 1]
    assert float(composites[:, haze].mean()) > 0.6  # in most composites, against ~0.42 when even
    # The other types keep equal shares among themselves.
    rest = weighted[:, [i for i in range(len(DEGRADATIONS)) if i != haze]].sum(0)
    assert float(rest.max() / rest.min()) < 1.2
    with pytest.raises(ValueError, match="positive"):
        sample_specs(4, torch.Generator().manual_seed(0), type_weights={"haze": 0.0})


def test_library_rng_is_seeded_by_the_generator_and_leaves_global_state(clean):
    state = torch.get_rng_state()
    with library_rng(torch.Generator().manual_seed(1)):
        a = torch.rand(3)
    with library_rng(torch.Generator().manual_seed(1)):
        b = torch.rand(3)
    with library_rng(torch.Generator().manual_seed(2)):
        c = torch.rand(3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_synthesis_is_one_line_error(clean):
    from rar_edge.errors import RarEdgeError

    with pytest.raises(RarEdgeError, match="unknown synthesis 'v9'; choose one of v1, v2"):
        degrade(clean, seed=0, synthesis="v9")


def test_foreign_synthesis_runs_every_model_and_is_reproducible(clean):
    from rar_edge.eval.foreign import _models, apply_foreign

    models = _models()
    assert set(models) == set(DEGRADATIONS)
    small = clean.repeat(4, 1, 1, 1)[:, :, :64, :64]
    for j, name in enumerate(DEGRADATIONS):
        labels = torch.zeros(small.shape[0], len(DEGRADATIONS))
        labels[:, j] = 1
        a, b = apply_foreign(small, labels, seed=j), apply_foreign(small, labels, seed=j)
        assert torch.equal(a.degraded, b.degraded)
        assert torch.all((a.degraded - small).abs().mean(dim=(1, 2, 3)) > 1e-3), name
        assert {a.model_name(i, name) for i in range(small.shape[0])} <= set(models[name])
        # Fog blurs the whole image too: its labels say so (detection is scored with blur present).
        fog = torch.tensor([a.model_name(i, name) == "fog" for i in range(small.shape[0])])
        implied = torch.zeros_like(labels)
        implied[fog, DEGRADATIONS.index("blur")] = 1
        assert torch.equal(a.labels, labels + implied), name


def test_training_never_imports_the_foreign_synthesis():
    """The independent test synthesis must stay out of training for good."""
    code = ("import sys, torch\n"
            "from rar_edge.train import trainer\n"
            "from rar_edge.quantize import distill\n"
            "assert 'rar_edge.eval.foreign' not in sys.modules, 'training imported the foreign synthesis'\n"
            "assert 'albumentations' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(clean):
    for syn in SYNTHESES:
        b = degrade(clean.cuda(), seed=0, synthesis=syn)
        assert b.degraded.is_cuda
        assert torch.equal(b.degraded, degrade(clean.cuda(), seed=0, synthesis=syn).degraded)
