"""Fitting the loop's stop rule: replay equals the real loop, the fit picks what the data says, the CLI writes it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from rar_edge.eval.fit_stop import (PSNR_CAP_DB, Trajectories, fit_record, fit_stop_rule, format_fit,
                                    record_trajectories, replay, score_rule)
from rar_edge.loop import StopRule
from rar_edge.train.checkpoint import load_model

from conftest import cli


@pytest.mark.parametrize("rule, change_quantile, detect_quantile", [
    (StopRule(3, 99.0, -10.0), None, None), (StopRule(3, 38.0, 0.1), None, None), (StopRule(2, 0.0, 0.0), None, None),
    (StopRule(3, 99.0, 0.0), None, None), (StopRule(3, 99.0, -10.0, keep="last"), None, None),
    (StopRule(3, 99.0, 0.0, keep="last"), None, None), (StopRule(3, 99.0, -10.0), 0.5, None),
    (StopRule(3, 99.0, -10.0, keep="last"), 0.3, None), (StopRule(3, 99.0, -10.0), None, 0.5)])
def test_replay_makes_the_loops_decisions(tiny_checkpoint, photo_dir, rule, change_quantile, detect_quantile):
    """Replaying recorded assessments and step sizes picks the same latent and runs the same steps as
    model.restore_loop (min_change at a quantile of the recorded steps, so some are refused; min_detect at a
    quantile of the inputs' largest degradation probability, so some inputs pass through as clean)."""
    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.cases import make_cases

    model, _ = load_model(tiny_checkpoint)
    clean = PhotoFolder(str(photo_dir)).center_crops(64)[:2]
    traj = record_trajectories(model, clean, cap=3, seed=3)
    if change_quantile is not None:
        rule = replace(rule, min_change=float(np.quantile(traj.change, change_quantile)))
    if detect_quantile is not None:
        # Midway between two recorded values: no input sits on the threshold, where float rounding between the
        # recording's batches and the loop's could tip it.
        seen = np.unique(traj.probabilities.max(1))
        i = int(detect_quantile * (len(seen) - 1))
        rule = replace(rule, min_detect=float(seen[i] + seen[i + 1]) / 2)
    batch, names = make_cases(clean, seed=3)
    results = model.restore_loop(batch.degraded, rule)
    assert names == traj.cases
    for res, q, c, p in zip(results, traj.quality, traj.change, traj.probabilities):
        assert replay(rule, q, c, probabilities=p) == (res.steps, res.steps_run)
        np.testing.assert_allclose(res.quality, q[: res.steps_run + 1], atol=1e-4)
        np.testing.assert_allclose(list(res.degradations.values()), p, atol=1e-5)
    reasons = {r.stop_reason for r in results}
    if change_quantile is not None:  # the quantile refuses some steps and takes others
        assert "small_step" in reasons and any(r.steps_run > 0 for r in results)
    if detect_quantile is not None:  # the gate passes some inputs through and lets the others step
        assert "clean" in reasons and any(r.steps_run > 0 for r in results)
        assert all((r.stop_reason == "clean") == (max(r.degradations.values()) < rule.min_detect) for r in results)


def _synthetic() -> Trajectories:
    """Two cases the assessor tells apart: 'noise' gains 2 dB a step; 'clean' loses 5 dB a step while its
    assessment creeps up 0.2 dB a step (an assessor that likes restored-looking latents)."""
    steps = np.arange(4)
    noise_q, noise_p = 20.0 + 2.0 * steps, 20.0 + 2.0 * steps
    clean_q, clean_p = 36.0 + 0.2 * steps, np.array([PSNR_CAP_DB, 35.0, 30.0, 25.0])
    quality = np.stack([noise_q, noise_q, clean_q, clean_q])
    psnr = np.stack([noise_p, noise_p, clean_p, clean_p])
    change = np.full((4, 3), 0.1)  # every step the same size: min_change cannot tell them apart
    return Trajectories(["noise", "noise", "clean", "clean"], quality, psnr, np.array([20.0, 20.0, PSNR_CAP_DB, PSNR_CAP_DB]),
                        change)


def test_fit_runs_degraded_images_and_leaves_clean_ones():
    traj = _synthetic()
    fitted = fit_stop_rule(traj, cap=3)
    assert fitted.per_case == {"noise": 6.0, "clean": 0.0}  # all 3 steps on noise, none on clean
    assert fitted.steps_run == 1.5
    assert 24.0 < fitted.rule.target_quality <= 36.0  # above the noisy ones before the last step, at most clean
    # The hand-set default (target 38, min gain 0.1) steps the clean photos down to 25 dB.
    default = score_rule(StopRule(3, 38.0, 0.1), traj)
    assert default.per_case["clean"] == 25.0 - PSNR_CAP_DB and fitted.score > default.score


def test_fit_returns_clean_photos_untouched_even_where_stepping_them_looks_free():
    """The decode keeps the clean crops above the cap at every step, so stepping them costs the score nothing,
    and the assessor rates them below the noisy ones' end: only a low target passes them through, which
    also stops the noisy ones after one step. The pass-through share decides, not the capped PSNR."""
    steps = np.arange(4)
    quality = np.stack([20.0 + 2 * steps, 20.0 + 2 * steps, 21.0 + 2 * steps, 21.0 + 2 * steps])
    psnr = np.stack([20.0 + 2 * steps, 20.0 + 2 * steps, np.full(4, PSNR_CAP_DB), np.full(4, PSNR_CAP_DB)])
    traj = Trajectories(["noise", "noise", "clean", "clean"], quality, psnr,
                        np.array([20.0, 20.0, PSNR_CAP_DB, PSNR_CAP_DB]), np.full((4, 3), 0.1))
    free = fit_stop_rule(traj, cap=3, min_clean_pass=0.0)
    assert free.per_case == {"noise": 6.0, "clean": 0.0} and free.clean_pass == 0.0
    kept = fit_stop_rule(traj, cap=3)  # default: every clean crop at 0 steps
    assert kept.clean_pass == 1.0 and kept.per_case == {"noise": 2.0, "clean": 0.0}
    # No candidate target sits below the first clean crop's rating (targets are quantiles of the ratings):
    # it cannot pass, so the rules passing the other one (half) compete, not all of them.
    low = Trajectories(traj.cases, np.stack([quality[0], quality[1], 0.0 + 2 * steps, 10.0 + 2 * steps]), psnr,
                       traj.psnr_in, traj.change)
    assert fit_stop_rule(low, cap=3).clean_pass == 0.5
    assert fit_stop_rule(low, cap=3, min_clean_pass=0.0).clean_pass == 0.0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        fit_stop_rule(traj, cap=3, min_clean_pass=1.5)


def test_the_clean_gate_passes_clean_crops_the_quality_target_cannot():
    """The assessor rates clean and noisy crops alike (20 dB, +2 dB a step), so no target passes the clean
    ones without also stopping the noisy ones; the degradation detector tells them apart (noise detected at
    0.9 and 0.75, nothing above 0.55 on the clean ones): the fit gates at a MIN_DETECT between them."""
    steps = np.arange(4)
    quality = np.stack([20.0 + 2 * steps] * 4)
    psnr = np.stack([20.0 + 2 * steps, 20.0 + 2 * steps, np.full(4, PSNR_CAP_DB), np.full(4, PSNR_CAP_DB)])
    probabilities = np.array([[0.9, 0.1], [0.75, 0.2], [0.55, 0.3], [0.1, 0.4]])
    traj = Trajectories(["noise", "noise", "clean", "clean"], quality, psnr,
                        np.array([20.0, 20.0, PSNR_CAP_DB, PSNR_CAP_DB]), np.full((4, 3), 0.1), None, probabilities)
    fitted = fit_stop_rule(traj, cap=3)
    assert 0.55 < fitted.rule.min_detect <= 0.75
    assert fitted.clean_pass == 1.0 and fitted.per_case == {"noise": 6.0, "clean": 0.0} and fitted.steps_run == 1.5
    # Without the input probabilities there is no gate to fit: the clean crops cost the noisy ones their steps.
    blind = fit_stop_rule(replace(traj, probabilities=None), cap=3)
    assert blind.rule.min_detect == 0.0 and blind.per_case["noise"] < 6.0
    with pytest.raises(ValueError, match="input probabilities"):
        score_rule(StopRule(3, 99.0, -10.0, min_detect=0.5), replace(traj, probabilities=None))


def test_fit_uses_the_step_size_and_the_last_latent_where_the_assessor_cannot_tell():
    """The assessor scores noisy and clean alike and likes every step (quality up 1 dB a step), so no target
    or minimum gain separates them; the restorer's steps do: large on noise, tiny on clean. The noisy
    trajectory peaks in truth at step 3 while the assessor's best is step 2 (it dips at 3)."""
    quality = np.array([[30.0, 31.0, 33.0, 32.5], [30.0, 31.0, 33.0, 32.5], [30.0, 31.0, 32.0, 33.0]])
    psnr = np.array([[20.0, 22.0, 24.0, 26.0], [20.0, 22.0, 24.0, 26.0], [PSNR_CAP_DB, 36.0, 33.0, 30.0]])
    change = np.array([[0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [0.01, 0.01, 0.01]])
    traj = Trajectories(["noise", "noise", "clean"], quality, psnr, np.array([20.0, 20.0, PSNR_CAP_DB]), change)
    fitted = fit_stop_rule(traj, cap=3)
    assert 0.01 < fitted.rule.min_change <= 0.2 and fitted.rule.keep == "last"
    assert fitted.per_case == {"noise": 6.0, "clean": 0.0} and fitted.steps_run == 2.0
    without = score_rule(StopRule(3, 99.0, -10.0), traj)  # no step-size stop, best-assessed latent
    assert without.per_case == {"noise": 4.0, "clean": 30.0 - PSNR_CAP_DB}


def test_a_rule_that_keeps_step_0_is_scored_on_the_input():
    # Pass-through (rar_edge.loop): the autoencoder's round trip (psnr[:, 0]) is never returned.
    traj = Trajectories(["blur"], np.array([[40.0, 30.0]]), np.array([[27.8, 27.0]]), np.array([28.0]),
                        np.array([[0.1]]))
    assert score_rule(StopRule(1, 35.0, 0.0), traj).per_case == {"blur": 0.0}  # stops on target at once
    assert score_rule(StopRule(1, 99.0, -10.0, keep="best"), traj).per_case == {"blur": 0.0}  # step 1 worse
    assert score_rule(StopRule(1, 99.0, -10.0, keep="last"), traj).per_case["blur"] == pytest.approx(-1.0)


def test_step_cost_and_ties_prefer_fewer_steps():
    traj = _synthetic()
    # A step is worth 2 dB (on the noisy images, the only ones stepped): at 1.5 dB per step they pay, at 2.5 not.
    assert fit_stop_rule(traj, cap=3, step_cost=1.5).per_case == {"noise": 6.0, "clean": 0.0}
    assert fit_stop_rule(traj, cap=3, step_cost=2.5).steps_run == 0.0
    flat = Trajectories(["noise"], np.array([[20.0, 20.0, 20.0]]), np.array([[20.0, 20.0, 20.0]]), np.array([20.0]),
                        np.array([[0.1, 0.1]]))
    assert fit_stop_rule(flat, cap=2).steps_run == 0  # every rule scores alike: the cheapest wins
    with pytest.raises(ValueError, match="at least 1"):
        fit_stop_rule(flat, cap=0)


def test_harm_weight_prefers_the_rule_that_ruins_no_photo():
    """Five noisy images the assessor cannot tell apart (same assessments), so a rule steps all or none: a step
    gains 3 dB on four and ruins the fifth (-9 dB). The mean alone says step (+0.6 dB); with the loss counted
    twice (harm weight 1) stepping scores -1.2 dB, and the fit leaves them all."""
    gains = np.array([3.0, 3.0, 3.0, 3.0, -9.0])
    psnr_in = np.full(5, 20.0)
    quality = np.tile([20.0, 25.0], (5, 1))  # the assessor cannot tell the ruined one apart
    traj = Trajectories(["noise"] * 5, quality, np.stack([psnr_in, psnr_in + gains], 1), psnr_in, np.full((5, 1), 0.1))
    stepped = score_rule(StopRule(1, 99.0, -10.0, keep="last"), traj, harm_weight=1.0)
    assert stepped.harm == pytest.approx(9.0 / 5) and stepped.psnr_out == pytest.approx(20.6)
    assert stepped.score == pytest.approx(20.6 - 1.8)
    assert fit_stop_rule(traj, cap=1).steps_run == 1.0  # the mean alone: +0.6 dB, step
    safe = fit_stop_rule(traj, cap=1, harm_weight=1.0)
    assert safe.steps_run == 0.0 and safe.harm == 0.0  # the loss counted twice: -1.2, leave them
    table = format_fit(stepped, safe).splitlines()  # the harm is printed and recorded with each rule
    assert table[1].split()[11:13] == ["1.800", "+0.60"] and table[2].split()[11] == "0.000"
    assert fit_record(stepped, safe)["before"]["harm"] == 1.8
    with pytest.raises(ValueError, match="harm weight"):
        fit_stop_rule(traj, cap=1, harm_weight=-1.0)


def test_rules_replayed_on_several_processes_score_as_on_one():
    """score_rules splits the candidates over worker processes: the same scores, in the same order."""
    from rar_edge.eval.fit_stop import MIN_RULES_PER_WORKER, candidate_rules, score_rules

    rng = np.random.default_rng(1)
    n, cap = 12, 3
    quality = np.cumsum(rng.normal(0.5, 1.0, (n, cap + 1)), axis=1) + 25
    psnr = np.cumsum(rng.normal(0.3, 1.5, (n, cap + 1)), axis=1) + 22
    traj = Trajectories(["noise", "blur", "clean"] * 4, quality, psnr, psnr[:, 0], rng.uniform(0.01, 0.2, (n, cap)))
    rules = candidate_rules(traj, cap)
    assert len(rules) >= 2 * MIN_RULES_PER_WORKER  # enough to be split
    one = score_rules(rules, traj, 0.05, harm_weight=1.0)
    import concurrent.futures

    pools = []

    class SpyPool(concurrent.futures.ProcessPoolExecutor):  # the real pool, recording what it was given
        def __init__(self, max_workers, **kw):
            super().__init__(max_workers, **kw)
            pools.append({"workers": max_workers, "chunks": 0})

        def map(self, fn, *iterables, **kw):
            chunks = list(iterables[0])
            pools[-1]["chunks"] = len(chunks)
            return super().map(fn, chunks, *iterables[1:], **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concurrent.futures, "ProcessPoolExecutor", SpyPool)
        assert score_rules(rules, traj, 0.05, harm_weight=1.0, workers=2) == one
        assert pools[0]["workers"] == 2 and pools[0]["chunks"] >= 2 and len(pools) == 1  # pooled
        score_rules(rules[:MIN_RULES_PER_WORKER], traj, 0.05, workers=2)
        assert len(pools) == 1  # too few rules to be worth a pool: one process
    assert fit_stop_rule(traj, cap, 0.05, harm_weight=1.0, workers=2) == fit_stop_rule(traj, cap, 0.05, harm_weight=1.0)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        score_rules(rules, traj, workers=0)


def test_rules_that_share_their_steps_are_walked_once_and_score_as_replayed_one_by_one():
    """score_rules walks the rules that differ only in their clean gate or keep once: every candidate of a fit with
    a judge and a learned gate scores exactly as replaying the rule itself on each trajectory."""
    from rar_edge.eval import fit_stop
    from rar_edge.loop import Gate, Judge

    rng = np.random.default_rng(4)
    n, cap, dims = 30, 3, 4
    quality = np.cumsum(rng.normal(0.5, 1.0, (n, cap + 1)), axis=1) + 28
    psnr = np.minimum(np.cumsum(rng.normal(0.3, 1.5, (n, cap + 1)), axis=1) + 24, PSNR_CAP_DB)
    cases = ["noise", "blur+noise", "clean"] * 10
    vectors = rng.normal(0, 1, (n, cap + 1, 1 + dims))
    vectors[..., 0] = quality
    probabilities = rng.uniform(0, 1, (n, dims))
    traj = Trajectories(cases, quality, psnr, psnr[:, 0], rng.uniform(0.01, 0.2, (n, cap)), vectors, probabilities)
    judge = Judge(tuple(rng.normal(0, 0.5, 2 * (1 + dims) + 1)), 0.2)
    rules = fit_stop.candidate_rules(traj, cap, judged=True, gate=Gate(tuple(rng.normal(0, 2, dims)), -1.0))
    walks = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_stop, "_walk", lambda *a, real=fit_stop._walk: walks.append(1) or real(*a))
        scores = fit_stop.score_rules(rules, traj, 0.05, judge, harm_weight=0.5)
    assert len(walks) * 10 <= len(rules) * n  # a tenth of the walks one per rule and trajectory would take
    checked = {"gated": 0, "shut": 0, "judged": 0, "last": 0}
    for i in np.random.default_rng(0).choice(len(rules), 400, replace=False):
        rule, got = rules[i], scores[i]
        picked, ran = map(np.array, zip(*(replay(rule, q, c, v, judge, p) for q, c, v, p in
                                          zip(quality, traj.change, vectors, probabilities))))
        out = np.where(picked == 0, psnr[:, 0], psnr[np.arange(n), picked])
        clean = np.array(cases) == "clean"
        assert got.rule == rule and got.steps_run == pytest.approx(ran.mean(), abs=1e-12)
        assert got.psnr_out == pytest.approx(out.mean(), abs=1e-12)
        assert got.clean_pass == np.mean(picked[clean] == 0)
        assert got.harm == pytest.approx(np.maximum(psnr[:, 0] - out, 0)[~clean].mean(), abs=1e-12)
        assert got.per_case["clean"] == pytest.approx((out[clean] - PSNR_CAP_DB).mean(), abs=1e-12)
        noise = np.array(cases) == "noise"
        assert got.per_case["noise"] == pytest.approx((out - psnr[:, 0])[noise].mean(), abs=1e-12)
        assert got.score == pytest.approx(got.psnr_out - 0.05 * got.steps_run - 0.5 * got.harm, abs=1e-12)
        checked["gated"] += rule.gate is not None
        shut = [rule.nothing_detected(p) for p in probabilities]
        checked["shut"] += any(shut) and not all(shut)  # the gate returns some inputs as they came, not all
        checked["judged"] += rule.min_better > 0
        checked["last"] += rule.keep == "last"
    assert min(checked.values()) >= 10, checked  # the sample holds every kind of rule


def test_fit_stop_cli_writes_the_rule_into_the_checkpoint(tiny_checkpoint, photo_dir, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    before = json.loads((ckpt / "config.json").read_text())
    status, out, err = cli("fit-stop", "--checkpoint", ckpt, "--data", photo_dir, "--crop", 64, "--max-images", 2,
                           "--max-steps", 2)
    assert status == 0, err
    assert "current" in out and "fitted" in out and "--write" in out
    assert json.loads((ckpt / "config.json").read_text()) == before  # nothing written without --write

    assert "no clean gate fitted" not in caplog.text  # the gate's detector only with --gate
    status, out, err = cli("fit-stop", "--checkpoint", ckpt, "--data", photo_dir, "--crop", 64, "--max-images", 2,
                           "--max-steps", 2, "--gate", "--write")
    assert status == 0, err
    after = json.loads((ckpt / "config.json").read_text())
    record = after["stop_rule_fit"]
    assert record["how"]["precision"] == "fp32" and record["how"]["cap"] == 2 and record["how"]["harm_weight"] == 0
    fitted = record["after"]["rule"]
    assert {k: after["model"][k] for k in fitted} == fitted
    assert 1 <= fitted["max_steps"] <= 2
    model, _ = load_model(ckpt)  # still loads, with the fitted rule as its defaults
    assert model.stop_rule() == StopRule.from_dict(fitted)
    # --gate: the gate's detector is fitted where some recorded input is helped by steps (said in the output), else
    # a warning says why none is (whether this tiny model's steps help any input varies with the CPU it trained on);
    # a rule keeps a gate only where one was fitted.
    warned = "no clean gate fitted: no recorded input is helped by steps" in caplog.text
    assert warned != ("clean gate (can steps help this input?)" in out), (caplog.text, out)
    assert fitted["gate"] == [] if warned else len(fitted["gate"]) in (0, 7)
    torch.testing.assert_close(model.state_dict(), load_model(tiny_checkpoint)[0].state_dict())
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(p.name for p in tiny_checkpoint.iterdir())


def test_fit_stop_refuses_bad_arguments(tiny_checkpoint, photo_dir):
    for args, message in [(("--max-steps", 0), "--max-steps must be at least 1"),
                          (("--step-cost", -1), "--step-cost must be a finite number"),
                          (("--clean-pass", 1.5), "--clean-pass must be a share in [0, 1]"),
                          (("--precision", "int8"), "has no int8/ programs"),
                          (("--crop", 100), "--crop 100: use a multiple of 16"),
                          (("--crop", 4096), "between 16 and 1024"),
                          (("--max-images", 0), "--max-images must be at least 1"),
                          (("--synthesis", "albumentations"), "is the independent test synthesis"),
                          (("--synthesis", "v2,v9"), "--synthesis takes training syntheses"),
                          (("--synthesis", ","), "--synthesis takes training syntheses"),
                          (("--clean-crops", 0), "--clean-crops counts the centre crop"),
                          (("--harm-weight", -1), "--harm-weight must be a finite number >= 0"),
                          (("--dark-originals", 1.5), "--dark-originals is a share in [0, 1]"),
                          (("--workers", 0), "--workers counts processes for the replay")]:
        status, out, err = cli("fit-stop", "--checkpoint", tiny_checkpoint, "--data", photo_dir, *args)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    status, out, err = cli("eval", "--checkpoint", tiny_checkpoint, "--data", photo_dir, "--crop", 100)
    assert status == 2 and "--crop 100: use a multiple of 16" in err


def test_fit_stop_on_int8_programs(distilled, photo_dir):
    """A distilled student is fitted through its int8 programs by default."""
    out, _ = distilled
    status, stdout, err = cli("fit-stop", "--checkpoint", out / "student", "--data", photo_dir, "--crop", 32,
                              "--max-images", 2, "--max-steps", 2)
    assert status == 0, err
    assert stdout.startswith("int8 model, 36 images (11 cases, synthesis v2)")  # 2 x 10 degraded, 2 x 8 clean



def test_fit_on_several_syntheses_records_each_degraded_case_once_per_synthesis(tiny_checkpoint, photo_dir, tmp_path):
    """Every degraded case is recorded under each synthesis (different pixels, so different trajectories) and the
    clean crops once; the CLI stores which syntheses the rule was fitted on."""
    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.fit_stop import concat_trajectories, fit_from_photos

    model, _ = load_model(tiny_checkpoint)
    traj = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, syntheses=("v2", "v3"),
                           clean_crops=1).traj
    names = [n for n in traj.cases if n != "clean"]
    assert traj.cases.count("clean") == 2 and len(names) == 2 * 2 * 10
    assert all(names.count(n) == 4 for n in set(names))
    clean = PhotoFolder(str(photo_dir)).center_crops(64)[:2]
    v2, v3 = (record_trajectories(model, clean, cap=2, synthesis=s) for s in ("v2", "v3"))
    np.testing.assert_array_equal(traj.psnr_in[: len(v2.cases)], v2.psnr_in)  # the first synthesis, clean included
    noisy = [i for i, n in enumerate(v2.cases) if n == "noise"]
    assert not np.allclose(v2.psnr_in[noisy], v3.psnr_in[noisy])  # the two syntheses made different images
    both = concat_trajectories([v2, v3])
    assert both.cases == v2.cases + v3.cases and both.vectors.shape[0] == len(both.cases)
    with pytest.raises(ValueError, match="at least one synthesis"):
        fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, syntheses=())
    with pytest.raises(ValueError, match="clean_crops counts the centre crop"):
        fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, clean_crops=0)

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    status, out, err = cli("fit-stop", "--checkpoint", ckpt, "--data", photo_dir, "--crop", 64, "--max-images", 2,
                           "--max-steps", 2, "--synthesis", "v2,v3,v2", "--write")
    assert status == 0, err
    assert "56 images (11 cases, synthesis v2+v3)" in out  # 2 x 10 degraded cases x 2 syntheses + 2 x 8 clean crops
    how = json.loads((ckpt / "config.json").read_text())["stop_rule_fit"]["how"]
    assert how["syntheses"] == ["v2", "v3"] and how["clean_crops"] == 8


