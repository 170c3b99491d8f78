"""The stop rule and the reference loop: 0 steps on good input, the kept latent returned, small steps refused."""

from __future__ import annotations

import pytest
import torch

from rar_edge.loop import StopRule
from rar_edge.model import create_model


def test_stop_rule_reasons():
    rule = StopRule(max_steps=3, target_quality=30.0, min_gain=0.5)
    assert rule.reason_to_stop([31.0]) == "target"
    assert rule.reason_to_stop([20.0]) is None
    assert rule.reason_to_stop([20.0, 20.2]) == "no_gain"
    assert rule.reason_to_stop([20.0, 19.0]) == "no_gain"
    assert rule.reason_to_stop([20.0, 22.0, 24.0]) is None
    assert rule.reason_to_stop([20.0, 22.0, 24.0, 26.0]) == "max_steps"
    assert StopRule(max_steps=0).reason_to_stop([10.0]) == "max_steps"
    with pytest.raises(ValueError):
        StopRule(max_steps=-1)


def test_rule_fields_are_checked_and_the_kept_index_follows_keep():
    with pytest.raises(ValueError, match="min_change"):
        StopRule(min_change=-0.1)
    with pytest.raises(ValueError, match="keep"):
        StopRule(keep="first")
    best, last = StopRule(keep="best"), StopRule(keep="last")
    assert best.returned_index([20.0, 26.0, 24.0], "no_gain") == 1
    assert last.returned_index([20.0, 26.0, 24.0], "no_gain") == 1  # the step that lost is undone
    assert last.returned_index([20.0, 19.0, 18.0], "max_steps") == 2  # last: the assessor is not asked
    assert best.returned_index([20.0, 19.0, 18.0], "max_steps") == 0
    assert StopRule(min_change=0.05).step_too_small(0.01) and not StopRule().step_too_small(0.0)  # 0: off


def test_best_index_prefers_earliest_on_ties():
    assert StopRule.best_index([20.0, 25.0, 24.0]) == 1
    assert StopRule.best_index([25.0, 25.0]) == 0


def _scripted(model, qualities_per_call):
    """Make model.assess return scripted qualities (one list per call, one value per image)."""
    calls = iter(qualities_per_call)
    real = model.assess

    def fake(z):
        _, probs, cond = real(z)
        return torch.tensor(next(calls), dtype=torch.float32), probs, cond

    model.assess = fake


def test_zero_steps_when_input_assessed_above_target():
    torch.manual_seed(0)
    model = create_model("rar-tiny").eval()
    with torch.no_grad():
        model.assessor.quality.weight.zero_()
        model.assessor.quality.bias.fill_(1.5)  # every latent assessed at 30 + 10 * 1.5 = 45 dB
    x = torch.rand(2, 3, 32, 32) * 1.2 - 0.1  # some values outside [0, 1]: returned clamped
    model.decode = None  # pass-through: no image keeps a step, so nothing is decoded
    results = model.restore_loop(x, StopRule(max_steps=4, target_quality=40.0))
    for r in results:
        assert r.steps == 0 and r.steps_run == 0 and r.stop_reason == "target"
        assert r.quality == [45.0]
    # The input itself, not its autoencoder round trip (rar_edge.loop, pass-through).
    assert torch.equal(torch.stack([r.image for r in results]), x.clamp(0, 1))


def test_pass_through_and_decoded_images_in_one_batch():
    torch.manual_seed(0)
    model = create_model("rar-tiny").eval()
    x = torch.rand(2, 3, 32, 32)
    # image 0 is assessed good at once (kept at step 0); image 1 steps once and stops on target.
    _scripted(model, [[45.0, 10.0], [45.0, 41.0]])
    r0, r1 = model.restore_loop(x, StopRule(max_steps=3, target_quality=40.0))
    assert (r0.steps, r1.steps) == (0, 1)
    assert torch.equal(r0.image, x[0])
    with torch.no_grad():
        z = model.encode(x[1:])
        _, _, cond = model.assessor(z)
        expected = model.decode(model.restore(z, cond)).clamp(0, 1)[0]
    torch.testing.assert_close(r1.image, expected)
    assert not torch.equal(r1.image, x[1])


def test_returns_best_assessed_latent_never_a_worse_one():
    torch.manual_seed(0)
    model = create_model("rar-tiny").eval()
    with torch.no_grad():  # a restorer that really changes the latent
        model.restorer.head.weight.normal_(0, 0.05)
    x = torch.rand(1, 3, 32, 32)
    # input 20, step 1 -> 26 (best), step 2 -> 24 (worse: stops on no gain)
    _scripted(model, [[20.0], [26.0], [24.0]])
    (r,) = model.restore_loop(x, StopRule(max_steps=5, target_quality=40.0, min_gain=0.1))
    assert r.quality == [20.0, 26.0, 24.0]
    assert r.steps == 1 and r.steps_run == 2 and r.stop_reason == "no_gain"
    with torch.no_grad():
        z = model.encode(x)
        _, _, cond = model.assessor(z)
        expected = model.decode(model.restore(z, cond)).clamp(0, 1)[0]
    torch.testing.assert_close(r.image, expected)


def test_batch_images_stop_independently():
    torch.manual_seed(0)
    model = create_model("rar-tiny").eval()
    x = torch.rand(2, 3, 32, 32)
    # image 0 is good from the start; image 1 improves twice then hits the step cap
    _scripted(model, [[45.0, 10.0], [45.0, 15.0], [45.0, 20.0]])
    r0, r1 = model.restore_loop(x, StopRule(max_steps=2, target_quality=40.0))
    assert r0.steps == 0 and r0.quality == [45.0]
    assert r1.steps == 2 and r1.quality == [10.0, 15.0, 20.0] and r1.stop_reason == "max_steps"


def test_small_steps_are_refused_and_keep_last_decodes_the_last_step():
    torch.manual_seed(0)
    model = create_model("rar-tiny").eval()
    with torch.no_grad():
        model.restorer.head.weight.normal_(0, 0.05)
    x = torch.rand(1, 3, 32, 32)
    # Any real step is smaller than 1000x the latent: refused, nothing taken, the input returned as is.
    (r,) = model.restore_loop(x, StopRule(max_steps=3, target_quality=99.0, min_gain=-99.0, min_change=1e3))
    assert (r.steps, r.steps_run, r.stop_reason, len(r.quality)) == (0, 0, "small_step", 1)
    assert torch.equal(r.image, x[0])
    # The assessor says every step made it worse (20 -> 19 -> 18); keep="last" decodes step 2 regardless.
    _scripted(model, [[20.0], [19.0], [18.0]])
    (r,) = model.restore_loop(x, StopRule(max_steps=2, target_quality=99.0, min_gain=-5.0, keep="last"))
    assert (r.steps, r.steps_run, r.stop_reason) == (2, 2, "max_steps")
    with torch.no_grad():
        z = model.encode(x)
        _, _, cond = model.assessor(z)
        z1 = model.restore(z, cond)
        _, _, cond1 = model.assessor(z1)
        expected = model.decode(model.restore(z1, cond1)).clamp(0, 1)[0]
    torch.testing.assert_close(r.image, expected)
