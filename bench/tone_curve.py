"""How much of each degradation a global tone curve undoes: an oracle, and a blind estimator (issue 20).

    # the oracle: per image and channel the best function of the input value (fitted against the clean image)
    python bench/tone_curve.py --photos photos/heldout --oracle
    # a blind estimator: a small MLP on thumbnail statistics, trained for --minutes, then evaluated
    python bench/tone_curve.py --photos photos/heldout --train photos/train --minutes 7 --gates 0,1,2
    # ... and each gated curve followed by a checkpoint's own loop (its fitted stop rule), against the loop alone
    python bench/tone_curve.py ... --loop checkpoints/rar-edge-s-conv-v2 --assess-gate 0.5

Why: the global types (low light, haze; albumentations' rain also dims the image) are where the shipped model
gains least under the independent synthesis, and issue 20 welcomes a cheap physically-based step for them.
A curve that maps each pixel value through a per-channel function can be applied as a lookup table anywhere.

The oracle's "lut" is the mean clean value per 1/64 of the input range (an upper bound: it sees the clean
image); "affine" is the least-squares ``a x + b`` per channel. The estimator is the exposure stage's head
(rar_edge/model/tone.py, ``rar-edge restore --tone``): it reads the 64² thumbnail's per-channel mean, standard
deviation and 16-bin soft histogram, and returns Zero-DCE's iterated curve ``y + alpha y (1 - y)`` (8
iterations per channel, alpha in (-1, 1)), then a per-channel gain and offset, plus one logit: "this image is
under-exposed" (``rar-edge train-tone``: BCE against the synthesis's labels; the curve's MSE weighted to those
images); ``--head`` reads a trained one (e.g. the shipped rar_edge/weights/tone). ``--gates`` applies the curve only where that logit reaches each value (none: always).
``--loop`` runs a checkpoint's restore loop (torch, its own stop rule) on the input and on each gated curve's
output; ``--assess-gate P`` also requires the checkpoint's assessor to give low light a probability >= P.
Prints per case the mean PSNR gain over 24 centre crops (256²) under the training synthesis ``v2`` and the
independent one. Training synthesis: ``--synthesis`` (default v3).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
from datetime import date

import numpy as np
import torch

from rar_edge import DEGRADATIONS
from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.cases import make_cases
from rar_edge.model.tone import apply_curve
from rar_edge.train.checkpoint import load_model
from rar_edge.train.tone import ToneTrainConfig, load_tone, train_tone

SINGLES = DEGRADATIONS
COMPOSITES = ("blur+noise", "noise+jpeg", "rain+haze", "blur+noise+jpeg")


def psnr(a: torch.Tensor, b: torch.Tensor, cap: float = 60.0) -> torch.Tensor:
    """Per-image PSNR (dB), capped (a clean crop returned unchanged would be infinite)."""
    mse = (a - b).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp(min=1e-12))).clamp(max=cap)


def oracle(d: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image and channel: the mean clean value per input bin (lut) and the least-squares affine map."""
    lut, aff = torch.empty_like(d), torch.empty_like(d)
    for i in range(d.shape[0]):
        for ch in range(3):
            x, y = d[i, ch].flatten(), c[i, ch].flatten()
            b = (x * 63.999).long()
            s = torch.zeros(64).index_add_(0, b, y)
            n = torch.zeros(64).index_add_(0, b, torch.ones_like(y))
            seen = n > 0
            grid = np.arange(64.0)
            table = torch.from_numpy(np.interp(grid, grid[seen.numpy()], (s[seen] / n[seen]).numpy())).float()
            lut[i, ch] = table[b].view_as(d[i, ch])
            a = torch.stack([x, torch.ones_like(x)], 1)
            aff[i, ch] = (a @ torch.linalg.lstsq(a, y[:, None]).solution).view_as(d[i, ch]).clamp(0, 1)
    return {"oracle lut": lut, "oracle affine": aff}


def rows_of(outputs: dict[str, torch.Tensor], d: torch.Tensor, c: torch.Tensor, names: list[str]) -> dict:
    """Per output, the mean PSNR gain over the input ``d`` per case, and over the single types and composites."""
    base = psnr(d, c)
    rows = {}
    for label, y in outputs.items():
        g = psnr(y, c) - base
        per = {case: float(g[torch.tensor([n == case for n in names])].mean()) for case in dict.fromkeys(names)}
        per["single"] = sum(per[t] for t in SINGLES) / len(SINGLES)
        per["composite"] = sum(per[t] for t in COMPOSITES) / len(COMPOSITES)
        rows[label] = per
    return rows


