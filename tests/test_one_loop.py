"""One loop: the torch loop, the runtime's scheduler and fit-stop's replay take the same steps, stop for the
same reason and keep the same latent for the same scripted trajectories (all through rar_edge.loop.LoopTrace)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rar_edge.eval.fit_stop import replay
from rar_edge.loop import Gate, Judge, LoopTrace, StopRule
from rar_edge.model import create_model, rar
from rar_edge.runtime.scheduler import adaptive_loop

CAP = 5
trajectories = st.tuples(
    # float32 values: the torch loop's assessments are float32, the others' float64 copies of them
    st.lists(st.floats(10.0, 45.0, width=32), min_size=CAP + 1, max_size=CAP + 1),  # quality after k steps
    st.lists(st.floats(0.0, 0.125, width=32), min_size=CAP, max_size=CAP),        # size of step k+1
    st.floats(0.0, 1.0, width=32),                                                   # degradation probability
)
rules = st.builds(StopRule, max_steps=st.integers(0, CAP), target_quality=st.floats(15.0, 50.0, width=32),
                  min_gain=st.floats(-3.0, 2.0, width=32), min_change=st.sampled_from([0.0, 0.01, 0.04]),
                  keep=st.sampled_from(["best", "last"]), min_better=st.sampled_from([0.0, 0.3, 0.5, 0.7]),
                  min_detect=st.sampled_from([0.0, 0.3, 0.6]),
                  gate=st.sampled_from([None, Gate((0.0, -10.0, 0.0, 0.0, 0.0, 0.0), 5.0)]))
#: The scripted assessment vector: [quality, 6 probabilities (0.5 unless scripted), a 1-d conditioning of 0].
FEATURES = 8


def judges():
    """Judges that weigh the quality's change and the step's size (the scripted vectors vary in nothing else)."""
    def build(wq, wc, bias):
        w = [0.0] * (2 * FEATURES + 1)
        w[0], w[FEATURES], w[-1] = -wq, wq, wc
        return Judge(tuple(w), bias)
    return st.builds(build, st.floats(-2, 2), st.floats(-1, 1), st.floats(-2, 2)) | st.none()


def probabilities(p: float, k: int) -> list[float]:
    """The scripted degradation probabilities after k steps: the input's largest is ``p`` (on the second type),
    later ones differ (1 - p), so a gate that read another assessment or another statistic would disagree."""
    return [0.05, p if k == 0 else 1.0 - p, 0.05, 0.0, 0.05, 0.05]


def vectors(quality, p=0.5):
    return np.array([[q] + probabilities(p, k) + [0.0] for k, q in enumerate(quality)])


class ScriptedOps:
    """The runtime's LoopOps over one scripted trajectory: the state is the step index; the input's largest
    degradation probability is ``p`` (``probabilities``)."""

    def __init__(self, quality, change, p=0.5):
        self.quality, self.change_, self.p = quality, change, p

    def encode(self):
        return 0

    def assess(self, k):
        return self.quality[k], probabilities(self.p, k), np.zeros((1, 1), np.float32)

    def restore(self, k, cond):
        return k + 1

    def change(self, k, proposed):
        return self.change_[k]

    def decode(self, k):
        return k


def torch_loop(batch: list[tuple[list[float], list[float]]], rule: StopRule, monkeypatch, judge: Judge | None = None):
    """rar-tiny's restore_loop with scripted assessments: latent of image i after k steps is filled with k."""
    model = create_model("rar-tiny").eval()
    if judge is not None:
        model.config = replace(model.config, judge=(*judge.weights, judge.bias))
    n = len(batch)
    quality = torch.tensor([t[0] for t in batch])
    change = torch.tensor([t[1] for t in batch])
    probs = torch.tensor([[probabilities(t[2] if len(t) > 2 else 0.5, k) for k in range(CAP + 1)] for t in batch])

    def step_of(z):
        return z[:, 0, 0, 0].round().long()

    model.encode = lambda x: torch.zeros(n, 1, 2, 2)
    model.assess = lambda z: (quality[torch.arange(n), step_of(z)], probs[torch.arange(n), step_of(z)], torch.zeros(n, 1))
    model.restore = lambda z, cond: z + 1
    model.decode = lambda z: z[:, :1].expand(z.shape[0], 3, 2, 2).clone() / 100
    monkeypatch.setattr(rar, "step_change", lambda z, z_next: change[torch.arange(n), step_of(z)])
    return model.restore_loop(torch.zeros(n, 3, 2, 2), rule)


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(trajectories, min_size=1, max_size=4), rule=rules, judge=judges())
def test_torch_runtime_and_replay_agree(batch, rule, judge):
    with pytest.MonkeyPatch.context() as mp:
        results = torch_loop(batch, rule, mp, judge)
    for (quality, change, p), res in zip(batch, results):
        ran = adaptive_loop(ScriptedOps(quality, change, p), rule, None, lambda e: 0.0, judge=judge)
        kept, steps_run = replay(rule, np.array(quality), np.array(change), vectors(quality, p), judge,
                                 probabilities(p, 0))
        assert (res.steps, res.steps_run) == (ran.steps, ran.steps_run) == (kept, steps_run)
        assert res.stop_reason == ran.stop_reason
        assert res.quality == pytest.approx(ran.qualities)
        assert ran.image == (kept if kept > 0 else None)  # the runtime decodes the kept latent, or none
        assert float(res.image[0, 0, 0]) == pytest.approx(kept / 100)  # torch: the kept latent's decode (0: input)
        assert (res.stop_reason == "clean") == rule.nothing_detected(probabilities(p, 0))  # only the gate says clean
        assert rule.nothing_detected(probabilities(p, 0)) == (  # the largest probability, then the learned gate
            p < rule.min_detect and (rule.gate is None or rule.gate.p_step(probabilities(p, 0)) < rule.min_detect))


