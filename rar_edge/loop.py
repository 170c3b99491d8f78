"""The stop rule of RAR's restore–assess loop, in plain Python.

Torch-free on purpose: the torch reference loop (``rar_edge.model.rar``) and the on-device
runtime apply the same rule, so both stop at the same step for the same assessments.

Pass-through: when the rule keeps step 0 (no step was judged worth taking), every loop returns the
input unchanged instead of decoding its latent. The autoencoder's round trip can only cost detail
there (0.2–0.3 dB on blurred and JPEG crops; docs/model.md), a clean photo comes back bit-exact, and
the decode's time is saved. The torch loop, the runtime and ``rar-edge fit-stop`` all apply it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import ClassVar, Sequence

#: What the assessor's quality score means; written into checkpoints and manifests.
QUALITY_MEANING = (
    "predicted PSNR in dB of the decoded image against the clean original "
    "(training targets are capped at 40 dB: above that an image counts as clean)"
)
QUALITY_CAP_DB = 40.0


#: Why a loop stopped (``stop_reason``), in words for people: what ``rar-edge restore`` prints after the code.
STOP_REASONS = {
    "clean": "no degradation reached the clean gate's threshold",
    "target": "the assessed quality reached the target",
    "no_gain": "the last step gained too little",
    "small_step": "the next step was too small to take",
    "max_steps": "the step cap",
    "worse": "the next step was judged worse and undone",
    "budget": "the time budget",
}

#: How the loop picks the latent it decodes (StopRule.keep).
KEEP_CHOICES = ("best", "last")

#: What the judge reads, in order (Judge.features): recorded in checkpoints and manifests next to its weights.
JUDGE_FEATURES = (
    "the previous latent's assessment (quality dB, degradation probabilities, conditioning embedding), "
    "the new latent's assessment (the same), log(step size + 1e-6)"
)
#: Added to the step size before its log (a step of 0 stays finite).
CHANGE_EPS = 1e-6


#: What the clean gate's detector reads (Gate.FEATURES): recorded in checkpoints and manifests next to its weights.
GATE_FEATURES = "the input's degradation probabilities, in the model's order of degradations"


def is_number(x) -> bool:
    """A real number (Python's or numpy's), not a bool or a string: what the rule's fields and budgets take."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def sigmoid(s: float) -> float:
    """1 / (1 + e^-s), without overflow for large |s| (the logistic heads' and the JPEG grid's)."""
    return 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))


@dataclass(frozen=True)
class LogisticHead:
    """A logistic head's weights and bias (the judge's and the clean gate's), stored as
    ``{"features": FEATURES, "weights": [...], "bias": b}`` in manifests."""

    weights: tuple[float, ...]
    bias: float
    FEATURES: ClassVar[str] = ""  # what the weights read, in order

    def probability(self, x: Sequence[float], what: str) -> float:
        """sigmoid(bias + weights . x); ``what`` names the features in the error for a wrong count."""
        if len(x) != len(self.weights):
            raise ValueError(f"the {type(self).__name__.lower()} has {len(self.weights)} weights but got {len(x)} "
                             f"{what}: its model's assessor has another size; refit it with rar-edge fit-stop")
        return sigmoid(self.bias + math.fsum(w * float(v) for w, v in zip(self.weights, x)))

    def to_dict(self) -> dict:
        return {"features": self.FEATURES, "weights": list(self.weights), "bias": self.bias}

    def flat(self) -> list[float]:
        """The weights, then the bias: how config.json stores the head."""
        return [*self.weights, self.bias]

    @classmethod
    def from_flat(cls, numbers):
        """The head ``flat`` stored (None for an empty list: no head)."""
        return cls(tuple(float(w) for w in numbers[:-1]), float(numbers[-1])) if len(numbers) else None

    @classmethod
    def from_dict(cls, d: dict | None):
        """The head stored by ``to_dict`` (None for models and bundles without one)."""
        if not d:
            return None
        return cls(tuple(float(w) for w in d["weights"]), float(d["bias"]))


def assessment_vector(quality: float, probabilities: Sequence[float], cond: Sequence[float]) -> list[float]:
    """One assessment as the judge reads it: [quality, *probabilities, *conditioning] (cond pooled per image)."""
    return [float(quality), *map(float, probabilities), *map(float, cond)]


@dataclass(frozen=True)
class Judge(LogisticHead):
    """RAR's question after every step, "is the new latent better than the previous one?", as a probability.

    A logistic head on what the assessor already returns for both latents (quality, degradation
    probabilities, conditioning embedding) and the step's size: no fifth network and no extra model call
    per step, and it runs torch-free wherever the loop runs. Its weights are fitted on a model's own
    trajectories by ``rar-edge fit-stop`` (rar_edge.eval.judge) and travel in config.json and manifests.
    """

    FEATURES: ClassVar[str] = JUDGE_FEATURES  # weights: one per feature, 2 * len(assessment_vector) + 1

    def p_better(self, before: Sequence[float], after: Sequence[float], change: float) -> float:
        """Probability that the step from ``before`` to ``after`` (assessment vectors) raised the true PSNR."""
        return self.probability((*before, *after, math.log(max(float(change), 0.0) + CHANGE_EPS)), "features")