def run_loop(model, x: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """The checkpoint's adaptive loop with its own stop rule (a crop it keeps at step 0 comes back as it went in)."""
    rule = model.stop_rule()
    with torch.no_grad():
        return torch.cat([torch.stack([r.image for r in model.restore_loop(x[i : i + batch], rule)])
                          for i in range(0, len(x), batch)])


def assessed_low_light(model, x: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """The checkpoint's assessed probability of low light per image."""
    j = model.config.degradations.index("low_light")
    with torch.no_grad():
        return torch.cat([model.assess(model.encode(x[i : i + batch]))[1][:, j] for i in range(0, len(x), batch)])


#: The estimator's training options (``--train`` only): type and default.
TRAINING = {"minutes": (float, 7.0), "synthesis": (str, "v3"), "batch": (int, 16), "crop": (int, 192),
            "lr": (float, 2e-3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, help="held-out photos (24 centre crops of 256²)")
    ap.add_argument("--oracle", action="store_true", help="the oracle curves' gains")
    ap.add_argument("--train", help="training photos: train a blind estimator and evaluate it")
    ap.add_argument("--head", help="evaluate this estimator (a `rar-edge train-tone` folder) instead of training one")
    ap.add_argument("--gates", default="", help="comma-separated logits at which the curve is applied")
    ap.add_argument("--loop", help="a checkpoint whose restore loop runs after each gated curve (and alone)")
    ap.add_argument("--assess-gate", type=float, help="with --loop: also require its assessed low light >= this")
    for flag, (kind, default) in TRAINING.items():  # with --train only (None: not given)
        ap.add_argument(f"--{flag}", type=kind, help=f"with --train: the estimator's training {flag} (default {default})")
    a = ap.parse_args(argv)
    if a.train and a.head:
        ap.error("--train trains a head and --head reads one: pass one of them")
    given = [f"--{flag}" for flag in TRAINING if getattr(a, flag) is not None]
    if given and not a.train:
        ap.error(f"{', '.join(given)} set how --train trains an estimator: add --train PHOTOS, or drop them")
    for flag, (_, default) in TRAINING.items():
        setattr(a, flag, default if getattr(a, flag) is None else getattr(a, flag))
    if a.gates and not (a.train or a.head):
        ap.error("--gates gates an estimator: add --train PHOTOS or --head FOLDER")
    if a.assess_gate is not None and not a.loop:
        ap.error("--assess-gate reads a checkpoint's assessor: add --loop CHECKPOINT")
    torch.manual_seed(0)
    clean = PhotoFolder(a.photos).center_crops(256)[:24]
    head, steps = None, 0
    model = load_model(a.loop)[0] if a.loop else None
    if a.train:
        with tempfile.TemporaryDirectory() as out:
            steps = train_tone(ToneTrainConfig(data=a.train, out=out, minutes=a.minutes, synthesis=a.synthesis,
                                               batch=a.batch, crop=a.crop, lr=a.lr), progress=False)["steps"]
            head = load_tone(out)
    elif a.head:
        head = load_tone(a.head)
    print(f"\n`python bench/tone_curve.py {shlex.join(sys.argv[1:] if argv is None else argv)}` — {date.today()}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
          + (f"; estimator: {steps} steps" if head else "") + "\n")
    cols = ["single", "composite", *SINGLES, *COMPOSITES, "clean"]
    print("| curve | test synthesis | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for syn in ("v2", "albumentations"):
        batch, names = make_cases(clean, seed=0, synthesis=syn)
        d, c = batch.degraded.clamp(0, 1), batch.clean
        outputs = oracle(d, c) if a.oracle else {}
        if head is not None:
            with torch.no_grad():
                p, logit = head(d)
                y = apply_curve(d, p)
            outputs["estimated, always"] = y
            dark = assessed_low_light(model, d) if model is not None and a.assess_gate is not None else None
            gated = {}
            for gate in filter(None, a.gates.split(",")):
                gated[f"estimated, logit ≥ {gate}"] = logit >= float(gate)
                if dark is not None:
                    gated[f"estimated, logit ≥ {gate} and assessed low light ≥ {a.assess_gate}"] = \
                        (logit >= float(gate)) & (dark >= a.assess_gate)
            for label, on in gated.items():
                outputs[label] = torch.where(on[:, None, None, None], y, d)
        if model is not None:
            outputs["the loop alone"] = run_loop(model, d)
            for label in [k for k in outputs if k.startswith("estimated, logit")]:
                outputs[f"{label}, then the loop"] = run_loop(model, outputs[label])
        for label, per in rows_of(outputs, d, c, names).items():
            print(f"| {label} | {syn} | " + " | ".join(f"{per[k]:+.2f}" for k in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
