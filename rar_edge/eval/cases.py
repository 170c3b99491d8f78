"""The fixed evaluation cases: each single degradation, a few composites, and clean input."""

from __future__ import annotations

import torch

from rar_edge import DEGRADATIONS, FOREIGN_SYNTHESIS
from rar_edge.data.degrade import DEFAULT_SYNTHESIS, DegradedBatch, apply_degradations

COMPOSITES: tuple[tuple[str, ...], ...] = (
    ("blur", "noise"), ("noise", "jpeg"), ("rain", "haze"), ("blur", "noise", "jpeg"),
)
CASES: tuple[tuple[str, ...], ...] = tuple((d,) for d in DEGRADATIONS) + COMPOSITES + ((),)


def case_name(case: tuple[str, ...]) -> str:
    return "+".join(case) if case else "clean"


def cases_within(degradations: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The cases made only of ``degradations`` (and clean): what a model trained on them is validated on."""
    return tuple(case for case in CASES if set(case) <= set(degradations))


def make_cases(clean: torch.Tensor, seed: int = 0, severity: tuple[float, float] = (0.2, 0.9),
               cases: tuple[tuple[str, ...], ...] = CASES,
               synthesis: str = DEFAULT_SYNTHESIS) -> tuple[DegradedBatch, list[str]]:
    """Every image of ``clean`` (N,3,H,W) under every case, severities drawn in ``severity`` from ``seed``,
    each type made by a model of ``synthesis`` drawn at random (``batch.models`` says which); the foreign
    test synthesis (rar_edge/eval/foreign.py) draws its own parameters (severities are reported as 0).

    Returns the batch (N * len(cases), case-major) and the case name of each row.
    """
    n = clean.shape[0]
    gen = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n * len(cases), len(DEGRADATIONS))
    for ci, case in enumerate(cases):
        for name in case:
            labels[ci * n : (ci + 1) * n, DEGRADATIONS.index(name)] = 1
    lo, hi = severity
    sev = (lo + (hi - lo) * torch.rand(labels.shape, generator=gen)) * labels
    if synthesis == FOREIGN_SYNTHESIS:
        from .foreign import apply_foreign

        return apply_foreign(clean.repeat(len(cases), 1, 1, 1), labels, seed), _names(cases, n)
    dev_gen = torch.Generator(device=clean.device).manual_seed(seed)
    batch = apply_degradations(clean.repeat(len(cases), 1, 1, 1), labels, sev, dev_gen, synthesis)
    return batch, _names(cases, n)


def _names(cases: tuple[tuple[str, ...], ...], n: int) -> list[str]:
    return [case_name(case) for case in cases for _ in range(n)]
