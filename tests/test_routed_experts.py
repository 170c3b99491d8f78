"""bench/routed_experts.py: per-type expert restorers routed by the base model's detected degradations."""

from __future__ import annotations

import pytest
import torch

from rar_edge.model import RAR, get_preset

from conftest import load_bench


class _Expert:
    """An expert whose step adds 10 x (its index + 1) plus the first value of its own embedding (= its index)."""

    def __init__(self, k: int, cond_dim: int) -> None:
        self.k, self.cond_dim = k, cond_dim

    def assess(self, z):
        return None, None, torch.full((z.shape[0], self.cond_dim), float(self.k))

    def restore(self, z, cond):
        return z + 10 * (self.k + 1) + cond[:, :1, None, None]


def _routed(mode: str, threshold: float = 0.0):
    re = load_bench("routed_experts")
    base = RAR(get_preset("rar-tiny").config).eval()
    e = base.config.cond_dim
    probs = torch.tensor([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.6, 0, 0, 0], [0.3, 0, 0, 0, 0, 0.4]])
    base.assess = lambda z: (torch.zeros(3), probs, torch.full((3, e), 7.0))
    base.restore = lambda z, cond: z - 1 + cond[:, :1, None, None]  # the base restorer (own embedding: 7)
    re.route(base, [_Expert(k, e) for k in range(6)], mode, threshold)
    z = torch.zeros(3, 2, 4, 4)
    _, p, packed = base.assess(z)
    return base.restore(z, packed)[:, 0, 0, 0], p


def test_hard_routing_runs_the_most_probable_types_expert_with_its_own_embedding():
    out, p = _routed("hard")
    assert out.tolist() == [10 + 0, 30 + 2, 60 + 5]
    assert torch.equal(p, torch.tensor([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.6, 0, 0, 0], [0.3, 0, 0, 0, 0, 0.4]]))
    out, _ = _routed("hard", threshold=0.5)  # the third image's top type (0.4) is below it: the base restorer
    assert out.tolist() == [10, 32, -1 + 7]


def test_soft_routing_averages_every_experts_step_by_probability():
    out, _ = _routed("soft")
    step = torch.tensor([10.0 * (k + 1) + k for k in range(6)])
    probs = torch.tensor([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.6, 0, 0, 0], [0.3, 0, 0, 0, 0, 0.4]])
    torch.testing.assert_close(out, (probs / probs.sum(1, keepdim=True)) @ step)


def test_best_routing_keeps_each_images_highest_assessed_step():
    """``best``: the base's step and every expert's, and per image the one the base's assessor scores highest
    (here: the latent whose mean is nearest 30)."""
    re = load_bench("routed_experts")
    base = RAR(get_preset("rar-tiny").config).eval()
    e = base.config.cond_dim
    base.assess = lambda z: (-(z.mean((1, 2, 3)) - 30).abs(), torch.zeros(z.shape[0], 6), torch.full((z.shape[0], e), 7.0))
    base.restore = lambda z, cond: z - 1 + cond[:, :1, None, None]  # the base's step: +6
    re.route(base, [_Expert(k, e) for k in range(6)], "best")
    z = torch.tensor([0.0, 20.0, 40.0])[:, None, None, None].expand(3, 2, 4, 4).contiguous()
    out = base.restore(z, base.assess(z)[2])[:, 0, 0, 0]
    # candidates z+6 (base), z+10, z+21, z+32, ...: 32 (expert 2), 30 (expert 0), 46 (the base)
    assert out.tolist() == [32.0, 30.0, 46.0]


def test_first_routing_keeps_the_inputs_type_for_every_step_until_the_next_image():
    re = load_bench("routed_experts")
    noisy, blurred = torch.tensor([[0.9, 0.2, 0, 0, 0, 0]]), torch.tensor([[0.1, 0.8, 0, 0, 0, 0]])
    image = torch.rand(1, 3, 16, 16)

    def step_sizes(mode: str) -> list[float]:
        """Steps of image 1 (detected noisy, then blurred after its first step), then of image 2 (blurred)."""
        base = RAR(get_preset("rar-tiny").config).eval()
        e = base.config.cond_dim
        seen = iter([noisy, blurred, blurred])
        base.assess = lambda z: (torch.zeros(1), next(seen), torch.zeros(1, e))
        re.route(base, [_Expert(k, e) for k in range(6)], mode)
        z = base.encode(image)
        steps = [base.restore(z, base.assess(z)[2]), base.restore(z, base.assess(z)[2])]
        base.encode(image)  # the next image: its own first assessment routes it
        steps.append(base.restore(z, base.assess(z)[2]))
        return [float((s - z).mean().detach()) for s in steps]

    assert step_sizes("hard") == [10, 21, 21]  # noise's expert, then blur's as the type is re-detected
    assert step_sizes("first") == [10, 10, 21]  # noise's expert while the input is the noisy one


def test_modes_parse_and_bad_ones_are_refused():
    re = load_bench("routed_experts")
    assert [re.parse_mode(m) for m in ("hard", "first@0.5", "soft")] == [("hard", 0.0), ("first", 0.5), ("soft", 0.0)]
    assert re.parse_mode("best") == ("best", 0.0)
    for bad in ("base", "sotf", "soft@0.5", "best@0.5", "hard@2", "hard@x"):
        with pytest.raises(ValueError):
            re.parse_mode(bad)


def test_main_with_the_base_as_every_expert_reproduces_the_base(tiny_checkpoint, photo_dir, tmp_path):
    """Routed to experts that are the base model itself, every mode returns the base's own rows (the routing
    changes which weights step, never the step itself); the base's detection AUC is on record."""
    import json

    re = load_bench("routed_experts")
    experts = [f"--expert={t}={tiny_checkpoint}" for t in ("low_light", "haze", "rain", "jpeg", "blur", "noise")]
    out = tmp_path / "routed.json"
    assert re.main(["--base", str(tiny_checkpoint), *experts, "--modes", "hard,first@0.3,soft", "--photos",
                    str(photo_dir), "--syntheses", "v2", "--crop", "64", "--max-images", "2", "--steps", "2",
                    "--json", str(out)]) == 0
    assert torch.is_grad_enabled()  # evaluated under no_grad, not by switching gradients off for the process
    rows = json.loads(out.read_text())
    assert [r["snapshot"] for r in rows] == ["base", "hard", "first@0.3", "soft"]
    for r in rows[1:]:
        for k, v in rows[0]["summary"].items():
            if k != "per_model":
                assert v == pytest.approx(r["summary"][k], abs=1e-4), (r["snapshot"], k)
    assert set(rows[0]["degradation_auc"]) == {"noise", "blur", "jpeg", "rain", "haze", "low_light"}
    with pytest.raises(SystemExit):
        re.main(["--base", str(tiny_checkpoint), *experts[1:], "--photos", str(photo_dir)])  # one expert short