def test_revert_on_a_losing_step_keeps_the_previous_latent():
    """keep="last" with min_gain: a step assessed worse undoes itself in all three loops."""
    rule = StopRule(max_steps=4, target_quality=99, min_gain=0.0, keep="last")
    quality, change = [20.0, 24.0, 23.0, 30.0, 31.0, 32.0], [0.1] * 5
    ran = adaptive_loop(ScriptedOps(quality, change), rule, None, lambda e: 0.0)
    assert (ran.stop_reason, ran.steps_run, ran.steps, ran.image) == ("no_gain", 2, 1, 1)
    assert replay(rule, np.array(quality), np.array(change)) == (1, 2)


def test_a_step_the_judge_calls_worse_is_undone_in_all_three_loops():
    """RAR's own rule: after step 2 the judge says "worse" (the quality fell), so the loop returns step 1."""
    judge = Judge(tuple([-5.0] + [0.0] * (FEATURES - 1) + [5.0] + [0.0] * FEATURES), 0.0)  # p = sigmoid(5 dq)
    rule = StopRule(max_steps=5, target_quality=99, min_gain=-10, keep="best", min_better=0.5)
    quality, change = [20.0, 24.0, 23.0, 30.0, 31.0, 32.0], [0.1] * 5
    ran = adaptive_loop(ScriptedOps(quality, change), rule, None, lambda e: 0.0, judge=judge)
    assert (ran.stop_reason, ran.steps_run, ran.steps, ran.image) == ("worse", 2, 1, 1)
    assert replay(rule, np.array(quality), np.array(change), vectors(quality), judge) == (1, 2)
    with pytest.MonkeyPatch.context() as mp:
        res = torch_loop([(quality, change)], rule, mp, judge)[0]
    assert (res.stop_reason, res.steps_run, res.steps) == ("worse", 2, 1)
    # Without its threshold the judge is not asked: the same trajectory runs to the step cap.
    off = adaptive_loop(ScriptedOps(quality, change), replace(rule, min_better=0.0), None, lambda e: 0.0, judge=judge)
    assert (off.stop_reason, off.steps_run) == ("max_steps", 5)


def test_the_clean_gate_returns_the_input_when_nothing_is_detected():
    """min_detect: an input whose degradation probabilities all stay below it is returned at 0 steps (reason
    "clean") by all three loops, although its quality is far below target; one detected above it steps."""
    rule = StopRule(max_steps=3, target_quality=99, min_gain=-10, min_detect=0.6)
    quality, change = [15.0, 20.0, 25.0, 30.0, 31.0, 32.0], [0.1] * 5
    for p, expected in ((0.4, ("clean", 0, 0)), (0.7, ("max_steps", 3, 3))):
        ran = adaptive_loop(ScriptedOps(quality, change, p), rule, None, lambda e: 0.0)
        assert (ran.stop_reason, ran.steps_run, ran.steps) == expected
        assert replay(rule, np.array(quality), np.array(change), probabilities=probabilities(p, 0)) == expected[2:0:-1]
        assert (ran.image is None) == (expected[0] == "clean")  # nothing detected: the input back, no decode
        with pytest.MonkeyPatch.context() as mp:
            res = torch_loop([(quality, change, p)], rule, mp)[0]
        assert (res.stop_reason, res.steps_run, res.steps) == expected
    # Off (0), it reads no probabilities; on, a caller must give them.
    assert LoopTrace(replace(rule, min_detect=0.0), 15.0).running
    with pytest.raises(ValueError, match="degradation probabilities"):
        LoopTrace(rule, 15.0)
    with pytest.raises(ValueError, match="min_detect must be a probability"):
        StopRule(min_detect=1.0)
    for name in ("target_quality", "min_gain"):  # NaN would never stop the loop on it
        with pytest.raises(ValueError, match=f"{name} must be a number of dB"):
            StopRule(**{name: float("nan")})
    assert StopRule(target_quality=float("inf"), min_gain=-float("inf")).max_steps == 4  # infinities stay allowed


