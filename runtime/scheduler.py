"""The adaptive loop under a latency budget: DESIGN.md's stop rule, plus "can the budget pay for one more?".

Before each step the scheduler predicts the cost of one more restore + assess plus the final decode (from
the device profile for this size, replaced by what this process has measured once it has) and stops when
the time left cannot pay for it. Within a call, predictions are scaled up by how much the call's last pass
exceeded its prediction (never down), so a cost model fitted on other sizes cannot overrun a large photo
step after step. If the budget cannot even pay for encode + assess + decode, the model is
not run at all: the input comes back unchanged with 0 steps and ``stop_reason == "budget"``. When the
stop rule keeps step 0, the input comes back unchanged too, without a decode (rar_edge.loop, pass-through).
The budget is wall time of the whole ``restore()`` call from its entry (waiting for the Restorer's lock,
conversion and tiling included), file I/O excluded. The runtime's own work (``OVERHEAD``) is predicted per
pass over the image (the first pass, then one per step), so it grows with the image and with the steps.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from rar_edge.loop import Judge, LoopTrace, StopRule, assessment_vector

#: Pseudo entry point timed by the runtime: tiling, blending and array work outside the model calls,
#: per tile and pass (the first pass, then each step).
OVERHEAD = "overhead"


def overhead_per_pass(overhead_ms: float, tiles: int, steps_run: int) -> float:
    """A call's measured overhead as ``OVERHEAD`` is predicted: per tile and pass (the first, then one per step)."""
    return overhead_ms / (tiles * (1 + steps_run))


class CostModel:
    """Predicted milliseconds per entry point for one tile: measured here if possible, else the profile.

    The prediction is the 90th percentile of this process's last ``window`` calls (the maximum while
    fewer than 5 exist): a budget is a promise, so the estimate leans on the slow side.
    """

    def __init__(self, profile_ms: dict[str, float] | None = None, window: int = 20) -> None:
        self.profile_ms = dict(profile_ms or {})
        self.samples: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def record(self, entry: str, ms: float) -> None:
        self.samples[entry].append(ms)

    def predict(self, entry: str) -> float:
        seen = sorted(self.samples.get(entry, ()))
        if len(seen) >= 5:
            return seen[min(len(seen) - 1, int(0.9 * len(seen)))]
        if seen:
            return seen[-1]
        return self.profile_ms.get(entry, 0.0)

    def known(self) -> bool:
        return all(self.predict(e) > 0 for e in ("encode", "assess", "restore", "decode"))


class LoopOps(Protocol):
    """One image's model calls (over all its tiles). ``assess`` returns (quality, probabilities, cond)."""

    def encode(self) -> Any: ...
    def assess(self, state: Any) -> tuple[float, list[float], Any]: ...
    def restore(self, state: Any, cond: Any) -> Any: ...
    def change(self, state: Any, proposed: Any) -> float: ...  # |proposed - state| / |state| over the image
    def decode(self, state: Any) -> Any: ...


@dataclass
class LoopOutcome:
    image: Any  # what ops.decode returned; None when the input comes back as is (skipped, or step 0 kept)
    steps: int = 0  # the step whose latent was decoded (StopRule.keep)
    steps_run: int = 0  # steps taken (a step refused as too small is not counted)
    qualities: list[float] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # of the input's assessment
    stop_reason: str = "budget"
    model_skipped: bool = False
    needed_ms: float | None = None  # skipped for the budget: the time spent so far and what encode, assess and
    #                                 decode were predicted to take (the smallest budget that would run them)


def adaptive_loop(ops: LoopOps, rule: StopRule, budget_ms: float | None, predict: Callable[[str], float],
                  clock: Callable[[], float] = time.perf_counter, start: float | None = None,
                  judge: Judge | None = None) -> LoopOutcome:
    """Run the loop; ``predict(entry)`` is the whole image's cost in ms of one call of ``entry`` (for
    ``OVERHEAD``: of one pass). ``start``: when the budget's clock started (default: now). ``judge``: the
    bundle's (rar_edge.loop.Judge), asked after every step when ``rule.min_better > 0``."""
    start = clock() if start is None else start

    # This call's measured/predicted ratio of its last pass, at least 1: a cost model fitted on other
    # sizes (a warm-up's single tile, small photos) under-predicts a photo of many tiles, and the first
    # pass (encode + assess) already shows by how much. The decode is scaled by the same ratio.
    scale = 1.0

    def left_ms() -> float:
        return budget_ms - (clock() - start) * 1000.0

    def affordable(*entries: str) -> bool:
        return budget_ms is None or scale * sum(predict(e) for e in entries) <= left_ms()

    def measured(since: float, *entries: str) -> None:
        nonlocal scale
        predicted = sum(predict(e) for e in entries)
        if predicted > 0:
            scale = max(1.0, (clock() - since) * 1000.0 / predicted)

    # The end of every call: the decode and its own pass of blending and conversion (OVERHEAD), reserved
    # before each step; without its pass, a photo of many tiles overran its budget by that pass (up to 64 ms
    # of 2000 for 15 tiles, BENCHMARKS.md "Budgets over a mixed sequence").
    finish = ("decode", OVERHEAD)
    first = ("encode", "assess", OVERHEAD, *finish)
    if not affordable(*first):
        # the time already spent (a wait, the tiling, the exposure stage) counts against the budget too
        needed = budget_ms - left_ms() + scale * sum(predict(e) for e in first)
        return LoopOutcome(image=None, model_skipped=True, needed_ms=needed)
    began = clock()
    state = ops.encode()
    quality, probs, cond = ops.assess(state)
    measured(began, "encode", "assess", OVERHEAD)
    judged = judge is not None and rule.min_better > 0

    def vector(q: float, p: list[float], c: Any) -> list[float] | None:
        """What the judge reads (the conditioning pooled over the image's tiles); None when it is not asked."""
        return assessment_vector(q, p, np.ravel(c)) if judged else None

    trace = LoopTrace(rule, quality, judge, vector(quality, probs, cond), probs)  # the stop sequence: rar_edge.loop
    # Only the latents the rule can keep are held (memory follows the image): the best-assessed one
    # (keep="best") and the one before the last where a stop can undo the last step (keep="last": no_gain;
    # with a judge: worse). Unused, each stays the input's latent.
    best, best_step = state, 0
    previous, previous_step = state, 0
    undoable = rule.keep == "last" or trace.judge is not None
    while trace.running:
        if not affordable("restore", "assess", OVERHEAD, *finish):
            trace.stop("budget")
            break
        began = clock()
        proposed = ops.restore(state, cond)
        if not trace.propose(ops.change(state, proposed) if trace.needs_change() else None):
            break  # too small: the step is not taken
        if undoable:
            previous, previous_step = state, trace.steps_run
        state = proposed
        quality, probs_now, cond = ops.assess(state)
        measured(began, "restore", "assess", OVERHEAD)
        trace.taken(quality, vector(quality, probs_now, cond))
        if rule.keep == "best" and quality > trace.qualities[best_step]:  # ties keep the earlier latent
            best, best_step = state, trace.steps_run
    kept = trace.kept
    latent = state if kept == trace.steps_run else best if kept == best_step else previous
    assert kept in (trace.steps_run, best_step, previous_step), "the rule kept a latent the loop did not hold"
    # Pass-through (rar_edge.loop): keeping step 0 returns the input, so no decode is run.
    image = ops.decode(latent) if kept > 0 else None
    return LoopOutcome(image=image, steps=kept, steps_run=trace.steps_run, qualities=trace.qualities,
                       probabilities=list(probs), stop_reason=str(trace.reason))