@dataclass(frozen=True)
class Gate(LogisticHead):
    """The clean gate's second detector: the probability that restore steps can help an input, from the
    input's degradation probabilities. The gate opens where the largest probability reaches ``min_detect``
    *or* this one does.

    Why: the largest probability treats every type alike and must stay above what clean photos reach for the
    most trigger-happy type (rain, for the default bundle's assessor), so mild noise that is detected at 0.4–0.7
    stays out although steps gain 3–4 dB on it. A logistic head weighs each type by what the model's own steps
    do for it (and blur's probability against a step); ``rar-edge fit-stop --gate`` fits it on the model's
    trajectories (rar_edge.eval.judge.fit_gate) and sets its bias so that it opens for no clean crop of the
    fit (fit_stop.gate_at). Alone, a linear head cannot say "any one type is high" (BENCHMARKS.md, "A learned
    clean gate"): it only adds to the largest probability's openings.
    """

    FEATURES: ClassVar[str] = GATE_FEATURES  # weights: one per degradation probability

    def p_step(self, probabilities: Sequence[float]) -> float:
        """Probability that restore steps can improve an input with these degradation probabilities."""
        return self.probability(tuple(probabilities), "probabilities")


@dataclass(frozen=True)
class StopRule:
    """When the loop stops stepping, and which latent it decodes.

    Attributes:
        max_steps: the most restore steps the loop may run.
        target_quality: stop once the assessed quality (dB) reaches this.
        min_gain: stop once a step's assessed gain (dB) falls below this.
        min_change: stop once the restorer proposes a step that moves the latent by less than this
            fraction of its norm (``|z_next - z| / |z|`` over the whole image); that step is not taken.
            0 turns it off. The restorer's own step size says "nothing left to fix" better than a weak
            assessor does (docs/model.md, "Stopping on the step size").
        keep: ``"best"`` decodes the best-assessed latent (DESIGN.md's quality verification); ``"last"``
            decodes the latent of the last step taken, undoing a step that stopped the loop on ``no_gain``.
            ``rar-edge fit-stop`` picks the one that does better for a model.
        min_better: with a ``Judge``, stop once it gives a step a probability of being better below this,
            and return the latent before that step (stop reason ``worse``): RAR's own stop rule. 0 turns it off.
        min_detect: take a first step only when the assessor gives some degradation at least this
            probability (or, with a ``gate``, the gate gives steps at least this probability of helping);
            otherwise return the input as it came (stop reason ``clean``). The degradation
            detector tells a clean photo from a degraded one better than a quality target does: a target low
            enough to pass clean photos also passes most degraded ones. 0 turns it off.
        gate: the clean gate's fitted second detector (``Gate``), or None: the largest probability alone.
    """

    max_steps: int = 4
    target_quality: float = 38.0
    min_gain: float = 0.1
    min_change: float = 0.0
    keep: str = "best"
    min_better: float = 0.0
    min_detect: float = 0.0
    gate: Gate | None = None

    def __post_init__(self) -> None:
        # Types first: a string or a float step count would fail deep in the loop, or round silently.
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, numbers.Integral):
            raise ValueError(f"max_steps must be a whole number of steps, got {self.max_steps!r}")
        for name in ("target_quality", "min_gain", "min_change", "min_better", "min_detect"):
            value = getattr(self, name)
            if not is_number(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        for name in ("target_quality", "min_gain"):  # NaN compares false: the rule would never stop on it
            if math.isnan(float(getattr(self, name))):
                raise ValueError(f"{name} must be a number of dB, got nan")
        if not self.min_change >= 0:
            raise ValueError(f"min_change must be >= 0, got {self.min_change}")
        if not 0 <= self.min_better < 1:
            raise ValueError(f"min_better must be a probability in [0, 1), got {self.min_better}")
        if not 0 <= self.min_detect < 1:
            raise ValueError(f"min_detect must be a probability in [0, 1), got {self.min_detect}")
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {self.keep!r}")
        if self.gate is not None and not isinstance(self.gate, Gate):
            raise ValueError(f"gate must be a rar_edge.loop.Gate or None, got {type(self.gate).__name__}; "
                             "StopRule.from_dict reads one stored as numbers")

    def to_dict(self) -> dict:
        """The rule as JSON holds it (config.json, reports): its gate as weights then bias ([] without one)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["gate"] = self.gate.flat() if self.gate else []
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StopRule":
        """The rule ``to_dict`` stored (fields it lacks take their defaults)."""
        return cls(**{**d, "gate": Gate.from_flat(d.get("gate") or [])})

    def reason_to_stop(self, qualities: list[float]) -> str | None:
        """Why to stop before another step, given the qualities assessed so far (None: step on).

        ``qualities[0]`` is the input's assessment, ``qualities[k]`` the assessment after step k.
        """
        steps_done = len(qualities) - 1
        if qualities[-1] >= self.target_quality:
            return "target"
        if steps_done >= 1 and qualities[-1] - qualities[-2] < self.min_gain:
            return "no_gain"
        if steps_done >= self.max_steps:
            return "max_steps"
        return None

    def nothing_detected(self, probabilities: Sequence[float]) -> bool:
        """Whether the input's degradation ``probabilities`` leave the clean gate shut (stop reason ``clean``):
        the largest of them below ``min_detect``, and so is the ``gate``'s probability of a helpful step."""
        if self.min_detect <= 0 or max(map(float, probabilities), default=0.0) >= self.min_detect:
            return False
        return self.gate is None or self.gate.p_step(probabilities) < self.min_detect

    def step_too_small(self, change: float) -> bool:
        """Whether a proposed step of relative size ``change`` ends the loop (stop reason ``small_step``)."""
        return change < self.min_change

    def returned_index(self, qualities: list[float], reason: str | None) -> int:
        """Index into ``qualities`` of the latent the loop decodes, once it stopped for ``reason``."""
        if reason == "worse":  # the judge said the last step made it worse: the latent before it
            return len(qualities) - 2
        if self.keep == "best":
            return self.best_index(qualities)
        last = len(qualities) - 1
        return last - 1 if reason == "no_gain" else last

    @staticmethod
    def best_index(qualities: list[float]) -> int:
        """Index of the best-assessed latent (the earliest one on ties)."""
        return max(range(len(qualities)), key=lambda i: (qualities[i], -i))


class LoopTrace:
    """One image's way through the loop: the one implementation of the stop sequence and its bookkeeping.

    The torch loop (a batch of traces), the runtime's scheduler and ``rar-edge fit-stop``'s replay all
    drive their images through it, so they take the same steps, stop for the same reason and keep the
    same latent for the same assessments::

        trace = LoopTrace(rule, quality(z0), judge, assessment_vector(*assess(z0)), probabilities(z0))
        while trace.running:
            proposed = restore(z)
            if not trace.propose(change(z, proposed)):  # a step too small is not taken
                break
            z = proposed
            trace.taken(quality(z), assessment_vector(*assess(z)))
        kept = trace.kept  # index of the latent to decode (0: pass-through, the input as it came)

    The assessment vectors are read only when the rule asks the judge (``rule.min_better > 0`` and a
    judge given); callers may pass None otherwise. The input's degradation probabilities are read only when
    the rule has a ``min_detect``. A caller may end the walk for its own reason first (the runtime's budget:
    ``stop("budget")``).
    """

    def __init__(self, rule: StopRule, quality: float, judge: Judge | None = None,
                 assessment: Sequence[float] | None = None, probabilities: Sequence[float] | None = None) -> None:
        self.rule = rule
        self.judge = judge if rule.min_better > 0 else None
        if self.judge is not None and assessment is None:
            raise ValueError("a rule with min_better > 0 and a judge needs each latent's assessment vector")
        self.qualities = [float(quality)]
        self.better: list[float] = []  # the judge's probability for each step taken
        self._last = assessment
        self._change = 0.0
        if rule.min_detect > 0 and probabilities is None:
            raise ValueError("a rule with min_detect > 0 needs the input's degradation probabilities")
        self.reason: str | None = ("clean" if rule.nothing_detected(probabilities)
                                   else rule.reason_to_stop(self.qualities))

    @property
    def running(self) -> bool:
        """Whether the rule asks for another step."""
        return self.reason is None

    @property
    def steps_run(self) -> int:
        return len(self.qualities) - 1

    def needs_change(self) -> bool:
        """Whether ``propose`` reads the step's size (callers may skip computing it otherwise)."""
        return self.rule.min_change > 0 or self.judge is not None

    def propose(self, change: float | None) -> bool:
        """A step of relative size ``change`` (|z_next - z| / |z|) was proposed: True if it is taken; False
        ends the walk (``small_step``) with the step refused."""
        if self.reason is not None:
            raise RuntimeError("the loop has stopped: no step can be proposed")
        if self.needs_change():
            self._change = float(change)
            if self.rule.step_too_small(self._change):
                self.reason = "small_step"
                return False
        return True

    def taken(self, quality: float, assessment: Sequence[float] | None = None) -> None:
        """The proposed step was taken and its latent assessed at ``quality`` (and ``assessment``, the
        vector the judge reads); the judge's "worse" comes before the rule's other reasons."""
        self.qualities.append(float(quality))
        if self.judge is not None:
            if assessment is None:
                raise ValueError("this loop asks its judge: pass the new latent's assessment vector")
            p = self.judge.p_better(self._last, assessment, self._change)
            self.better.append(p)
            self._last = assessment
            if p < self.rule.min_better:
                self.reason = "worse"
                return
        self.reason = self.rule.reason_to_stop(self.qualities)

    def stop(self, reason: str) -> None:
        """End the walk for a reason of the caller's (e.g. ``"budget"``); a stopped walk keeps its reason."""
        if self.reason is None:
            self.reason = reason

    @property
    def kept(self) -> int:
        """Index of the latent the loop decodes (``StopRule.returned_index``); 0 means the input as is."""
        return self.rule.returned_index(self.qualities, self.reason)
