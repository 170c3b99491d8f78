"""Fitting the loop's judge (rar_edge.loop.Judge): "is the new latent better than the previous one?".

RAR's released loop asks its assessor this after every round and, on "no", returns the previous latent.
Here the question is answered by a logistic head on what the assessor already returns for both latents
(quality, degradation probabilities, conditioning embedding) and the step's size, fitted to a model's own
trajectories: every step of every recorded image is one example, labelled "better" when the true PSNR of
the decode rose by more than ``MARGIN_DB``. The fit is L2-regularised logistic regression on standardised
features (Newton's method: 79 features for rar-edge-s, so it takes milliseconds); the standardisation is
folded into the stored weights, so the loop evaluates one dot product per step.

The clean gate's detector (rar_edge.loop.Gate) is fitted the same way on the inputs alone: each recorded
degraded input is one example, labelled "helpable" when some decode within the step cap beats it by more than
``GATE_MARGIN_DB``; clean inputs never are.
"""

from __future__ import annotations

import numpy as np

from rar_edge.loop import CHANGE_EPS, Gate, Judge

#: A step counts as "better" when the true PSNR rose by more than this (dB): a step that changes nothing
#: measurable is not worth its time.
MARGIN_DB = 0.05
#: An input counts as one the steps can help when its best decode within the cap beats it by more than this
#: (dB): less is within what the autoencoder's round trip and the crop's content move anyway.
GATE_MARGIN_DB = 0.3


def step_examples(vectors: np.ndarray, psnr: np.ndarray, change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (M, 2F+1), better (M,)) of every step of trajectories: ``vectors`` (N, K+1, F) assessment
    vectors, ``psnr`` (N, K+1) true PSNR, ``change`` (N, K) step sizes; M = N * K."""
    before, after = vectors[:, :-1], vectors[:, 1:]
    logc = np.log(np.maximum(change, 0.0) + CHANGE_EPS)[..., None]
    x = np.concatenate([before, after, logc], axis=2).reshape(-1, 2 * vectors.shape[2] + 1)
    better = (psnr[:, 1:] - psnr[:, :-1] > MARGIN_DB).reshape(-1)
    return x.astype(np.float64), better


def fit_judge(x: np.ndarray, better: np.ndarray, l2: float = 1.0, iterations: int = 30) -> Judge:
    """L2-regularised logistic regression of ``better`` on ``x`` (Newton's method), as a Judge.

    ``l2`` is the penalty on the standardised weights (the bias is not penalised). Raises ValueError when
    the examples hold only one class: nothing can be learned from them.
    """
    better = np.asarray(better, dtype=bool)
    if better.all() or not better.any():
        raise ValueError(f"the trajectories hold only {'helpful' if better.all() else 'harmful'} steps: "
                         "record more images or more cases before fitting a judge")
    return Judge(*fit_logistic(x, better, l2, iterations))


def gate_examples(probabilities: np.ndarray, psnr: np.ndarray, psnr_in: np.ndarray,
                  clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), helpable (N,)) of recorded inputs: ``probabilities`` (N, D) their degradation
    probabilities, ``psnr`` (N, K+1) the true PSNR after 0..K steps, ``psnr_in`` (N,) the input's, ``clean``
    (N,) which inputs are clean originals (never helpable: a step can only move them)."""
    helpable = (psnr[:, 1:].max(1) - psnr_in > GATE_MARGIN_DB) & ~np.asarray(clean, dtype=bool)
    return np.asarray(probabilities, dtype=np.float64), helpable


def fit_gate(x: np.ndarray, helpable: np.ndarray, l2: float = 1.0, iterations: int = 30) -> Gate:
    """The clean gate's detector: L2-regularised logistic regression of ``helpable`` on ``x``, as fit_judge.
    Raises ValueError when the inputs hold only one class."""
    helpable = np.asarray(helpable, dtype=bool)
    if helpable.all():
        raise ValueError("every recorded input is helped by steps: record clean crops too before fitting a gate")
    if not helpable.any():
        raise ValueError(f"no recorded input is helped by steps (by more than {GATE_MARGIN_DB} dB): this model's "
                         "steps have nothing for a gate to let in yet")
    return Gate(*fit_logistic(x, helpable, l2, iterations))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int) -> tuple[tuple[float, ...], float]:
    """(weights, bias) of L2-regularised logistic regression of boolean ``y`` on ``x``, in x's own units."""
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)  # constant features get weight 0 through the penalty
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        w = w - np.linalg.solve(hess, grad)
    weights = w[:-1] / std
    bias = float(w[-1] - weights @ mean)
    return tuple(float(v) for v in weights), bias


def judge_scores(judge: Judge | Gate, x: np.ndarray) -> np.ndarray:
    """The judge's (or gate's) probability for each example row of ``x``: ``Judge.p_better`` and
    ``Gate.p_step`` vectorised for evaluation (tests/test_judge.py checks that they agree)."""
    s = judge.bias + x @ np.asarray(judge.weights)
    return 1.0 / (1.0 + np.exp(-np.clip(s, -30, 30)))
