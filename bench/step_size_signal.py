"""Does the restorer's step size tell a helpful step from a harmful one better than the assessor does?

    python bench/step_size_signal.py --checkpoint CKPT --data photos/train [--images 12] [--crop 256]

The measurement behind StopRule.min_change (docs/model.md, "Stopping on the step size"): centre crops of
the photos under every evaluation case, one restore step each (float weights). Per case: the decoded
PSNR before the step, the step's true gain, its relative size |z1 - z0| / |z0| and the assessor's change
of score; then how well the step size and the assessor's change rank the true gains (Spearman) and
separate helpful from harmful steps (ROC-AUC).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.cases import make_cases
from rar_edge.eval.metrics import psnr, roc_auc, srcc
from rar_edge.model.rar import step_change
from rar_edge.train.checkpoint import load_model


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    model, _ = load_model(a.checkpoint)
    batch, names = make_cases(PhotoFolder(a.data).center_crops(a.crop)[: a.images], seed=a.seed)
    before, gain, size, dq = [], [], [], []
    for i in range(0, len(names), 8):
        deg, clean = batch.degraded[i : i + 8], batch.clean[i : i + 8].numpy()
        z0 = model.encode(deg)
        q0, _, cond = model.assess(z0)
        z1 = model.restore(z0, cond)
        q1, _, _ = model.assess(z1)
        p0 = [min(psnr(d, c), 60.0) for d, c in zip(model.decode(z0).clamp(0, 1).numpy(), clean)]
        p1 = [min(psnr(d, c), 60.0) for d, c in zip(model.decode(z1).clamp(0, 1).numpy(), clean)]
        before += p0
        gain += [b - a_ for a_, b in zip(p0, p1)]
        size += step_change(z0, z1).tolist()
        dq += (q1 - q0).tolist()
    before, gain, size, dq, cases = map(np.array, (before, gain, size, dq, names))
    print("| case | PSNR before (dB) | true gain of the step (dB) | step size | assessed gain (dB) |")
    print("|---|---|---|---|---|")
    for c in dict.fromkeys(names):
        m = cases == c
        print(f"| {c} | {before[m].mean():.2f} | {gain[m].mean():+.2f} | {size[m].mean():.4f} | {dq[m].mean():+.2f} |")
    helps = (gain > 0).astype(int)
    print(f"Spearman with the true gain: step size {srcc(size, gain):.2f}, assessed gain {srcc(dq, gain):.2f}")
    print(f"ROC-AUC, step helps: step size {roc_auc(size, helps):.2f}, assessed gain {roc_auc(dq, helps):.2f}")


if __name__ == "__main__":
    main()
