"""``rar-edge fit-stop``: fit the adaptive loop's stop rule to a model's own assessor and restorer.

The stop rule's thresholds (``target_quality``, ``min_gain``, ``max_steps``) are in the units of
the assessor's quality score, and every model has its own: a student's assessor is compressed
toward its mean, so the teacher's 38 dB target is never reached and a 0.1 dB ``min_gain`` stops
a loop whose assessed gains are 0.1-0.2 dB per step although the true gains are 1-3 dB. Defaults
chosen by hand therefore leave quality on the table (or waste steps) for any given model.

The rule's other two fields are fitted alongside: ``min_change`` (stop when the restorer proposes
a step smaller than this fraction of the latent; its candidates are quantiles of the recorded step
sizes) and ``keep`` (decode the best-assessed latent or the last step's: with a weak assessor the
best-assessed one is often not the best).

Fitting is cheap because the rule only reads assessments and step sizes: each image's trajectory
(assessed quality, true PSNR and step size over 0..cap steps) is computed once, then every candidate
rule is replayed on the recorded trajectories with the same ``StopRule`` the runtime applies (on several
processes: the replay is plain Python). The score of a rule
is the mean output PSNR over the evaluation cases (every case weighs alike; PSNR is capped at
``PSNR_CAP_DB`` so an untouched clean photo counts as perfect and damaging it costs), minus
``step_cost`` dB per restore step run, minus ``harm_weight`` times the mean loss of the degraded images a rule
returns worse than they came (dB below their input, 0 for the others): with a weight above 0 a ruined photo
costs more than the gains on others make up for, as it does to a user. Of the rules within ``tolerance`` dB of
the best score the one with the fewest mean steps wins: latency is the tie-breaker.

Clean photos weigh in two ways. Their output PSNR is capped like every case's, so stepping a clean photo
that the decode keeps above the cap looks free to the score; but a photo app wants it back untouched
(bit-exact, and without the latency). So rules must also return at least ``min_clean_pass`` of the clean
crops at 0 steps (the pass-through: default all of them); only if no candidate does, the ones that pass the
most compete. All, because the crops a rule is fitted on pass more easily than unseen photos
(bench/clean_gate.py: without a gate, 98 % of rar-edge-s-v4's fit crops became 79 % of held-out ones; with
the gate, 96 % held out). The clean gate
(``min_detect``: no first step unless the assessor detects some degradation) is fitted alongside, at
MIN_DETECT: with it the rule need not lower its quality target until degraded photos pass too.

With ``gate=True`` (``--gate``) the clean gate may also read a learned second detector (rar_edge.loop.Gate: the
probability that steps help this input, from its degradation probabilities), fitted first on the same
recordings and placed just above the highest score of the clean recordings (so that it opens for none of
them): every candidate gated by the largest probability comes once more with it. Why: a step helps noise and
not blur, and mild noise that the largest probability must rank below clean-photo level is worth a step
(BENCHMARKS.md, "A learned clean gate").

With ``judge=True`` (the CLI's default) the loop's judge is fitted first on the same trajectories
(rar_edge.eval.judge: "is the new latent better than the previous one?"), and candidate rules that stop on
its "worse" (``min_better``, with the assessor's ``min_gain`` off) compete with the others.

Fit on training photos (or a separate calibration set), never on the photos you report on.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np
import torch

from rar_edge import DEFAULT_SYNTHESIS, FIT_CLEAN_CROPS
from rar_edge.data.folder import PhotoFolder
from rar_edge.loop import KEEP_CHOICES, QUALITY_CAP_DB, Gate, Judge, LoopTrace, StopRule

from .cases import CASES, make_cases
from .evaluate import trajectory
from .judge import fit_gate, fit_judge, gate_examples, judge_scores, step_examples
from .metrics import psnr

#: Output PSNR above this counts as perfect (the training targets' "clean" line): a clean photo that
#: comes back above it costs nothing, one damaged below it costs the difference.
PSNR_CAP_DB = QUALITY_CAP_DB
#: Candidate minimum gains (dB per step); -10 never stops a loop in practice.
MIN_GAINS: tuple[float, ...] = (-10.0, -1.0, -0.5, -0.2, -0.1, 0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
#: A target quality no assessment reaches (training targets stop at 40 dB): the loop never stops on target.
NO_TARGET_DB = 99.0
#: Quantiles of the recorded step sizes tried as min_change (besides 0: off).
CHANGE_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
#: Candidate thresholds on the judge's probability that a step helped (rules with a judge).
MIN_BETTER: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: Candidate clean gates (StopRule.min_detect: the least degradation probability that starts a loop; 0 off).
MIN_DETECT: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8)
#: How far above the clean recordings' highest score the learned gate is placed (placed_gate).
GATE_MARGIN = 1e-4
#: Assessor gain that never stops a loop: rules with a judge leave "is it better?" to it.
NO_MIN_GAIN = -10.0
#: Fewest candidate rules worth a worker process of their own (fit_stop_rule's ``workers``): below this the
#: process start (an import of torch, ~2 s) costs more than the replay it saves (a fit's 1434 recordings replay
#: ~1,600 rules a second per process, walked in groups: BENCHMARKS.md, "fit-stop's replay").
MIN_RULES_PER_WORKER = 4000
#: Seed of fit-stop's recordings (the cases' severities and models): benches that recompute a recording's
#: inputs pass it to make_cases too.
RECORD_SEED = 7
#: Exposure range of the dark originals (fit_from_photos' ``dark_originals``): each fit crop scaled by a factor in it.
DARK_SCALE: tuple[float, float] = (0.2, 0.5)


@dataclass
class Trajectories:
    """Assessed quality and true PSNR of every image after 0..cap fixed restore steps."""

    cases: list[str]  # the evaluation case of each image
    quality: np.ndarray  # (N, cap+1) assessed quality, dB
    psnr: np.ndarray  # (N, cap+1) PSNR of the decode against the clean original, capped at PSNR_CAP_DB
    psnr_in: np.ndarray  # (N,) PSNR of the degraded input, capped at PSNR_CAP_DB
    change: np.ndarray  # (N, cap) relative size of each step, |z_k+1 - z_k| / |z_k|
    vectors: np.ndarray | None = None  # (N, cap+1, F) each latent's assessment vector (what the judge reads)
    probabilities: np.ndarray | None = None  # (N, D) the input's degradation probabilities (the clean gate's)


@dataclass(frozen=True)
class RuleScore:
    """How one stop rule does on recorded trajectories."""

    rule: StopRule
    score: float  # mean output PSNR minus step_cost per step run and harm_weight times the mean harm
    psnr_out: float  # mean output PSNR (capped)
    steps_run: float  # mean restore steps executed
    per_case: dict[str, float]  # mean output PSNR gain per case (clean: output PSNR minus the cap)
    clean_pass: float = float("nan")  # share of the clean crops returned at 0 steps (NaN: no clean case)
    harm: float = 0.0  # mean dB below their input of the degraded images (0 for those not made worse)


@torch.no_grad()
def record_trajectories(model, clean: torch.Tensor, cap: int, seed: int = RECORD_SEED, batch_size: int = 8,
                        synthesis: str = DEFAULT_SYNTHESIS,
                        cases: tuple[tuple[str, ...], ...] = CASES, bar=None) -> Trajectories:
    """Run ``cap`` fixed steps on every evaluation case of ``clean`` (N,3,H,W), degraded by ``synthesis``,
    and record each step (``bar``: a tqdm bar advanced by the images recorded)."""
    batch, names = make_cases(clean, seed=seed, cases=cases, synthesis=synthesis)
    runs = []
    for i in range(0, len(names), batch_size):
        runs.append(trajectory(model, batch.degraded[i : i + batch_size], batch.clean[i : i + batch_size], cap,
                               PSNR_CAP_DB))
        if bar is not None:
            bar.update(len(runs[-1][0]))
    psnr_in = np.array([min(psnr(d, c), PSNR_CAP_DB)
                        for d, c in zip(batch.degraded.cpu().numpy(), batch.clean.cpu().numpy())])
    quality, out, change, vectors = (np.concatenate([r[i] for r in runs]) for i in range(4))
    # An assessment vector is [quality, *probabilities, *conditioning] (rar_edge.loop.assessment_vector).
    probabilities = vectors[:, 0, 1 : 1 + len(model.config.degradations)]
    return Trajectories(names, quality, out, psnr_in, change, vectors, probabilities)


def concat_trajectories(parts: list[Trajectories]) -> Trajectories:
    """One set of trajectories from several recordings of the same cap (e.g. one per synthesis)."""
    def cat(field: str) -> np.ndarray | None:
        arrays = [getattr(t, field) for t in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return Trajectories([c for t in parts for c in t.cases],
                        *(cat(f.name) for f in fields(Trajectories) if f.name != "cases"))


def subset(traj: Trajectories, keep: np.ndarray) -> Trajectories:
    """The trajectories where ``keep`` (a boolean per image) is true."""
    return Trajectories([c for c, k in zip(traj.cases, keep) if k],
                        *(None if getattr(traj, f.name) is None else getattr(traj, f.name)[keep]
                          for f in fields(Trajectories) if f.name != "cases"))


def _walk(rule: StopRule, quality: np.ndarray, change: np.ndarray, vectors: np.ndarray | None = None,
          judge: Judge | None = None, probabilities: np.ndarray | None = None) -> LoopTrace:
    """One recorded trajectory driven through the loop (LoopTrace) under ``rule``: the trace where it stopped."""
    vec = (lambda k: list(vectors[k])) if vectors is not None else (lambda k: None)
    trace = LoopTrace(rule, quality[0], judge, vec(0), probabilities)
    while trace.running and trace.propose(change[trace.steps_run] if trace.needs_change() else None):
        trace.taken(quality[trace.steps_run + 1], vec(trace.steps_run + 1))
    return trace


def replay(rule: StopRule, quality: np.ndarray, change: np.ndarray, vectors: np.ndarray | None = None,
           judge: Judge | None = None, probabilities: np.ndarray | None = None) -> tuple[int, int]:
    """(index of the latent the loop returns, steps it ran) for one recorded trajectory.

    The same decisions as the torch loop and the runtime (one LoopTrace): step while the rule, its clean
    gate and the judge allow and the proposed step is not too small, then return the latent ``kept``.
    """
    trace = _walk(rule, quality, change, vectors, judge, probabilities)
    return trace.kept, trace.steps_run


def _open_rule(rule: StopRule) -> StopRule:
    """``rule`` without what only matters before the first step or after the last: its clean gate (an input it
    shuts out is returned at 0 steps, LoopTrace's ``clean``) and ``keep`` (which latent is returned). Rules that
    differ only there take the same steps on every input the gate lets in, so score_rules walks them once."""
    return replace(rule, min_detect=0.0, gate=None, keep=KEEP_CHOICES[0])


class _Cases(NamedTuple):
    """The evaluation cases of a set of trajectories, as numpy reads them (one pass per rule, not per image)."""

    names: list[str]  # each case once, in order of first appearance
    index: np.ndarray  # (N,) each trajectory's case, an index into names
    count: np.ndarray  # (len(names),) trajectories per case
    clean: np.ndarray  # (N,) whether the trajectory is a clean crop


def _cases(traj: Trajectories) -> _Cases:
    names = list(dict.fromkeys(traj.cases))
    index = np.array([names.index(c) for c in traj.cases], dtype=np.int64)
    return _Cases(names, index, np.bincount(index, minlength=len(names)), index == names.index("clean")
                  if "clean" in names else np.zeros(len(index), bool))


def _shut(rule: StopRule, traj: Trajectories, memo: dict) -> np.ndarray | None:
    """Which trajectories ``rule``'s clean gate returns as they came (None: the rule has no gate); one
    StopRule.nothing_detected per input, ``memo``-ised by gate (a fit's ~100 k rules share nine)."""
    if rule.min_detect <= 0:
        return None
    if traj.probabilities is None:
        raise ValueError("a rule with a clean gate (min_detect) needs the trajectories' input probabilities")
    key = (rule.min_detect, rule.gate)
    if key not in memo:
        memo[key] = np.array([rule.nothing_detected(p) for p in traj.probabilities], dtype=bool)
    return memo[key]


def _score(rule: StopRule, picked: np.ndarray, ran: np.ndarray, traj: Trajectories, cases: _Cases,
           step_cost: float, harm_weight: float) -> RuleScore:
    """The score of ``rule`` from the latent each trajectory returned (``picked``) and the steps it ran."""
    # Pass-through (rar_edge.loop): a loop that keeps step 0 returns the input, not its decode.
    out = np.where(picked == 0, traj.psnr_in, traj.psnr[np.arange(len(picked)), picked])
    gain = out - np.where(cases.clean, PSNR_CAP_DB, traj.psnr_in)
    per_case = np.bincount(cases.index, gain, len(cases.names)) / cases.count
    steps = float(np.mean(ran))
    mean_out = float(np.mean(out))
    degraded = ~cases.clean
    harm = float(np.maximum(traj.psnr_in - out, 0)[degraded].mean()) if degraded.any() else 0.0
    return RuleScore(rule, mean_out - step_cost * steps - harm_weight * harm, mean_out, steps,
                     dict(zip(cases.names, map(float, per_case))),
                     float(np.mean(picked[cases.clean] == 0)) if cases.clean.any() else float("nan"), harm)


def _score_alike(rules: list[StopRule], traj: Trajectories, cases: _Cases, step_cost: float, judge: Judge | None,
                 harm_weight: float, memo: dict) -> list[RuleScore]:
    """Score ``rules``, which share one ``_open_rule``: every trajectory walked once, each rule's clean gate and
    ``keep`` applied to the walks. The same outcome as replaying each rule (tests/test_fit_stop.py checks it)."""
    walker = _open_rule(rules[0])
    judged = judge is not None and walker.min_better > 0 and traj.vectors is not None
    vectors = traj.vectors if judged else [None] * len(traj.quality)
    traces = [_walk(walker, q, c, v, judge if judged else None) for q, c, v in zip(traj.quality, traj.change, vectors)]
    ran = np.array([t.steps_run for t in traces])
    keeping = {keep: replace(walker, keep=keep) for keep in {r.keep for r in rules}}
    kept = {keep: np.array([by.returned_index(t.qualities, t.reason) for t in traces]) for keep, by in keeping.items()}
    scores = []
    for rule in rules:
        shut = _shut(rule, traj, memo)
        picked, steps = (kept[rule.keep], ran) if shut is None else (np.where(shut, 0, kept[rule.keep]),
                                                                      np.where(shut, 0, ran))
        scores.append(_score(rule, picked, steps, traj, cases, step_cost, harm_weight))
    return scores


def score_rule(rule: StopRule, traj: Trajectories, step_cost: float = 0.0, judge: Judge | None = None,
               harm_weight: float = 0.0) -> RuleScore:
    """Replay ``rule`` (with ``judge``, if its min_better asks one) on every trajectory and score it."""
    return _score_alike([rule], traj, _cases(traj), step_cost, judge, harm_weight, {})[0]


def candidate_rules(traj: Trajectories, cap: int, judged: bool = False, gate: Gate | None = None) -> list[StopRule]:
    """Step caps 1..cap x targets at the recorded qualities' quantiles (and none) x MIN_GAINS x
    min_change at CHANGE_QUANTILES of the recorded step sizes (and 0) x keep best / last; with
    ``judged``, also caps x targets x MIN_BETTER x keep with the assessor's min_gain and min_change off.
    Each of them with every clean gate of MIN_DETECT (only the gate off when ``traj`` has no probabilities), and
    with a learned ``gate`` each of those gates once more with it as second detector (placed_gate)."""
    quantiles = np.quantile(traj.quality, np.linspace(0.05, 0.95, 19))
    targets = sorted({round(float(t), 2) for t in quantiles} | {NO_TARGET_DB})
    changes = sorted({0.0} | {round(float(c), 4) for c in np.quantile(traj.change, CHANGE_QUANTILES)})
    rules = [StopRule(max_steps=m, target_quality=t, min_gain=g, min_change=c, keep=k)
             for m, t, g, c, k in itertools.product(range(1, cap + 1), targets, MIN_GAINS, changes, KEEP_CHOICES)]
    if judged:
        rules += [StopRule(max_steps=m, target_quality=t, min_gain=NO_MIN_GAIN, keep=k, min_better=b)
                  for m, t, b, k in itertools.product(range(1, cap + 1), targets, MIN_BETTER, KEEP_CHOICES)]
    if traj.probabilities is None:
        return rules
    gates = [(g, None) for g in MIN_DETECT]
    if gate is not None:
        gates += [(g, placed) for g in MIN_DETECT if g > 0 and (placed := placed_gate(gate, traj, g)) is not None]
    return [replace(r, min_detect=g, gate=detector) for g, detector in gates for r in rules]


def gate_at(gate: Gate, threshold: float, min_detect: float) -> Gate:
    """``gate`` with its bias moved so that it reaches ``min_detect`` (the rule's threshold, which it shares with
    the largest probability) where it used to reach ``threshold``."""
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    return Gate(gate.weights, gate.bias + logit(min_detect) - logit(threshold))


def placed_gate(gate: Gate, traj: Trajectories, min_detect: float) -> Gate | None:
    """``gate`` as the second detector of a clean gate at ``min_detect``: opening for none of the clean recordings
    of ``traj`` (just above the highest of their scores; None without clean recordings, or if one scores ~1)."""
    clean = np.array([c == "clean" for c in traj.cases])
    if not clean.any():
        return None
    threshold = float(judge_scores(gate, traj.probabilities[clean]).max()) + GATE_MARGIN
    return gate_at(gate, threshold, min_detect) if threshold < 1 else None


def _score_chunk(groups: list[list[StopRule]], traj: Trajectories, step_cost: float, judge: Judge | None,
                 harm_weight: float) -> list[RuleScore]:
    """Scores of every rule of ``groups`` (each a list of rules with one ``_open_rule``), in order."""
    cases, memo = _cases(traj), {}
    return [s for group in groups for s in _score_alike(group, traj, cases, step_cost, judge, harm_weight, memo)]


def score_rules(rules: list[StopRule], traj: Trajectories, step_cost: float = 0.0, judge: Judge | None = None,
                harm_weight: float = 0.0, workers: int = 1, progress: bool = False) -> list[RuleScore]:
    """``score_rule`` for each of ``rules``, in order, on ``workers`` processes (``progress``: a bar on stderr).

    Rules that differ only in their clean gate or ``keep`` are walked once (``_open_rule``): a fit's candidates
    come in groups of 18 with --gate (9 gates, 2 ways to keep), 10 without, so a fit walks each recording that
    many times fewer (BENCHMARKS.md, "fit-stop's replay"). Why processes: the walks are plain Python, one core per process. Each worker gets contiguous
    chunks of the groups with its own copy of the trajectories; the scores are the same as in one process.
    Workers are spawned (not forked): the parent holds torch's thread pools, which a forked child must not touch.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    from tqdm import tqdm

    alike: dict[StopRule, list[int]] = {}  # _open_rule -> the positions of its rules in ``rules``
    for i, rule in enumerate(rules):
        alike.setdefault(_open_rule(rule), []).append(i)
    groups = [[rules[i] for i in where] for where in alike.values()]
    pooled = workers > 1 and len(rules) >= MIN_RULES_PER_WORKER * 2
    size = max(MIN_RULES_PER_WORKER, -(-len(rules) // (workers * 4))) if pooled else 500  # chunks: even finish
    chunks: list[list[list[StopRule]]] = [[]]
    filled = 0  # rules in the last chunk
    for group in groups:  # contiguous groups, about ``size`` rules a chunk
        if filled >= size:
            chunks.append([])
            filled = 0
        chunks[-1].append(group)
        filled += len(group)
    bar = tqdm(total=len(rules), desc="replaying rules", unit="rule", disable=not progress, file=sys.stderr)
    found: list[RuleScore] = []
    with bar:
        if not pooled:
            for chunk in chunks:
                found += _score_chunk(chunk, traj, step_cost, judge, harm_weight)
                bar.update(sum(map(len, chunk)))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(workers, len(chunks)),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                same = ([x] * len(chunks) for x in (traj, step_cost, judge, harm_weight))  # every chunk's others
                for part in pool.map(_score_chunk, chunks, *same):
                    found += part
                    bar.update(len(part))
    order = [i for where in alike.values() for i in where]  # the position in ``rules`` of each score found
    scores: list[RuleScore] = [None] * len(rules)  # type: ignore[list-item]
    for i, score in zip(order, found):
        scores[i] = score
    return scores


def fit_stop_rule(traj: Trajectories, cap: int, step_cost: float = 0.0, tolerance: float = 0.02,
                  judge: Judge | None = None, min_clean_pass: float = 1.0, harm_weight: float = 0.0,
                  workers: int = 1, progress: bool = False, gate: Gate | None = None) -> RuleScore:
    """The best-scoring candidate rule (with ``judge``: rules asking it compete too; with ``gate``: rules whose
    clean gate also reads it) among those that return
    at least ``min_clean_pass`` of the clean crops at 0 steps (or, if none does, those that return the most);
    among those within ``tolerance`` dB of it, the fewest steps. ``workers``: processes that replay the rules."""
    if cap < 1:
        raise ValueError(f"the step cap must be at least 1, got {cap}")
    if not 0 <= min_clean_pass <= 1:
        raise ValueError(f"the clean pass-through share must be in [0, 1], got {min_clean_pass}")
    if not harm_weight >= 0:
        raise ValueError(f"the harm weight must be 0 or more, got {harm_weight}")
    scores = score_rules(candidate_rules(traj, cap, judge is not None, gate), traj, step_cost, judge, harm_weight,
                         workers, progress)
    if "clean" in traj.cases:
        most = max(s.clean_pass for s in scores)
        scores = [s for s in scores if s.clean_pass >= min(min_clean_pass, most)]
    best = max(s.score for s in scores)
    near = [s for s in scores if s.score >= best - tolerance]
    return min(near, key=lambda s: (s.steps_run, -s.score))


def load_fit_model(checkpoint: str, precision: str):
    """(model, config.json, precision, folder): a checkpoint's float weights or a student's int8 programs."""
    from rar_edge.errors import RarEdgeError
    from rar_edge.train.checkpoint import checkpoint_dir, load_model

    folder = checkpoint_dir(checkpoint)
    model, config = load_model(folder)
    int8 = folder / "int8"
    if precision == "auto":
        precision = "int8" if int8.is_dir() else "fp32"
    if precision == "int8":
        if not int8.is_dir():
            raise RarEdgeError(f"{checkpoint} has no int8/ programs; fit its float weights with --precision fp32 "
                               "or pass a distilled student (rar-edge distill)")
        from rar_edge.quantize.qat import load_programs

        model = load_programs(int8, model)
    return model, config, precision, folder


@dataclass(frozen=True)
class HeadFit:
    """A judge or clean gate fitted on recordings, with how well it separates its two classes (ROC-AUC)."""

    head: Judge | Gate
    auc_fit: float  # on the examples it was fitted on
    auc_unseen: float  # fitted on the even-numbered images, scored on the odd ones: an honest estimate
    positive_share: float  # helpful steps (judge) or helpable inputs (gate)


def _fit_head(fit, x: np.ndarray, y: np.ndarray, half: np.ndarray) -> HeadFit:
    """``fit(x, y)`` on every example, and once on ``half`` of them to score it on the rest (nan when a half
    holds one class only)."""
    from .metrics import roc_auc

    head = fit(x, y)
    try:
        unseen = roc_auc(judge_scores(fit(x[half], y[half]), x[~half]), y[~half])
    except ValueError:
        unseen = float("nan")
    return HeadFit(head, roc_auc(judge_scores(head, x), y), unseen, float(y.mean()))


def fit_judge_on(traj: Trajectories) -> HeadFit:
    """Fit the judge on every step of ``traj``. Raises ValueError when all the steps helped or none did."""
    x, better = step_examples(traj.vectors, traj.psnr, traj.change)
    return _fit_head(fit_judge, x, better, (np.arange(len(x)) // traj.change.shape[1]) % 2 == 0)  # by image


def fit_gate_on(traj: Trajectories) -> HeadFit:
    """Fit the clean gate on every recorded input of ``traj``. Raises ValueError when the recordings hold no
    probabilities, or all inputs are helpable or none."""
    if traj.probabilities is None:
        raise ValueError("the recordings hold no degradation probabilities: nothing for a gate to read")
    x, helpable = gate_examples(traj.probabilities, traj.psnr, traj.psnr_in, np.array([c == "clean" for c in traj.cases]))
    return _fit_head(fit_gate, x, helpable, np.arange(len(x)) % 2 == 0)


class StopFit(NamedTuple):
    """What fit_from_photos found."""

    current: RuleScore  # the model's own rule, scored on the fit's trajectories
    fitted: RuleScore  # the best candidate
    traj: Trajectories  # every recording the fit scored
    judge: HeadFit | None  # the judge fitted alongside (None: not asked for, or nothing to tell apart)
    #: (current, fitted) scored on every dark original alone (None without dark originals): how each rule
    #: treats photos that are dark by nature, whatever share of them joined the fit.
    on_dark: tuple[RuleScore, RuleScore] | None = None
    gate: HeadFit | None = None  # the clean gate fitted alongside (None: not asked for, or nothing to tell apart)


def fit_from_photos(model, data: str, cap: int, crop: int = 256, max_images: int = 48, step_cost: float = 0.0,
                    seed: int = RECORD_SEED, judge: bool = False, min_clean_pass: float = 1.0,
                    syntheses: tuple[str, ...] = (DEFAULT_SYNTHESIS,), clean_crops: int = FIT_CLEAN_CROPS,
                    harm_weight: float = 0.0, dark_originals: float = 0.0, workers: int = 1,
                    progress: bool = False, gate: bool = False) -> StopFit:
    """The model's current rule scored and the fitted rule (with the trajectories and the fitted judge) on
    centre crops of ``data``, every degraded case made once by each of ``syntheses``.

    Why several syntheses: the rule and the judge read the assessor, whose outputs shift with the code that
    made a degradation (OpenCV's JPEG is not Pillow's); fitted on one formula they learn its quirks. The
    clean crops are the same under every synthesis, so they are recorded once.

    The clean pass-through is held on ``clean_crops`` crops of each photo: its centre crop and random ones
    (seeded). Why: centre crops hold a photo's subject, and the loop's quality target, fitted to pass them,
    let through fewer of the flatter random crops of unseen photos (sky, walls) that its assessor rates lower.

    With ``dark_originals`` > 0, each centre crop also comes darkened (scaled by a seeded factor in DARK_SCALE)
    and *taken as the original*, under every case and synthesis: photos that are dark by nature; that share of
    those recordings (drawn with a fixed generator; 1: all) joins the fit. Why: the model has learned the training
    photos' exposure, so on them its loop almost never harms, while unseen dark photos are brightened as if
    under-exposed (BENCHMARKS.md, "Where the shipped loop harms"); the fit can only weigh that where it sees it.
    The share is the prior: at 1 a dark photo is as likely dark by nature as under-exposed, and the fitted rule
    gives up most of its low-light gain. ``workers``: processes that replay the candidate rules (score_rules);
    ``progress``: bars on stderr for the recording and the replay.
    """
    if not syntheses:
        raise ValueError("fit on at least one synthesis")
    if clean_crops < 1:
        raise ValueError(f"clean_crops counts the centre crop: at least 1, got {clean_crops}")
    if not 0 <= dark_originals <= 1:
        raise ValueError(f"the share of dark originals must be in [0, 1], got {dark_originals}")
    from tqdm import tqdm

    folder = PhotoFolder(data)
    clean = folder.center_crops(crop)[:max_images]
    degraded_cases = tuple(c for c in CASES if c)
    per_photo = len(CASES) + len(degraded_cases) * (len(syntheses) - 1)  # recordings of one photo, all syntheses
    total = len(clean) * (per_photo * (2 if dark_originals > 0 else 1) + clean_crops - 1)
    bar = tqdm(total=total, desc="recording trajectories", unit="img", disable=not progress, file=sys.stderr)

    def every_case(crops: torch.Tensor, case_seed: int) -> list[Trajectories]:
        """``crops`` under every case of the first synthesis and every degraded case of the others."""
        return [record_trajectories(model, crops, cap, seed=case_seed, synthesis=name, bar=bar,
                                    cases=CASES if i == 0 else degraded_cases) for i, name in enumerate(syntheses)]

    parts = every_case(clean, seed)
    if clean_crops > 1:
        more = folder.random_crops((clean_crops - 1) * len(clean), crop, torch.Generator().manual_seed(seed))
        parts.append(record_trajectories(model, more, cap, seed=seed, cases=((),), bar=bar))
    if dark_originals > 0:  # seeds: any fixed ones (these, with the default seed 7, made BENCHMARKS.md's figures)
        low, high = DARK_SCALE
        scale = low + (high - low) * torch.rand(len(clean), generator=torch.Generator().manual_seed(seed - 2))
        dark = concat_trajectories(every_case(clean * scale[:, None, None, None], seed + 2))
        parts.append(dark if dark_originals == 1 else subset(dark, np.random.default_rng(0).random(len(dark.cases))
                                                              < dark_originals))
    bar.close()
    traj = concat_trajectories(parts)
    rule_now = model.stop_rule(max_steps=min(model.config.max_steps, cap))
    current = score_rule(rule_now, traj, step_cost, model.config.judge_head, harm_weight)
    try:
        fitted_judge = fit_judge_on(traj) if judge else None
    except ValueError as e:  # e.g. every recorded step helped: nothing to tell apart
        logging.getLogger("rar_edge").warning("no judge fitted: %s", e)
        fitted_judge = None
    new_judge = fitted_judge.head if fitted_judge else None
    fitted_gate = None
    if gate:
        try:
            fitted_gate = fit_gate_on(traj)
        except ValueError as e:  # e.g. no probabilities, or every input helpable
            logging.getLogger("rar_edge").warning("no clean gate fitted: %s", e)
    fitted = fit_stop_rule(traj, cap, step_cost, judge=new_judge, min_clean_pass=min_clean_pass,
                           harm_weight=harm_weight, workers=workers, progress=progress,
                           gate=fitted_gate.head if fitted_gate else None)
    on_dark = None
    if dark_originals > 0:
        on_dark = (score_rule(rule_now, dark, step_cost, model.config.judge_head, harm_weight),
                   score_rule(fitted.rule, dark, step_cost, new_judge, harm_weight))
    return StopFit(current, fitted, traj, fitted_judge, on_dark, fitted_gate)


def format_fit(current: RuleScore, fitted: RuleScore, on_dark: tuple[RuleScore, RuleScore] | None = None) -> str:
    """A table: both rules' thresholds, mean PSNR, mean steps, clean pass-through, harm and gain per case; with
    ``on_dark`` (StopFit.on_dark), two more rows: the same rules on the dark originals alone."""
    cases = list(fitted.per_case)
    widths = [max(6, len(c)) for c in cases]
    lines = [f"{'rule':<12} {'max':>4} {'target':>7} {'min_gain':>8} {'min_chg':>7} {'keep':>4} {'min_better':>10} "
             f"{'min_detect':>10} "
             f"{'PSNR out':>9} {'steps':>6} {'clean 0':>7} {'harm':>6}  "
             + " ".join(f"{c:>{w}}" for c, w in zip(cases, widths))]
    rows = [("current", current), ("fitted", fitted)]
    if on_dark is not None:
        rows += [("current dark", on_dark[0]), ("fitted dark", on_dark[1])]
    for label, s in rows:
        r = s.rule
        target = "none" if r.target_quality >= NO_TARGET_DB else f"{r.target_quality:.2f}"
        lines.append(f"{label:<12} {r.max_steps:>4} {target:>7} {r.min_gain:>8.2f} {r.min_change:>7.4f} {r.keep:>4} "
                     f"{r.min_better:>10.2f} {r.min_detect:>8.2f}{'g' if r.gate and r.min_detect > 0 else ' ':>2} "
                     f"{s.psnr_out:>9.2f} "
                     f"{s.steps_run:>6.2f} {s.clean_pass:>7.0%} {s.harm:>6.3f}  "
                     + " ".join(f"{s.per_case.get(c, float('nan')):>+{w}.2f}" for c, w in zip(cases, widths)))
    lines.append(f"(gain in dB per case; 'clean' is the loss against a perfect {PSNR_CAP_DB:.0f} dB; "
                 "'clean 0': clean crops returned at 0 steps; 'harm': mean dB of the degraded images below their "
                 "input; 'g': the clean gate also opens on its learned detector"
                 + ("; 'dark' rows: the same rules on the dark originals alone, each against its darkened original"
                    if on_dark is not None else "") + ")")
    return "\n".join(lines)


def fit_record(current: RuleScore, fitted: RuleScore, **how) -> dict:
    """What ``--write`` stores in the checkpoint's config.json next to the new defaults."""
    def row(s: RuleScore) -> dict:
        return {"rule": s.rule.to_dict(), "psnr_out": round(s.psnr_out, 3), "steps_run": round(s.steps_run, 3),
                "clean_pass": round(s.clean_pass, 4), "harm": round(s.harm, 4),
                "gain_per_case": {k: round(v, 3) for k, v in s.per_case.items()}}

    return {"how": how, "before": row(current), "after": row(fitted)}
