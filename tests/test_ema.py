"""The weight average of `rar-edge train --ema`: its arithmetic, what checkpoints hold, exact resume."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from rar_edge.errors import RarEdgeError
from rar_edge.model.presets import get_preset
from rar_edge.model.rar import RAR
from rar_edge.train import trainer
from rar_edge.train.checkpoint import load_model
from rar_edge.train.ema import WeightAverage, load_raw
from rar_edge.train.signals import TrainingInterrupted
from rar_edge.train.trainer import train

from test_train import _cfg


def _fill(model: RAR, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_average_follows_the_decay_after_its_warm_up():
    raw = RAR(get_preset("rar-tiny").config)
    _fill(raw, 0.0)
    ema = WeightAverage(raw, decay=0.5)
    assert ema.average is not raw and "average" not in dict(ema.named_children())  # saved once, as the model
    # (1 + n) / (10 + n) for n = 0..7, then the decay itself: it caps the warm-up from the 9th update on
    decays = [1 / 10, 2 / 11, 3 / 12, 4 / 13, 5 / 14, 6 / 15, 7 / 16, 8 / 17, 0.5, 0.5, 0.5, 0.5]
    values = [1.0, 3.0, -2.0, 5.0, 0.5, 4.0, -1.0, 2.0, 6.0, -3.0, 1.5, 2.5]
    expected = 0.0
    for decay, value in zip(decays, values, strict=True):
        _fill(raw, value)
        ema.update(raw)
        expected = decay * expected + (1 - decay) * value
        for p in ema.average.parameters():
            torch.testing.assert_close(p, torch.full_like(p, expected))
    assert int(ema.updates) == 12 and not any(p.requires_grad for p in ema.average.parameters())
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(raw, decay=1.0)


def test_checkpoints_hold_the_average_as_the_model_and_the_raw_weights_beside_it(photo_dir, tmp_path, monkeypatch):
    seen: list[dict[str, torch.Tensor]] = []  # the raw weights after each update, as the average saw them
    real_update = WeightAverage.update

    def recording_update(self, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        real_update(self, model)

    monkeypatch.setattr(WeightAverage, "update", recording_update)
    torch.manual_seed(0)  # the trainer seeds its initial weights with the run's seed (0)
    expected = RAR(get_preset("rar-tiny").config).state_dict()
    train(_cfg(photo_dir, tmp_path / "avg", ema=0.9))
    monkeypatch.setattr(WeightAverage, "update", real_update)
    train(_cfg(photo_dir, tmp_path / "plain"))

    avg, cfg = load_model(tmp_path / "avg" / "last")
    plain, _ = load_model(tmp_path / "plain" / "last")
    extras = load_file(tmp_path / "avg" / "last" / "extras.safetensors")
    assert len(seen) == int(extras["average_count/updates"]) == cfg["step"] == 6
    # The raw weights beside the model are those of the same run without the average (same seed, batches) ...
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(extras[f"raw/{k}"], v, atol=1e-6, rtol=0, msg=k)
    # ... and the model is their running average from the initial weights, not the raw weights.
    for n, weights in enumerate(seen):
        decay = min(0.9, (1 + n) / (10 + n))
        expected = {k: decay * v + (1 - decay) * weights[k] if v.is_floating_point() else weights[k]
                    for k, v in expected.items()}
    got = avg.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, atol=1e-6, rtol=1e-5, msg=k)
    assert max(float((got[k] - v).abs().max()) for k, v in plain.state_dict().items()) > 1e-4
    # load_raw: the trained weights back as a model; a checkpoint without them is refused
    raw, raw_cfg = load_raw(tmp_path / "avg" / "last")
    assert raw_cfg["step"] == 6
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(raw.state_dict()[k], v, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(RarEdgeError, match="holds no raw weights: only a training checkpoint of 'rar-edge train --ema'"):
        load_raw(tmp_path / "plain" / "last")


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_resume_with_the_average_matches_uninterrupted(photo_dir, tmp_path, monkeypatch, signum):
    train(_cfg(photo_dir, tmp_path / "a", ema=0.9))
    real = trainer.training_batch

    def signal_during_step_4(photos, cfg, step, rank, device):
        if step == 3:
            os.kill(os.getpid(), signum)
        return real(photos, cfg, step, rank, device)

    monkeypatch.setattr(trainer, "training_batch", signal_during_step_4)
    with pytest.raises(TrainingInterrupted, match="after step 4"):
        train(_cfg(photo_dir, tmp_path / "b", ema=0.9))
    monkeypatch.setattr(trainer, "training_batch", real)
    with pytest.raises(RarEdgeError, match="was trained with --ema 0.9: resume with --ema on or off as it was"):
        train(_cfg(photo_dir, tmp_path / "b", resume=True))
    train(_cfg(photo_dir, tmp_path / "b", ema=0.9, resume=True))
    for name in ("model.safetensors", "extras.safetensors"):
        ref, got = (load_file(tmp_path / run / "last" / name) for run in "ab")
        assert ref.keys() == got.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0, msg=f"{name}: {k}")


def test_a_run_without_the_average_refuses_to_resume_with_it(photo_dir, tmp_path):
    train(_cfg(photo_dir, tmp_path / "run", steps=2))
    with pytest.raises(RarEdgeError, match="was trained without --ema: resume with --ema on or off"):
        train(_cfg(photo_dir, tmp_path / "run", steps=4, resume=True, ema=0.99))


@pytest.mark.parametrize("ema", [-0.1, 1.0, float("nan")])
def test_bad_decay_is_refused_before_training(photo_dir, tmp_path, ema):
    with pytest.raises(RarEdgeError, match=r"--ema must be a decay in \[0, 1\)"):
        train(_cfg(photo_dir, tmp_path / "run", ema=ema))
    assert not (tmp_path / "run").exists()


def test_marks_keep_the_average_and_the_raw_weights(photo_dir, tmp_path):
    out = tmp_path / "run"
    train(_cfg(photo_dir, out, steps=100_000, warmup=1, minutes=0.1, marks=(0.03,), ckpt_every=100_000, ema=0.9))
    avg, cfg = load_model(out / "marks" / "0.03min")
    raw, raw_cfg = load_model(out / "marks-raw" / "0.03min")
    assert cfg["step"] == raw_cfg["step"] >= 1
    assert any(not torch.equal(a, b) for a, b in zip(avg.state_dict().values(), raw.state_dict().values()))


def test_a_task_without_a_float_model_to_average_refuses_it(photo_dir, tmp_path):
    def other_task(cfg, device):  # e.g. distillation's QAT graphs
        raise AssertionError("not reached: refused before the task is built")

    with pytest.raises(RarEdgeError, match="--ema averages the float model of 'rar-edge train'"):
        train(_cfg(photo_dir, tmp_path / "run", ema=0.9), build_task=other_task)
    assert not (tmp_path / "run").exists()
