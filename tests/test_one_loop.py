"""One loop: the torch loop, the runtime's scheduler and fit-stop's replay take the same steps, stop for the
same reason and keep the same latent for the same scripted trajectories (all through rar_edge.loop.LoopTrace)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rar_edge.eval.fit_stop import replay
from rar_edge.loop import LoopTrace, StopRule
from rar_edge.model import create_model, rar
from rar_edge.runtime.scheduler import adaptive_loop

CAP = 5
trajectories = st.tuples(
    # float32 values: the torch loop's assessments are float32, the others' float64 copies of them
    st.lists(st.floats(10.0, 45.0, width=32), min_size=CAP + 1, max_size=CAP + 1),  # quality after k steps
    st.lists(st.floats(0.0, 0.125, width=32), min_size=CAP, max_size=CAP),        # size of step k+1
)
rules = st.builds(StopRule, max_steps=st.integers(0, CAP), target_quality=st.floats(15.0, 50.0, width=32),
                  min_gain=st.floats(-3.0, 2.0, width=32), min_change=st.sampled_from([0.0, 0.01, 0.04]),
                  keep=st.sampled_from(["best", "last"]))


class ScriptedOps:
    """The runtime's LoopOps over one scripted trajectory: the state is the step index."""

    def __init__(self, quality, change):
        self.quality, self.change_ = quality, change

    def encode(self):
        return 0

    def assess(self, k):
        return self.quality[k], [0.5], None

    def restore(self, k, cond):
        return k + 1

    def change(self, k, proposed):
        return self.change_[k]

    def decode(self, k):
        return k


def torch_loop(batch: list[tuple[list[float], list[float]]], rule: StopRule, monkeypatch):
    """rar-tiny's restore_loop with scripted assessments: latent of image i after k steps is filled with k."""
    model = create_model("rar-tiny").eval()
    n = len(batch)
    quality = torch.tensor([q for q, _ in batch])
    change = torch.tensor([c for _, c in batch])

    def step_of(z):
        return z[:, 0, 0, 0].round().long()

    model.encode = lambda x: torch.zeros(n, 1, 2, 2)
    model.assess = lambda z: (quality[torch.arange(n), step_of(z)], torch.full((n, 6), 0.5), torch.zeros(n, 1))
    model.restore = lambda z, cond: z + 1
    model.decode = lambda z: z[:, :1].expand(z.shape[0], 3, 2, 2).clone() / 100
    monkeypatch.setattr(rar, "step_change", lambda z, z_next: change[torch.arange(n), step_of(z)])
    return model.restore_loop(torch.zeros(n, 3, 2, 2), rule)


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(trajectories, min_size=1, max_size=4), rule=rules)
def test_torch_runtime_and_replay_agree(batch, rule):
    with pytest.MonkeyPatch.context() as mp:
        results = torch_loop(batch, rule, mp)
    for (quality, change), res in zip(batch, results):
        ran = adaptive_loop(ScriptedOps(quality, change), rule, None, lambda e: 0.0)
        kept, steps_run = replay(rule, np.array(quality), np.array(change))
        assert (res.steps, res.steps_run) == (ran.steps, ran.steps_run) == (kept, steps_run)
        assert res.stop_reason == ran.stop_reason
        assert res.quality == pytest.approx(ran.qualities)
        assert ran.image == (kept if kept > 0 else None)  # the runtime decodes the kept latent, or none
        assert float(res.image[0, 0, 0]) == pytest.approx(kept / 100)  # torch: the kept latent's decode (0: input)


def test_revert_on_a_losing_step_keeps_the_previous_latent():
    """keep="last" with min_gain: a step assessed worse undoes itself in all three loops."""
    rule = StopRule(max_steps=4, target_quality=99, min_gain=0.0, keep="last")
    quality, change = [20.0, 24.0, 23.0, 30.0, 31.0, 32.0], [0.1] * 5
    ran = adaptive_loop(ScriptedOps(quality, change), rule, None, lambda e: 0.0)
    assert (ran.stop_reason, ran.steps_run, ran.steps, ran.image) == ("no_gain", 2, 1, 1)
    assert replay(rule, np.array(quality), np.array(change)) == (1, 2)


def test_trace_refuses_steps_after_it_stopped_and_keeps_the_first_reason():
    trace = LoopTrace(StopRule(max_steps=1, target_quality=99, min_gain=-99), 20.0)
    assert trace.running and trace.propose(None)
    trace.taken(21.0)
    assert (trace.running, trace.reason, trace.kept) == (False, "max_steps", 1)
    trace.stop("budget")
    assert trace.reason == "max_steps"
    with pytest.raises(RuntimeError, match="stopped"):
        trace.propose(None)