def test_a_learned_gate_opens_the_clean_gate_too_in_all_three_loops():
    """With a Gate, the clean gate opens where the largest degradation probability reaches min_detect or the
    gate's probability that steps help does: a type detected at 0.2, which the gate rates helpable, steps; one
    at 0.55, below both, is returned as it came; one at 0.7 steps whatever the gate says."""
    gate = Gate((0.0, -10.0, 0.0, 0.0, 0.0, 0.0), 5.0)  # p_step = sigmoid(5 - 10 p) for the scripted type
    rule = StopRule(max_steps=3, target_quality=99, min_gain=-10, min_detect=0.6, gate=gate)
    quality, change = [15.0, 20.0, 25.0, 30.0, 31.0, 32.0], [0.1] * 5
    for p, expected in ((0.2, ("max_steps", 3, 3)), (0.55, ("clean", 0, 0)), (0.7, ("max_steps", 3, 3))):
        assert replace(rule, gate=None).nothing_detected(probabilities(p, 0)) == (p < 0.6)  # the largest alone
        ran = adaptive_loop(ScriptedOps(quality, change, p), rule, None, lambda e: 0.0)
        assert (ran.stop_reason, ran.steps_run, ran.steps) == expected
        assert replay(rule, np.array(quality), np.array(change), probabilities=probabilities(p, 0)) == expected[2:0:-1]
        with pytest.MonkeyPatch.context() as mp:
            res = torch_loop([(quality, change, p)], rule, mp)[0]
        assert (res.stop_reason, res.steps_run, res.steps) == expected
    assert gate.p_step(probabilities(0.7, 0)) == pytest.approx(1 / (1 + np.exp(2.0)))
    assert not replace(rule, min_detect=0.0).nothing_detected(probabilities(0.55, 0))  # 0: the gate is off
    assert Gate.from_dict(gate.to_dict()) == gate and Gate.from_dict(None) is None
    # As JSON holds it (config.json, reports): the gate as numbers, read back whole; anything else refused.
    assert json.loads(json.dumps(rule.to_dict()))["gate"] == [0.0, -10.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    assert StopRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert StopRule.from_dict(replace(rule, gate=None).to_dict()) == replace(rule, gate=None)
    with pytest.raises(ValueError, match="gate must be a rar_edge.loop.Gate"):
        StopRule(gate=[0.0] * 7)
    # A model's config: the gate stored as numbers, left out when empty (readable by versions before gates).
    config = replace(create_model("rar-tiny").config, gate=tuple(gate.flat()))
    assert type(config).from_dict(config.to_dict()).gate_head == gate
    assert "gate" not in create_model("rar-tiny").config.to_dict()
    with pytest.raises(ValueError, match="6 weights but got 2 probabilities"):
        gate.p_step([0.1, 0.2])


def test_judge_probability_and_its_errors():
    judge = Judge((1.0, 0.0, 2.0), -1.0)
    # x = (before, after, log(change + 1e-6)) = (1, 5, log 1): s = 1 - 1 + 0 = 0 -> 0.5
    assert judge.p_better([1.0], [5.0], 1.0 - 1e-6) == pytest.approx(0.5)
    assert judge.p_better([3.0], [0.0], 1.0 - 1e-6) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert Judge.from_dict(judge.to_dict()) == judge and Judge.from_dict(None) is None
    with pytest.raises(ValueError, match="3 weights but got 5 features"):
        judge.p_better([1.0, 2.0], [1.0, 2.0], 0.1)
    with pytest.raises(ValueError, match="assessment vector"):
        LoopTrace(StopRule(min_better=0.5), 20.0, judge)
    with pytest.raises(ValueError, match="probability"):
        StopRule(min_better=1.0)


def test_trace_refuses_steps_after_it_stopped_and_keeps_the_first_reason():
    trace = LoopTrace(StopRule(max_steps=1, target_quality=99, min_gain=-99), 20.0)
    assert trace.running and trace.propose(None)
    trace.taken(21.0)
    assert (trace.running, trace.reason, trace.kept) == (False, "max_steps", 1)
    trace.stop("budget")
    assert trace.reason == "max_steps"
    with pytest.raises(RuntimeError, match="stopped"):
        trace.propose(None)
