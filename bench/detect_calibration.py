"""How an assessor's detection holds up across test syntheses and in int8: the clean gate's inputs.

    python bench/detect_calibration.py --model conv-v2=checkpoints/rar-edge-s-conv-v2 \\
        --model float=D/student --model int8=D/student:int8 --model ptq=D/student:ptq --photos photos/heldout

The fitted loop's clean gate passes an image through untouched when no degradation's probability reaches
its threshold (``min_detect``), fitted on the training syntheses. A model can rank degraded above clean crops
perfectly and still fail the gate elsewhere, when its probabilities sit lower under another synthesis or
after quantization. Per model and test synthesis (``bench/report.py``'s test set: random crops of every
photo, every case; the assessor run on each model's own encoding of them), per single type: ROC-AUC of the
type's probability, the type's crops against the clean crops; the type's mean probability on its crops;
the mean assessed quality (dB) of the type's crops and of the clean crops; and, in brackets, the crops'
true mean PSNR against their clean originals: how far the assessed quality is off.

A model is NAME=CHECKPOINT, with ``:int8`` for a distilled student's int8 programs (``student/int8``, as
QAT converted them; kept-float parts from its float weights) or ``:ptq`` for its float weights quantized
post-training (``quantize.ptq.calibrate_int8`` on ``--calibration`` photos, every entry point int8).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import test_set  # noqa: E402  (the test set of bench/report.py and bench/bundle_quality.py)

from rar_edge import DEGRADATIONS  # noqa: E402
from rar_edge.eval.metrics import psnr, roc_auc  # noqa: E402


def load(spec: str, calibration: str):
    """A model with ``encode`` and ``assess`` from NAME=CHECKPOINT[:int8|:ptq]."""
    from rar_edge.train.checkpoint import load_model

    path, _, kind = spec.partition(":")
    model, _ = load_model(path)
    if kind == "int8":
        from rar_edge.quantize.qat import load_programs

        if not (Path(path) / "int8").is_dir():
            raise SystemExit(f"--model {spec}: {path} holds no int8 programs (int8/); drop :int8, or add :ptq")
        return load_programs(Path(path) / "int8", model)
    if kind == "ptq":
        from rar_edge.quantize.ptq import calibrate_int8

        return calibrate_int8(model, calibration, keep_float=())
    if kind:
        raise SystemExit(f"--model {spec}: unknown kind {kind!r}; write CHECKPOINT, CHECKPOINT:int8 or CHECKPOINT:ptq")
    return model


def calibration_rows(model, crops: int, photos: str, synthesis: str) -> dict[str, dict[str, float]]:
    """Per single type: AUC against clean, mean probability on the type, mean quality; and clean's quality."""
    clean_crops, degraded, names, originals = test_set(photos, crops, 256, synthesis=synthesis)
    x = torch.from_numpy(np.ascontiguousarray(degraded.transpose(0, 3, 1, 2)))
    qualities, probs = [], []
    with torch.no_grad():
        for i in range(0, len(x), 16):
            q, p, _ = model.assess(model.encode(x[i : i + 16]))
            qualities.append(q)
            probs.append(p)
    quality, prob = torch.cat(qualities).numpy(), torch.cat(probs).numpy()
    names = np.array(names)
    clean = names == "clean"
    rows = {"clean": {"quality": float(quality[clean].mean())}}
    for j, name in enumerate(DEGRADATIONS):
        mine = names == name
        if not mine.any():
            continue
        labels = np.concatenate([np.ones(mine.sum()), np.zeros(clean.sum())])
        true = [psnr(degraded[i], clean_crops[originals[i]]) for i in np.flatnonzero(mine)]
        rows[name] = {"auc": roc_auc(np.concatenate([prob[mine, j], prob[clean, j]]), labels),
                      "p": float(prob[mine, j].mean()), "quality": float(quality[mine].mean()),
                      "true": float(np.mean(true))}
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT[:int8|:ptq] (repeat)")
    p.add_argument("--photos", required=True, help="held-out photo folder")
    p.add_argument("--syntheses", default="v2,albumentations")
    p.add_argument("--crops", type=int, default=1, help="random 256² crops per photo (default: 1)")
    p.add_argument("--calibration", default="photos/train", help="photos for :ptq ranges (default: photos/train)")
    a = p.parse_args()
    models = {}
    for spec in a.model:
        name, sep, rest = spec.partition("=")
        if not sep:
            raise SystemExit(f"--model {spec}: write NAME=CHECKPOINT[:int8|:ptq]")
        models[name] = load(rest, a.calibration)
    print(f"`python {' '.join(sys.argv)}`\n")
    columns = " | ".join(f"{d}: AUC / p / dB (true)" for d in DEGRADATIONS)
    print(f"| model | test synthesis | {columns} | clean dB |")
    print("|---|---|" + "---|" * (len(DEGRADATIONS) + 1))
    for synthesis in a.syntheses.split(","):
        for name, model in models.items():
            rows = calibration_rows(model, a.crops, a.photos, synthesis)
            cells = [f"{rows[d]['auc']:.2f} / {rows[d]['p']:.2f} / {rows[d]['quality']:.1f} ({rows[d]['true']:.1f})"
                     if d in rows else "—"
                     for d in DEGRADATIONS]
            print(f"| {name} | {synthesis} | " + " | ".join(cells) + f" | {rows['clean']['quality']:.1f} |")


if __name__ == "__main__":
    main()