def test_dark_originals_add_every_case_on_darkened_crops_taken_as_originals(tiny_checkpoint, photo_dir, tmp_path):
    """--dark-originals records each centre crop once more, scaled into DARK_SCALE, under every case and synthesis,
    with the darkened crop as the original: its clean case is recorded at the cap (untouched = perfect)."""
    from rar_edge.eval.fit_stop import DARK_SCALE, fit_from_photos

    model, _ = load_model(tiny_checkpoint)
    plain_fit = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, syntheses=("v2", "v3"),
                                clean_crops=1)
    plain = plain_fit.traj
    dark_fit = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, syntheses=("v2", "v3"),
                               clean_crops=1, dark_originals=1.0)
    dark = dark_fit.traj
    n = len(plain.cases)
    assert dark.cases[:n] == plain.cases and len(dark.cases) == 2 * n  # 2 x 11 + 2 x 10, twice
    np.testing.assert_array_equal(dark.psnr_in[:n], plain.psnr_in)
    extra = dark.cases[n:]
    assert extra.count("clean") == 2 and all(p == PSNR_CAP_DB for c, p in zip(extra, dark.psnr_in[n:]) if c == "clean")
    # the same as recording the centre crops scaled into DARK_SCALE by hand (the fit's seed 7: scales from seed 5,
    # degradations from seed 9), each case's input PSNR measured against the darkened crop
    from rar_edge.data.folder import PhotoFolder

    low, high = DARK_SCALE
    assert 0 < low < high < 1
    scale = low + (high - low) * torch.rand(2, generator=torch.Generator().manual_seed(5))
    clean = PhotoFolder(str(photo_dir)).center_crops(64)[:2]
    by_hand = record_trajectories(model, clean * scale[:, None, None, None], cap=2, seed=9, synthesis="v2")
    assert extra[: len(by_hand.cases)] == by_hand.cases
    np.testing.assert_allclose(dark.psnr_in[n : n + len(by_hand.cases)], by_hand.psnr_in)
    # a share keeps that part of the darkened recordings (the same rows for the same share), never the others
    half_fit = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, syntheses=("v2", "v3"),
                               clean_crops=1, dark_originals=0.5)
    half = half_fit.traj
    kept = np.random.default_rng(0).random(n) < 0.5
    assert half.cases[n:] == [c for c, k in zip(extra, kept) if k] and 0 < kept.sum() < n
    np.testing.assert_allclose(half.psnr_in[n:], dark.psnr_in[n:][kept])
    # on_dark scores both rules on every dark original, whatever the share: the same rows for 1 and 0.5
    from rar_edge.eval.fit_stop import score_rule, subset

    assert plain_fit.on_dark is None and half_fit.on_dark[0] == dark_fit.on_dark[0]
    only_dark = subset(dark, np.arange(len(dark.cases)) >= n)
    assert dark_fit.on_dark[0] == score_rule(dark_fit.current.rule, only_dark, judge=model.config.judge_head)
    assert dark_fit.on_dark[1].rule == dark_fit.fitted.rule
    assert dark_fit.on_dark[1].per_case.keys() == set(only_dark.cases)
    with pytest.raises(ValueError, match="share of dark originals"):
        fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, dark_originals=1.5)

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    status, out, err = cli("fit-stop", "--checkpoint", ckpt, "--data", photo_dir, "--crop", 64, "--max-images", 2,
                           "--max-steps", 2, "--dark-originals", 1, "--write")
    assert status == 0, err
    assert "58 images (11 cases, synthesis v2, dark originals 1)" in out  # 36 as before + 2 x 11 darkened
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()
            if line.startswith(("current", "fitted"))}
    assert set(rows) == {"current", "fitted", "current dark", "fitted dark"} and "harm" in out
    assert json.loads((ckpt / "config.json").read_text())["stop_rule_fit"]["how"]["dark_originals"] == 1


