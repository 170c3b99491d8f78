"""bench/routed_experts.py: per-type expert restorers routed by the base model's detected degradations."""

from __future__ import annotations

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
    base.assess = lambda z: (torch.zeros(3), probs, torch.zeros(3, e))
    base.restore = lambda z, cond: z - 1  # the base restorer, where nothing routes
    re.route(base, [_Expert(k, e) for k in range(6)], mode, threshold)
    z = torch.zeros(3, 2, 4, 4)
    _, p, packed = base.assess(z)
    return base.restore(z, packed)[:, 0, 0, 0], p


def test_hard_routing_runs_the_most_probable_types_expert_with_its_own_embedding():
    out, p = _routed("hard")
    assert out.tolist() == [10 + 0, 30 + 2, 60 + 5]
    assert torch.equal(p, torch.tensor([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.6, 0, 0, 0], [0.3, 0, 0, 0, 0, 0.4]]))
    out, _ = _routed("hard", threshold=0.5)  # the third image's top type (0.4) is below it: the base restorer
    assert out.tolist() == [10, 32, -1]


def test_soft_routing_averages_every_experts_step_by_probability():
    out, _ = _routed("soft")
    step = torch.tensor([10.0 * (k + 1) + k for k in range(6)])
    probs = torch.tensor([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.2, 0.6, 0, 0, 0], [0.3, 0, 0, 0, 0, 0.4]])
    torch.testing.assert_close(out, (probs / probs.sum(1, keepdim=True)) @ step)


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
