"""Which degradations can a model's assessor see? Its own detection, and what its features hold.

    python bench/assessor_probe.py --checkpoint CKPT --data photos/train [--images 44] [--draws 6] [--crop 128]

The measurement behind the assessor's detail statistics (docs/model.md, "What the assessor sees"):
centre crops of the photos, each degraded ``--draws`` times by the training sampler (single and
composite degradations, some clean). Per degradation type, ROC-AUC of (a) the model's own degradation
probabilities, (b) a logistic-regression probe on the trunk's pooled statistics (``Assessor.trunk_stats``: the
MLP's input without the detail statistics) and (c) the same probe on the fixed detail statistics (DetailStats),
both cross-validated over four folds of photos, so a probe never scores a photo it was fitted on; and (d) the
same probe on the detail statistics with their **grid contrast** (``DetailStats(grid=True)``, the assessor's
``assess_grid``: the first scale's statistics of the latent shifted by one position minus the aligned ones),
the cue for JPEG's 8-pixel blocks.
A float checkpoint's weights are read (a student's ``float/last`` or ``student``).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rar_edge.data.degrade import degrade
from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.metrics import roc_auc
from rar_edge.model.assessor import DetailStats
from rar_edge.train.checkpoint import load_model

FOLDS = 4


def probe_auc(x: np.ndarray, y: np.ndarray, photo: np.ndarray, l2: float = 1e-2, epochs: int = 200) -> float:
    """Cross-validated ROC-AUC of an L2-regularised logistic regression of ``y`` on ``x``."""
    scores = np.zeros(len(y))
    for fold in range(FOLDS):
        test = photo % FOLDS == fold
        xt = torch.tensor(x[~test], dtype=torch.float64)
        mean, std = xt.mean(0), xt.std(0) + 1e-8
        xt = (xt - mean) / std
        yt = torch.tensor(y[~test], dtype=torch.float64)
        w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=epochs, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = xt @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt) + l2 * (w[:-1] ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        xs = (torch.tensor(x[test], dtype=torch.float64) - mean) / std
        scores[test] = (xs @ w[:-1] + w[-1]).detach().numpy()
    return roc_auc(scores, y)


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=44)
    p.add_argument("--draws", type=int, default=6)
    p.add_argument("--crop", type=int, default=128)
    a = p.parse_args()
    torch.manual_seed(0)
    model, _ = load_model(a.checkpoint)
    crops = PhotoFolder(a.data).center_crops(a.crop)[: a.images]
    own, trunk, detail, grid, labels, photo = [], [], [], [], [], []
    for draw in range(a.draws):
        batch = degrade(crops, seed=100 + draw)
        z = model.encode(batch.degraded)
        own.append(model.assess(z)[1].numpy())
        trunk.append(model.assessor.trunk_stats(z).numpy())
        detail.append(DetailStats(z.shape[1])(z).numpy())
        grid.append(DetailStats(z.shape[1], grid=True)(z).numpy())  # the same statistics, then the contrast
        labels.append(batch.labels.numpy())
        photo.append(np.arange(len(crops)))
    own, trunk, detail, grid, labels, photo = map(np.concatenate, (own, trunk, detail, grid, labels, photo))
    print(f"{a.checkpoint}: {len(labels)} crops of {a.crop}² from {len(crops)} photos; ROC-AUC per degradation")
    print(f"{'degradation':<12} {'share':>6} {'model':>7} {'trunk probe':>12} {'detail probe':>13} {'+grid probe':>12}")
    for j, name in enumerate(model.config.degradations):
        y = labels[:, j]
        print(f"{name:<12} {y.mean():>6.2f} {roc_auc(own[:, j], y):>7.3f} {probe_auc(trunk, y, photo):>12.3f} "
              f"{probe_auc(detail, y, photo):>13.3f} {probe_auc(grid, y, photo):>12.3f}")


if __name__ == "__main__":
    main()
