"""What a training run optimises and saves. The trainer's loop (progress, checkpoints, resume, DDP)
is the same for every task: the teacher's own training, and the student's distillation and QAT."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from rar_edge.model import RAR


@dataclass
class TrainTask:
    """A model, its objective, and the hooks the trainer needs.

    Attributes:
        model: the model validation runs (anything with RAR's four entry points and ``train()``).
        objective: ``forward(degraded, clean, labels, t) -> {"total": loss, ...}``; DDP wraps it.
        float_model: the float RAR whose weights a checkpoint stores as model.safetensors.
        extras: further modules saved with each checkpoint (extras.safetensors) and restored on resume.
        on_step: called with the step index before each step (e.g. to freeze observers late in QAT).
        load_model_state: restores the model's weights from a checkpoint's RAR state dict on resume.
        after_step: called after each optimizer update (e.g. to move a weight average).
        eval_model, eval_objective: what validation runs, when not ``model`` and ``objective`` (e.g. the
            weight average of rar_edge/train/ema.py).
        marked_too: further models snapshotted at every ``--marks`` time mark, by the run subfolder they go to
            (the weight average's raw weights: ``{"marks-raw": ...}``); ``marks/`` is always ``float_model``'s.
    """

    model: nn.Module
    objective: nn.Module
    float_model: Callable[[], RAR]
    extras: dict[str, nn.Module] = field(default_factory=dict)
    on_step: Callable[[int], None] | None = None
    load_model_state: Callable[[dict[str, torch.Tensor]], None] | None = None
    after_step: Callable[[], None] | None = None
    eval_model: nn.Module | None = None
    eval_objective: nn.Module | None = None
    marked_too: dict[str, Callable[[], RAR]] = field(default_factory=dict)

    def parameters(self) -> Iterable[nn.Parameter]:
        """Every trainable parameter of the objective (teachers are frozen: requires_grad False)."""
        return [p for p in self.objective.parameters() if p.requires_grad]


def rar_task(model: RAR, objective: nn.Module) -> TrainTask:
    """The plain task: train a float RAR model with its own objective."""
    return TrainTask(model=model, objective=objective, float_model=lambda: model,
                     load_model_state=model.load_state_dict)


def load_extras(path: Path, extras: dict[str, nn.Module]) -> None:
    """Load ``extras.safetensors`` of a checkpoint folder into the given modules."""
    from safetensors.torch import load_file

    if not extras:
        return
    tensors = load_file(path / "extras.safetensors")
    for name, module in extras.items():
        prefix = name + "/"
        state = OrderedDict((k[len(prefix):], v) for k, v in tensors.items() if k.startswith(prefix))
        # safetensors drops state_dict's per-module version metadata; without it, observers take
        # the state for an old format and reset their eps buffer. The module's own versions are right.
        state._metadata = getattr(module.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
        module.load_state_dict(state)
