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
