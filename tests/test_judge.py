"""The loop's judge ("is the new latent better than the previous one?"): fitting, and the rules that ask it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rar_edge.eval.fit_stop import (PSNR_CAP_DB, Trajectories, candidate_rules, fit_gate_on, fit_judge_on,
                                    fit_stop_rule, gate_at, placed_gate, score_rule)
from rar_edge.eval.judge import GATE_MARGIN_DB, MARGIN_DB, fit_gate, fit_judge, gate_examples, judge_scores, step_examples
from rar_edge.eval.metrics import roc_auc
from rar_edge.loop import Gate, Judge


def test_fit_judge_learns_a_linear_rule_and_folds_the_scaling_into_its_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)) * [1.0, 10.0, 0.1, 1.0, 1.0] + [0.0, 30.0, 0.0, 0.0, 0.0]
    truth = 2.0 * x[:, 0] - 0.3 * (x[:, 1] - 30.0) + 8.0 * x[:, 2]
    better = truth + rng.normal(scale=0.5, size=len(x)) > 0
    judge = fit_judge(x[:400], better[:400])
    assert roc_auc(judge_scores(judge, x[400:]), better[400:]) > 0.95
    # The stored weights act on raw features, as the loop computes them: signs and ratios of the truth.
    w = np.array(judge.weights)
    assert w[0] > 0 and w[1] < 0 and w[2] > 0 and abs(w[3]) < 0.2 * w[0]
    # One dot product in the loop equals the vectorised score.
    row = x[0]
    p = judge.p_better(row[:2].tolist(), row[2:4].tolist(), float(np.exp(row[4]) - 1e-6))
    assert p == pytest.approx(float(judge_scores(judge, x[:1])[0]))


def test_fit_judge_refuses_one_class():
    x = np.ones((10, 3))
    with pytest.raises(ValueError, match="only helpful steps"):
        fit_judge(x, np.ones(10, bool))
    with pytest.raises(ValueError, match="only harmful steps"):
        fit_judge(x, np.zeros(10, bool))


def test_step_examples_pair_each_step_with_its_true_outcome():
    vectors = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)  # 2 images, 2 steps, 2 features
    psnr = np.array([[20.0, 21.0, 21.0 + MARGIN_DB / 2], [30.0, 29.0, 31.0]])
    change = np.array([[0.1, 0.2], [0.3, 0.4]])
    x, better = step_examples(vectors, psnr, change)
    assert x.shape == (4, 5)
    np.testing.assert_array_equal(x[1, :4], [2, 3, 4, 5])  # image 0, step 2: before = latent 1, after = latent 2
    assert x[1, 4] == pytest.approx(np.log(0.2 + 1e-6))
    np.testing.assert_array_equal(better, [True, False, False, True])  # a gain under the margin is no help


def _judge_only_trajectories() -> Trajectories:
    """The assessor's quality rises 1 dB a step everywhere and every step is the same size, so no threshold of
    the assessor's tells the cases apart; the degradation probability (feature 1) does: it falls on the noisy
    images as they are restored and rises on the clean ones as they are damaged."""
    steps = np.arange(4)
    quality = np.tile(30.0 + steps, (4, 1))
    psnr = np.array([20.0 + 2 * steps, 20.0 + 2 * steps, [PSNR_CAP_DB, 36, 33, 30], [PSNR_CAP_DB, 36, 33, 30]])
    prob = np.array([0.9 - 0.2 * steps, 0.9 - 0.2 * steps, 0.1 + 0.2 * steps, 0.1 + 0.2 * steps])
    vectors = np.stack([quality, prob], axis=2)
    return Trajectories(["noise", "noise", "clean", "clean"], quality, psnr, np.array([20, 20, PSNR_CAP_DB, PSNR_CAP_DB]),
                        np.full((4, 3), 0.1), vectors)


def test_a_fitted_judge_stops_where_the_assessor_cannot():
    traj = _judge_only_trajectories()
    fitted = fit_judge_on(traj)
    assert fitted.auc_fit == 1.0 and fitted.positive_share == 0.5
    without = fit_stop_rule(traj, cap=3)
    with_judge = fit_stop_rule(traj, cap=3, judge=fitted.head)
    assert without.per_case["clean"] < 0 or without.per_case["noise"] < 6.0  # the assessor alone must give up one
    assert with_judge.rule.min_better > 0 and with_judge.per_case == {"noise": 6.0, "clean": 0.0}
    # The judge's rule scored without its judge is not asked at all (an old model): it runs to its cap.
    assert score_rule(with_judge.rule, traj).steps_run == 3.0


def test_a_checkpoints_judge_travels_into_the_bundle_and_the_runtime_asks_it(tiny_checkpoint, tmp_path):
    """config.json's judge and min_better reach the manifest; the torch loop and the runtime both stop on "worse"
    (a judge that calls every step worse: the input comes back untouched after one step)."""
    import json
    import shutil

    from conftest import export_here
    from rar_edge.manifest import check_manifest
    from rar_edge.runtime import Restorer
    from rar_edge.train.checkpoint import load_model

    ckpt = tmp_path / "judged"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    model, _ = load_model(ckpt)
    features = 2 * (1 + len(model.config.degradations) + model.config.cond_dim) + 1
    # A learned clean gate that gives every input p = 0.5 (weights 0): open at 1 %, shut at 99 %.
    config["model"].update(judge=[0.0] * features + [-50.0], min_better=0.5, max_steps=3, target_quality=99.0,
                           min_gain=-10.0, min_detect=0.01, gate=[0.0] * len(model.config.degradations) + [0.0])
    (ckpt / "config.json").write_text(json.dumps(config))
    model, _ = load_model(ckpt)
    assert model.config.judge_head == Judge((0.0,) * features, -50.0)
    image = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    res = model.restore_loop(__import__("torch").from_numpy(image.transpose(2, 0, 1))[None])[0]
    assert (res.stop_reason, res.steps_run, res.steps) == ("worse", 1, 0)

    export_here("--checkpoint", ckpt, "--imgsz", "64", "--target", "onnx", "-o", tmp_path)
    bundle = tmp_path / "rar-tiny-fp32-onnx"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["quality"]["defaults"]["min_better"] == 0.5 and manifest["quality"]["defaults"]["min_detect"] == 0.01
    assert Judge.from_dict(manifest["quality"]["judge"]) == model.config.judge_head
    restorer = Restorer.load(bundle)
    assert restorer.rule.min_detect == 0.01 and restorer.rule.min_better == 0.5  # the manifest's rule, read whole
    assert restorer.rule.gate == model.config.gate_head == Gate.from_dict(manifest["quality"]["gate"])
    # The runtime opens the clean gate on its detector: at 99 % the largest probability (~0.5) stays shut, a
    # gate sure that steps help opens it (the judge then undoes the step), one at 0.5 does not.
    restorer.rule = replace(restorer.rule, gate=Gate((0.0,) * len(model.config.degradations), 50.0))
    opened = restorer.restore(image, min_detect=0.99)
    assert (opened.stop_reason, opened.steps_run) == ("worse", 1)
    restorer.rule = replace(restorer.rule, gate=model.config.gate_head)
    assert model.stop_rule().gate == model.config.gate_head
    out = restorer.restore(image)
    assert (out.stop_reason, out.steps_run, out.steps) == ("worse", 1, 0)
    np.testing.assert_array_equal(out.image, image)  # step 0 kept: the input as it came
    off = restorer.restore(image, min_better=0.0)  # the judge turned off per call: the step cap stops it
    assert (off.stop_reason, off.steps_run) == ("max_steps", 3)
    # The clean gate raised per call above every probability: nothing is detected, the input comes back as is.
    gated = restorer.restore(image, min_detect=0.99)
    assert max(gated.degradations.values()) < 0.99
    assert (gated.stop_reason, gated.steps_run, gated.steps) == ("clean", 0, 0)
    np.testing.assert_array_equal(gated.image, image)
    bad = json.loads(json.dumps(manifest))
    bad["quality"]["defaults"]["min_detect"] = 1.5
    with pytest.raises(ValueError, match="quality.defaults.min_detect"):
        check_manifest(bad)
    bad = json.loads(json.dumps(manifest))
    bad["quality"]["gate"]["weights"] = [0.0]
    with pytest.raises(ValueError, match="quality.gate.weights"):
        check_manifest(bad)
    manifest["quality"]["judge"] = {"weights": ["x"], "bias": 0}
    with pytest.raises(ValueError, match="quality.judge"):
        check_manifest(manifest)
    manifest["quality"]["judge"] = {"weights": [0.0] * (features - 2), "bias": 0.0}  # another model's judge
    with pytest.raises(ValueError, match=f"quality.judge.weights must be {features} numbers"):
        check_manifest(manifest)


def test_gate_examples_call_an_input_helpable_when_some_step_beats_it_and_never_a_clean_one():
    psnr = np.array([[20.0, 20.0 + GATE_MARGIN_DB / 2, 19.0], [20.0, 19.0, 20.0 + 2 * GATE_MARGIN_DB],
                     [40.0, 40.0, 40.0]])
    x, helpable = gate_examples(np.eye(3), psnr, np.array([20.0, 20.0, 35.0]), np.array([False, False, True]))
    assert helpable.tolist() == [False, True, False] and x.shape == (3, 3)
    with pytest.raises(ValueError, match="no recorded input is helped by steps"):
        fit_gate(x, np.zeros(3, bool))
    with pytest.raises(ValueError, match="record clean crops too"):
        fit_gate(x, np.ones(3, bool))


def _gate_trajectories() -> Trajectories:
    """Mild noise (detected at 0.45, steps gain 4 dB) that the largest probability cannot let in without clean
    crops (whose blur probability reaches 0.55), and blur (detected at 0.3, steps lose 1 dB)."""
    rng = np.random.default_rng(0)
    rows = []  # (case, probabilities (noise, blur), psnr after 0..2 steps, input psnr)
    for _ in range(40):
        rows.append(("noise", [0.45 + 0.02 * rng.random(), 0.1], [25.0, 29.0, 29.0], 25.0))
        rows.append(("blur", [0.1, 0.3 * rng.random()], [30.0, 29.0, 29.0], 30.0))
        rows.append(("clean", [0.4 * rng.random(), 0.55 * rng.random()], [PSNR_CAP_DB, 38.0, 37.0], PSNR_CAP_DB))
    cases, probs, psnr, psnr_in = zip(*rows)
    n = len(rows)
    quality = np.tile([20.0, 21.0, 22.0], (n, 1))
    return Trajectories(list(cases), quality, np.array(psnr), np.array(psnr_in), np.full((n, 2), 0.1),
                        probabilities=np.array(probs))


def test_a_fitted_gate_lets_in_what_steps_help_and_keeps_out_the_rest():
    traj = _gate_trajectories()
    fitted = fit_gate_on(traj)
    assert fitted.auc_fit == 1.0 and fitted.positive_share == pytest.approx(1 / 3)
    w = fitted.head.weights
    assert w[0] > 0 > w[1]  # noise's probability speaks for a step, blur's against it
    x = traj.probabilities
    assert fitted.head.p_step(x[0]) == pytest.approx(float(judge_scores(fitted.head, x[:1])[0]))
    # The largest probability alone keeps the noise out to keep clean crops untouched; with the gate it comes in.
    plain = fit_stop_rule(traj, cap=2)
    gated = fit_stop_rule(traj, cap=2, gate=fitted.head)
    assert plain.per_case["noise"] == 0.0 and plain.clean_pass == 1.0 and plain.rule.gate is None
    assert gated.rule.gate is not None and gated.rule.min_detect > 0
    assert gated.per_case == {"noise": 4.0, "blur": 0.0, "clean": 0.0} and gated.clean_pass == 1.0
    # Placed on the rule's threshold: the moved gate reaches min_detect where the fitted one reached the threshold.
    moved = gate_at(fitted.head, 0.3, 0.8)
    assert moved.weights == fitted.head.weights
    s = np.linspace(-3, 3, 7)
    shifted = 1 / (1 + np.exp(-(s + moved.bias - fitted.head.bias)))
    assert np.all((1 / (1 + np.exp(-s)) >= 0.3) == (shifted >= 0.8 - 1e-12))
    # Placed just above the clean crops' highest score: at the rule's threshold it opens for none of them.
    placed = placed_gate(fitted.head, traj, 0.7)
    clean = np.array([c == "clean" for c in traj.cases])
    assert judge_scores(placed, x[clean]).max() < 0.7 <= judge_scores(placed, x[~clean]).max()
    rules = candidate_rules(traj, 1, gate=fitted.head)
    assert {r.min_detect for r in rules if r.gate is not None} == {0.5, 0.6, 0.7, 0.8}
    assert len(rules) == len(candidate_rules(traj, 1)) * 9 // 5  # each of the 4 clean gates once more
    assert placed_gate(fitted.head, Trajectories(["noise"], traj.quality[:1], traj.psnr[:1], traj.psnr_in[:1],
                                                 traj.change[:1], probabilities=x[:1]), 0.7) is None
