"""Degradation synthesis: ranges, labels, composites, reproducibility."""

from __future__ import annotations

import pytest
import torch

from rar_edge import DEGRADATIONS
from rar_edge.data.degrade import PARAM_RANGES, apply_degradations, blur_kernels, degrade, sample_specs


@pytest.fixture()
def clean(photo_array) -> torch.Tensor:
    return torch.from_numpy(photo_array).permute(2, 0, 1)[None].repeat(8, 1, 1, 1).contiguous()


def _only(name: str, n: int, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(n, len(DEGRADATIONS))
    labels[:, DEGRADATIONS.index(name)] = 1
    return labels, labels * s


def _high_freq(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))


@pytest.mark.parametrize("name", DEGRADATIONS)
@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_each_type_changes_image_and_reports_param_in_range(clean, name, s):
    labels, sev = _only(name, clean.shape[0], s)
    b = apply_degradations(clean, labels, sev, torch.Generator().manual_seed(0))
    j = DEGRADATIONS.index(name)
    lo, hi, _ = PARAM_RANGES[name]
    assert torch.all(b.params[:, j] >= min(lo, hi) - 1e-6) and torch.all(b.params[:, j] <= max(lo, hi) + 1e-6)
    assert torch.allclose(b.params[:, j], torch.full((clean.shape[0],), lo + (hi - lo) * s), atol=0.51)
    assert torch.equal(b.labels, labels)
    assert b.degraded.min() >= 0 and b.degraded.max() <= 1
    mse = (b.degraded - b.clean).pow(2).mean(dim=(1, 2, 3))
    assert torch.all(mse > 1e-5), f"{name} at severity {s} left an image unchanged"
    others = [k for k in range(len(DEGRADATIONS)) if k != j]
    assert torch.all(b.params[:, others] == 0)


def test_noise_sigma_matches_documented_value(clean):
    gray = torch.full_like(clean, 0.5)  # mid-grey: both noise models have exactly sigma there
    for s in (0.0, 1.0):
        labels, sev = _only("noise", 8, s)
        b = apply_degradations(gray, labels, sev, torch.Generator().manual_seed(1))
        sigma = float((b.degraded - gray).std()) * 255
        expected = 5 + 45 * s
        assert abs(sigma - expected) < 0.1 * expected + 0.5


def test_severity_orders_damage(clean):
    """More severe -> further from the clean image, for every type."""
    for name in DEGRADATIONS:
        errs = []
        for s in (0.1, 0.9):
            labels, sev = _only(name, 8, s)
            b = apply_degradations(clean, labels, sev, torch.Generator().manual_seed(2))
            errs.append(float((b.degraded - clean).pow(2).mean()))
        assert errs[1] > errs[0], name


def test_blur_removes_high_frequencies(clean):
    labels, sev = _only("blur", 8, 0.7)
    b = apply_degradations(clean, labels, sev, torch.Generator().manual_seed(3))
    assert torch.all(_high_freq(b.degraded) < 0.8 * _high_freq(clean))


def test_blur_kernels_are_normalised():
    n = 9
    k = blur_kernels(torch.arange(n) % 3, torch.linspace(0, 1, n), torch.linspace(0, 3, n))
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(n))
    assert torch.all(k >= 0)


def test_haze_brightens_and_low_light_darkens(clean):
    for name, sign in (("haze", 1), ("low_light", -1)):
        labels, sev = _only(name, 8, 0.8)
        b = apply_degradations(clean, labels, sev, torch.Generator().manual_seed(4))
        assert torch.all(sign * (b.degraded.mean(dim=(1, 2, 3)) - clean.mean(dim=(1, 2, 3))) > 0.05)


def test_composites_set_several_labels_and_sampling_is_reproducible(clean):
    gen = torch.Generator().manual_seed(5)
    labels, sev = sample_specs(400, gen, p_clean=0.1, p_composite=0.4)
    counts = labels.sum(1)
    assert set(counts.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert 0.03 < float((counts == 0).float().mean()) < 0.2
    assert torch.all((sev > 0) <= (labels > 0))
    a, b = degrade(clean, seed=7), degrade(clean, seed=7)
    assert torch.equal(a.degraded, b.degraded) and torch.equal(a.labels, b.labels)
    c = degrade(clean, seed=8)
    assert not torch.equal(a.degraded, c.degraded)


def test_composite_applies_every_type(clean):
    labels = torch.zeros(2, len(DEGRADATIONS))
    labels[:, [DEGRADATIONS.index("blur"), DEGRADATIONS.index("noise"), DEGRADATIONS.index("jpeg")]] = 1
    b = apply_degradations(clean[:2], labels, labels * 0.5, torch.Generator().manual_seed(6))
    assert torch.all(b.params[:, labels[0] > 0] > 0)
    blurred = apply_degradations(clean[:2], labels * torch.tensor([0, 1, 0, 0, 0, 0.0]),
                                 labels * 0.5, torch.Generator().manual_seed(6))
    assert not torch.equal(b.degraded, blurred.degraded)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(clean):
    b = degrade(clean.cuda(), seed=0)
    assert b.degraded.is_cuda
    b2 = degrade(clean.cuda(), seed=0)
    assert torch.equal(b.degraded, b2.degraded)
