"""``rar-edge train-tone``: train the exposure stage's head (rar_edge/model/tone.py) on synthesized crops.

The head sees only the thumbnail, so it trains in minutes on the CPU, apart from any RAR model: the curve's
error is weighted to the under-exposed crops (the rest only keep it sane: it is applied only where the
logit says "under-exposed"), the logit learns the synthesis's low-light labels. Writes OUT/tone.safetensors
(the MLP's two layers, float32) and OUT/config.json (sizes, the gate, how it was trained), the files the
runtime reads (rar_edge/runtime/tone.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from rar_edge import DEGRADATIONS
from rar_edge.atomic import atomic_dir
from rar_edge.data.degrade import degrade
from rar_edge.data.folder import PhotoFolder
from rar_edge.errors import RarEdgeError
from rar_edge.model.tone import BINS, ITERS, THUMB, ToneHead, apply_curve
from rar_edge.paths import portable
from rar_edge.runtime.tone import CONFIG, WEIGHTS  # the file names the runtime reads

#: The files of a trained head (the runtime reads these names).
KIND = "rar-edge tone head"


@dataclass
class ToneTrainConfig:
    data: str
    out: str
    minutes: float | None = 7.0  # wall-clock budget (None: --steps alone)
    steps: int | None = None  # at most this many steps (None: the budget alone)
    synthesis: str = "v3"
    batch: int = 16
    crop: int = 192
    lr: float = 2e-3
    hidden: int = 128
    seed: int = 1
    p_clean: float = 0.2
    other_weight: float = 0.05  # the curve's loss weight on crops that are not under-exposed (those: 1 + this)


def _loss(head: ToneHead, clean: torch.Tensor, step: int, cfg: ToneTrainConfig) -> torch.Tensor:
    b = degrade(clean, seed=cfg.seed * 1_000_003 + step, synthesis=cfg.synthesis, p_clean=cfg.p_clean)
    d = b.degraded.clamp(0, 1)
    p, logit = head(d)
    target = b.labels[:, DEGRADATIONS.index("low_light")]
    weight = target + cfg.other_weight  # under-exposed crops teach the curve; the rest keep it from harm
    mse = (apply_curve(d, p) - clean).pow(2).flatten(1).mean(1)
    return (mse * weight).sum() / weight.sum() + 0.05 * F.binary_cross_entropy_with_logits(logit, target)


def train_tone(cfg: ToneTrainConfig, progress: bool = True) -> dict:
    """Train a head for ``cfg.minutes`` (cosine learning rate over the budget) or ``cfg.steps``; write it to
    ``cfg.out``. Returns the run's summary (steps, minutes, last loss)."""
    if cfg.minutes is None and cfg.steps is None:
        raise RarEdgeError("give a budget: --minutes, --steps or both")
    if cfg.minutes is not None and not cfg.minutes > 0 or cfg.steps is not None and cfg.steps < 1:
        raise RarEdgeError("--minutes must be > 0 and --steps >= 1")
    photos = PhotoFolder(cfg.data)
    torch.manual_seed(cfg.seed)
    head = ToneHead(cfg.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, step, loss = time.perf_counter(), 0, float("nan")
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, unit="step", desc="train-tone", disable=not progress)
    while True:
        spent = (time.perf_counter() - start) / 60
        done = [spent / cfg.minutes if cfg.minutes else 0.0, step / cfg.steps if cfg.steps else 0.0]
        if max(done) >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * max(done)))
        value = _loss(head, photos.random_crops(cfg.batch, cfg.crop, gen), step, cfg)
        opt.zero_grad()
        value.backward()
        opt.step()
        step, loss = step + 1, value.item()
        bar.update()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss:.4f}", min=f"{spent:.1f}")
    bar.close()
    summary = {"steps": step, "minutes": round((time.perf_counter() - start) / 60, 2), "last_loss": loss}
    asked = {k: v for k, v in asdict(cfg).items() if k != "out"}  # where it was written says nothing of it
    save_tone(head, cfg.out, {"config": asked, "result": summary, "date": date.today().isoformat()})
    return summary


def save_tone(head: ToneHead, out: str | Path, training: dict) -> None:
    """OUT/tone.safetensors and OUT/config.json, written whole or not at all."""
    from safetensors.torch import save

    first, last = head.mlp[0], head.mlp[2]
    tensors = {"w1": first.weight, "b1": first.bias, "w2": last.weight, "b2": last.bias}
    config = {"kind": KIND, "hidden": head.hidden, "iters": ITERS, "thumb": THUMB, "bins": BINS,
              "gate_logit": 0.0, "training": portable(training)}
    with atomic_dir(out) as tmp:
        (tmp / WEIGHTS).write_bytes(save({k: v.detach().float().contiguous() for k, v in tensors.items()}))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_tone(folder: str | Path) -> ToneHead:
    """A head written by ``save_tone`` (torch; the runtime reads the same files in numpy)."""
    from safetensors.torch import load_file

    config = json.loads((Path(folder) / CONFIG).read_text())
    head = ToneHead(int(config["hidden"]))
    w = load_file(str(Path(folder) / WEIGHTS))
    head.mlp[0].weight.data, head.mlp[0].bias.data = w["w1"], w["b1"]
    head.mlp[2].weight.data, head.mlp[2].bias.data = w["w2"], w["b2"]
    return head.eval()
