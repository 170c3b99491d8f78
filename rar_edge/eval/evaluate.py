"""``rar-edge eval``: PSNR/SSIM in and out, steps, assessor SRCC and degradation AUC, per case."""

from __future__ import annotations

import numpy as np
import torch

from rar_edge import DEFAULT_SYNTHESIS, DEGRADATIONS
from rar_edge.data.folder import PhotoFolder
from rar_edge.loop import StopRule
from rar_edge.model import RAR
from rar_edge.model.rar import step_change

from .cases import make_cases
from .metrics import psnr, roc_auc, srcc, ssim


#: The true PSNR of a decode is capped here for the assessor's SRCC (an identical decode is infinite).
SRCC_PSNR_CAP_DB = 50.0


@torch.no_grad()
def trajectory(model, deg: torch.Tensor, clean: torch.Tensor, steps: int,
               psnr_cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along a fixed ``steps``-step trajectory from ``deg``: (assessed quality, PSNR of each decode against
    ``clean`` capped at ``psnr_cap``), both (N, steps + 1), column k after k steps; the relative size
    |z_k+1 - z_k| / |z_k| of each step (StopRule.min_change), (N, steps); and each latent's assessment
    vector as the judge reads it (rar_edge.loop.assessment_vector), (N, steps + 1, F)."""
    ref = clean.cpu().numpy()
    quality, out_psnr, change, vectors = [], [], [], []
    z = model.encode(deg)
    for k in range(steps + 1):
        q, p, cond = model.assess(z)
        decoded = model.decode(z).clamp(0, 1).cpu().numpy()
        quality.append(q.float().cpu().numpy())
        vectors.append(torch.cat([q.float()[:, None], p.float(), cond.float()], 1).cpu().numpy())
        out_psnr.append([min(psnr(d, c), psnr_cap) for d, c in zip(decoded, ref)])
        if k < steps:
            z_next = model.restore(z, cond)
            change.append(step_change(z, z_next).float().cpu().numpy())
            z = z_next
    return np.stack(quality, 1), np.array(out_psnr).T, np.stack(change, 1), np.stack(vectors, 1)


def step_signals(model, quality: np.ndarray, out_psnr: np.ndarray, change: np.ndarray,
                 vectors: np.ndarray) -> dict[str, float]:
    """How well each signal tells a helpful step (true PSNR up by more than judge.MARGIN_DB) from the rest,
    over every step of recorded trajectories (ROC-AUC): the assessed quality's change, the step's size
    (larger: helpful) and, where the model has one, the judge's probability."""
    from .judge import judge_scores, step_examples

    x, better = step_examples(vectors, out_psnr, change)
    out = {"quality_change": roc_auc((quality[:, 1:] - quality[:, :-1]).ravel(), better),
           "step_size": roc_auc(change.ravel(), better), "helpful_share": float(better.mean())}
    judge = model.config.judge_head
    if judge is not None:
        out["judge"] = roc_auc(judge_scores(judge, x), better)
    return out


@torch.no_grad()
def evaluate(model: RAR, data: str, rule: StopRule | None = None, crop: int = 256, max_images: int = 16,
             seed: int = 0, batch_size: int = 8, synthesis: str = DEFAULT_SYNTHESIS) -> dict:
    """Evaluate on centre crops of the photos in ``data`` under every case of rar_edge.eval.cases, degraded
    by ``synthesis`` (a training one, or the foreign test synthesis); single-type cases are also
    reported per degradation model (``per_model``, keyed ``type/model``)."""
    rule = rule or model.stop_rule()
    photos = PhotoFolder(data)
    device = next(iter(model.parameters()), torch.empty(0)).device  # converted int8 graphs may hold no parameters
    clean_all = photos.center_crops(crop)[:max_images].to(device)
    batch, names = make_cases(clean_all, seed=seed, synthesis=synthesis)
    rows: dict[str, dict[str, list[float]]] = {}
    model_rows: dict[str, dict[str, list[float]]] = {}
    probs_all, labels_all, pred_q, true_q, runs = [], [], [], [], []
    for i in range(0, len(names), batch_size):
        sl = slice(i, i + batch_size)
        deg, clean = batch.degraded[sl], batch.clean[sl]
        results = model.restore_loop(deg, rule)
        run = trajectory(model, deg, clean, max(1, rule.max_steps), SRCC_PSNR_CAP_DB)
        runs.append(run)
        q, t = run[:2]
        pred_q += q.ravel().tolist()
        true_q += t.ravel().tolist()
        for row, (name, res, d, c, lab) in enumerate(zip(names[sl], results, deg.cpu().numpy(), clean.cpu().numpy(),
                                                         batch.labels[sl]), start=i):
            out = res.image.cpu().numpy()
            values = {"psnr_in": min(psnr(d, c), 100.0), "psnr_out": min(psnr(out, c), 100.0),
                      "ssim_in": ssim(d, c), "ssim_out": ssim(out, c), "steps": res.steps,
                      "untouched": float(res.steps == 0)}  # returned as given (pass-through)
            keys = [(rows, name)]
            if name in DEGRADATIONS:
                keys.append((model_rows, f"{name}/{batch.model_name(row, name)}"))
            for table, key in keys:
                r = table.setdefault(key, {k: [] for k in values})
                for k, v in values.items():
                    r[k].append(v)
            probs_all.append([res.degradations[n] for n in DEGRADATIONS])
            labels_all.append(lab.tolist())
    per_case = {name: {k: float(np.mean(v)) for k, v in r.items()} for name, r in rows.items()}
    per_model = {key: {**{k: float(np.mean(v)) for k, v in r.items()}, "n": len(r["steps"])}
                 for key, r in sorted(model_rows.items())}
    probs, labels = np.array(probs_all), np.array(labels_all)
    report = {
        "images": int(clean_all.shape[0]), "crop": crop, "stop_rule": rule.to_dict(), "synthesis": synthesis,
        "cases": per_case, "per_model": per_model,
        "assessor_srcc": srcc(pred_q, true_q),
        "degradation_auc": {n: roc_auc(probs[:, j], labels[:, j]) for j, n in enumerate(DEGRADATIONS)},
        "step_auc": step_signals(model, *(np.concatenate([r[k] for r in runs]) for k in range(4))),
    }
    return report


def format_report(report: dict) -> str:
    """A plain-text table of an evaluation report."""
    lines = [f"{'case':<18} {'PSNR in':>8} {'PSNR out':>9} {'gain':>6} {'SSIM in':>8} {'SSIM out':>9} {'steps':>6} "
             f"{'0 steps':>7}"]
    for name, r in report["cases"].items():
        lines.append(f"{name:<18} {r['psnr_in']:>8.2f} {r['psnr_out']:>9.2f} {r['psnr_out'] - r['psnr_in']:>+6.2f} "
                     f"{r['ssim_in']:>8.3f} {r['ssim_out']:>9.3f} {r['steps']:>6.2f} {r['untouched']:>7.0%}")
    for key, r in report.get("per_model", {}).items():
        lines.append(f"  {key:<26} {r['psnr_in']:>8.2f} {r['psnr_out']:>9.2f} {r['psnr_out'] - r['psnr_in']:>+6.2f}"
                     f"  (n={r['n']})")
    lines.append(f"assessor SRCC (predicted quality vs true PSNR of each decode): {report['assessor_srcc']:.3f}")
    lines.append("degradation AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in report["degradation_auc"].items()))
    if "step_auc" in report:
        a = report["step_auc"]
        lines.append("helpful-step AUC: " + ", ".join(f"{k.replace('_', ' ')} {a[k]:.3f}" for k in
                                                     ("judge", "quality_change", "step_size") if k in a)
                     + f" ({a['helpful_share']:.0%} of steps helpful)")
    return "\n".join(lines)