def test_the_clean_pass_through_is_held_on_random_crops_too(tiny_checkpoint, photo_dir):
    """clean_crops=3: each photo's centre crop and two random ones are recorded clean (so a rule must pass all of
    them), the degraded cases stay on the centre crops."""
    from rar_edge.eval.fit_stop import fit_from_photos

    model, _ = load_model(tiny_checkpoint)
    one = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, clean_crops=1).traj
    three = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, clean_crops=3).traj
    assert one.cases.count("clean") == 2 and three.cases.count("clean") == 6
    assert three.cases[: len(one.cases)] == one.cases and set(three.cases[len(one.cases):]) == {"clean"}
    np.testing.assert_array_equal(three.psnr[: len(one.cases)], one.psnr)  # the centre-crop recording unchanged
    extra = three.quality[len(one.cases):, 0]
    assert not np.isin(extra, one.quality[[i for i, n in enumerate(one.cases) if n == "clean"], 0]).all()


def test_fit_progress_counts_every_recording_and_rule(tiny_checkpoint, photo_dir, capsys):
    """progress=True: a recording bar that ends at the number of images recorded (two syntheses, extra clean
    crops and dark originals all counted) and a replay bar; nothing on stderr without it."""
    from rar_edge.eval.fit_stop import candidate_rules, fit_from_photos

    model, _ = load_model(tiny_checkpoint)
    fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, clean_crops=1)
    assert capsys.readouterr().err == ""
    traj = fit_from_photos(model, str(photo_dir), cap=2, crop=64, max_images=2, clean_crops=3, syntheses=("v2", "v3"),
                           dark_originals=1.0, progress=True).traj
    err = capsys.readouterr().err
    n, rules = len(traj.cases), len(candidate_rules(traj, 2))
    assert n == 2 * (11 + 10) + 4 + 2 * (11 + 10)
    assert "recording trajectories: 100%" in err and f"| {n}/{n} " in err
    assert "replaying rules: 100%" in err and f"| {rules}/{rules} " in err
