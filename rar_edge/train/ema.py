"""An exponential moving average of the trained weights (``rar-edge train --ema DECAY``).

Small CPU batches (8 crops of 128²) make each update noisy: on the conv line, the raw weights' held-out
gain moved by up to 0.30 dB between snapshots of one run, the average's by at most 0.12; halfway the
average led by 0.12-0.15 dB, and once the LR has decayed the two are level (BENCHMARKS.md, "A weight
average"). The optimizer trains the raw weights as before, while checkpoints store the average as the
model (what validation, the stop-rule fit and the exporters use) and the raw weights beside it, so
``--resume`` stays exact.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from torch import nn

from rar_edge.errors import RarEdgeError
from rar_edge.model import RAR

from .checkpoint import checkpoint_dir, load_model
from .task import TrainTask

#: The extras under which a checkpoint keeps the raw (trained) weights and the average's update count.
RAW, COUNT = "raw", "average_count"


class WeightAverage(nn.Module):
    """``average = decay * average + (1 - decay) * raw`` after every update, with a warm-up.

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's
    ExponentialMovingAverage with ``num_updates``), so the starting point (e.g. ``--init`` weights) does not
    linger: the average spans about the last ``n / 9 + 1`` updates until ``n`` reaches ``9 / (1 - decay)``
    (9,000 updates at 0.999), then about ``1 / (1 - decay)``. The module's own state is the update count
    alone; the averaged model is ``average``.
    """

    def __init__(self, model: RAR, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # Not a submodule: the average is saved as the checkpoint's model, not twice in its extras.
        object.__setattr__(self, "average", copy.deepcopy(model).eval().requires_grad_(False))

    @torch.no_grad()
    def update(self, model: RAR) -> None:
        """Move the average toward ``model``'s current weights (floating tensors; the rest are copied)."""
        n = int(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        raws = model.state_dict()
        for key, avg in self.average.state_dict().items():
            raw = raws[key]
            if avg.is_floating_point():
                avg.lerp_(raw.detach(), 1.0 - decay)
            else:
                avg.copy_(raw)
        self.updates += 1


def with_weight_average(task: TrainTask, decay: float, make_objective: Callable[[RAR], nn.Module]) -> TrainTask:
    """``task`` training its raw weights as before, its checkpoints and validation using their average.

    ``make_objective`` builds the task's objective around a model: validation's loss and unroll for the
    average. Checkpoints keep the raw weights and the update count as extras (``RAW``, ``COUNT``); on
    resume model.safetensors (the average) goes back into the average and the extras into the rest.
    """
    raw = task.float_model()
    ema = WeightAverage(raw, decay)
    return dataclasses.replace(
        task, float_model=lambda: ema.average, extras={**task.extras, RAW: raw, COUNT: ema},
        after_step=lambda: ema.update(raw), load_model_state=ema.average.load_state_dict,
        marked_too={**task.marked_too, "marks-raw": lambda: raw},  # what the average gained, at each mark
        eval_model=ema.average, eval_objective=make_objective(ema.average))


def _raw_weights(folder: str | Path, read: bool = True) -> dict[str, torch.Tensor | None]:
    """The raw weights in a checkpoint folder's extras, by model key ({} when it has none); with
    ``read=False`` their keys only (values None)."""
    extras = Path(folder) / "extras.safetensors"
    if not extras.is_file():
        return {}
    prefix = RAW + "/"
    with safe_open(str(extras), "pt") as f:
        return {k[len(prefix):]: f.get_tensor(k) if read else None for k in f.keys() if k.startswith(prefix)}


def has_raw(folder: str | Path) -> bool:
    """Whether a checkpoint folder holds the raw weights of an ``--ema`` run beside its average."""
    return bool(_raw_weights(folder, read=False))


def load_raw(folder: str | Path) -> tuple[RAR, dict]:
    """The raw (trained) weights of a checkpoint written with ``--ema``, whose model is their average:
    (model in eval mode, config.json). A checkpoint without them is refused."""
    model, config = load_model(folder)
    state = _raw_weights(checkpoint_dir(folder))
    if state:
        model.load_state_dict(state)
        return model, config
    raise RarEdgeError(f"{folder} holds no raw weights: only a training checkpoint of 'rar-edge train --ema' "
                       "(RUN/last or RUN/best) has them beside its average")
