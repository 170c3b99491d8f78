"""``rar-edge reblock``: carry a trained model into another block kind, one block at a time.

A part of another block kind (config.BLOCK_PARTS: e.g. rar-edge-s-conv -> rar-edge-s-dense, whose codec and
assessor are dense conv blocks too) cannot take its source's block weights, and a codec trained anew is a new
latent space in which the source's assessor and restorer mean nothing (transfer.py): from scratch, every part
starts over. But only the blocks differ. Every other tensor (the codec's linear path, stems and heads, the
assessor's downsamplers, statistics maps and MLP, the restorer's frame) has the same shape and role in both.
So ``reblock``

1. copies every source tensor outside the changed parts' blocks (the latent basis included), and
2. fits each new block to the source block it replaces, on the inputs that block sees in the source's own
   loop on training batches (degraded and clean crops encoded, assessed, restored ``unroll`` times and
   decoded). A block's loss is its error relative to the source block's residual,
   ``|new(x) - old(x)|^2 / |old(x) - x|^2``: 1 is no better than the identity, where every new block starts
   (the residual floored at 1e-6 of the input's energy, so a source block that is nearly the identity cannot
   take the loss over).

Every block is fitted on the source's inputs, not its predecessor's outputs, so all of them train side by
side from one source loop per batch, and the result is the source with each block replaced by its closest fit
of the new kind. What those fits compound end to end, ``rar-edge distill --init OUT/last --teacher SOURCE``
closes (the same latent basis: the distillation's latent projection starts as the identity).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from rar_edge.data.degrade import DEFAULT_SYNTHESIS
from rar_edge.errors import RarEdgeError
from rar_edge.model import RAR, get_preset
from rar_edge.model.blocks import Stage
from rar_edge.model.config import BLOCK_PARTS, LOOP_FIELDS, RARConfig
from rar_edge.paths import portable

from .checkpoint import load_model, read_train_config
from .task import TrainTask
from .trainer import TrainConfig, train


@dataclass
class ReblockConfig:
    source: str  # the trained checkpoint to carry over
    preset: str  # the model to carry it into: the source's architecture with other block kinds
    data: str
    out: str
    steps: int = 2000
    minutes: float | None = None
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    warmup: int = 50
    unroll: int = 3
    seed: int = 0
    synthesis: str = DEFAULT_SYNTHESIS  # of the crops the source's loop runs on (any realistic damage will do)
    val_data: str | None = None
    val_every: int = 500
    device: str | None = None
    resume: bool = False
    progress: bool = True


def reblocked_config(source: RARConfig, preset: str) -> tuple[RARConfig, tuple[str, ...]]:
    """The source's config with the preset's block kinds, and the parts whose blocks change.

    Raises RarEdgeError when the preset differs from the source in anything but block kinds (what ``train
    --init`` bridges: widths, depths) or not at all.
    """
    try:
        target = get_preset(preset).config
    except KeyError as e:
        raise RarEdgeError(e.args[0]) from None

    def architecture(c: RARConfig) -> dict:
        d = c.to_dict()  # a "naf" block field is left out of it: compare the fields themselves below
        return {k: v for k, v in d.items() if k not in LOOP_FIELDS and k not in BLOCK_PARTS}

    ours, theirs = architecture(target), architecture(source)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        raise RarEdgeError(f"{preset} differs from the source in {', '.join(differ)}, not only in block kinds: "
                           "reblock a checkpoint of its architecture (rar-edge train --init bridges widths and depths)")
    parts = tuple(p for name, ps in BLOCK_PARTS.items() if getattr(target, name) != getattr(source, name) for p in ps)
    if not parts:
        raise RarEdgeError(f"{preset} has the source's block kinds: nothing to reblock; "
                           "continue it with rar-edge train --init instead")
    return replace(source, **{name: getattr(target, name) for name in BLOCK_PARTS}), parts


def start_from(model: RAR, source: RAR, parts: tuple[str, ...]) -> list[tuple[str, nn.Module, nn.Module]]:
    """Copy every tensor of ``source`` outside the blocks of ``parts`` into ``model`` (whose new blocks keep their
    initialisation: the identity); returns (name, source block, new block) for every new block."""
    stages = [name for name, m in model.named_modules() if isinstance(m, Stage) and name.split(".")[0] in parts]
    theirs = source.state_dict()
    state = {k: v if any(k.startswith(s + ".") for s in stages) else theirs[k] for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return [(f"{s}.blocks.{i}", old, new) for s in stages
            for i, (old, new) in enumerate(zip(source.get_submodule(s).blocks, model.get_submodule(s).blocks))]


class BlockFit(nn.Module):
    """``forward(degraded, clean, labels, t)`` -> {"total", "fit_<part>"}: every new block against the source
    block it replaces, on that block's inputs in the source's loop (module docstring). Labels and t are unused:
    the source's loop is the target, whatever the degradation."""

    def __init__(self, source: RAR, pairs: list[tuple[str, nn.Module, nn.Module]], unroll: int = 3) -> None:
        super().__init__()
        source.eval().requires_grad_(False)
        self._source = [source]  # frozen and out of the module tree (no DDP sync, no checkpoint)
        self.names = [name for name, _, _ in pairs]
        self.blocks = nn.ModuleList(new for _, _, new in pairs)  # the only trainable weights
        self.unroll = unroll
        self._calls: dict[str, list] = defaultdict(list)
        self._hooks = [old.register_forward_hook(lambda _m, args, out, name=name: self._calls[name].append((args, out)))
                       for name, old, _ in pairs]

    def remove_hooks(self) -> None:
        """Stop recording the source's block calls (the source is usable on its own again)."""
        for hook in self._hooks:
            hook.remove()

    @torch.no_grad()
    def source_loop(self, degraded: torch.Tensor, clean: torch.Tensor) -> None:
        """Run the source's loop on degraded and clean crops, recording every block call."""
        s = self._source[0]
        z = s.encode(torch.cat([degraded, clean]))
        _, _, cond = s.assess(z)
        latents = [z]
        for _ in range(self.unroll):
            z = s.restore(z, cond)
            _, _, cond = s.assess(z)
            latents.append(z)
        s.decode(torch.cat(latents))

    def forward(self, degraded: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor, t: torch.Tensor):
        self._calls.clear()
        self.source_loop(degraded, clean)
        per_part: dict[str, list[torch.Tensor]] = defaultdict(list)
        for name, block in zip(self.names, self.blocks):
            errors = [(block(*args) - out).pow(2).mean()
                      / torch.maximum((out - args[0]).pow(2).mean(), 1e-6 * args[0].pow(2).mean() + 1e-12)
                      for args, out in self._calls[name]]
            per_part[name.split(".")[0]].append(torch.stack(errors).mean())
        self._calls.clear()
        losses = {f"fit_{part}": torch.stack(v).mean().detach() for part, v in per_part.items()}
        return {"total": torch.stack([e for v in per_part.values() for e in v]).mean(), **losses}


def _named(path: str) -> str:
    """A path as checkpoints record it (rar_edge.paths.portable), whether given relative or absolute."""
    return portable(str(Path(path).resolve()))


def reblock(cfg: ReblockConfig) -> dict:
    """Fit the preset's new blocks to ``cfg.source`` through the trainer (progress, checkpoints in OUT/last,
    --resume, --minutes); returns the last validation metrics (the reblocked model's own loop)."""
    source_dir = Path(cfg.source)
    source, _ = load_model(source_dir)
    config, parts = reblocked_config(source.config, cfg.preset)
    last = Path(cfg.out) / "last"
    if cfg.resume and (last / "trainer.json").exists():  # the blocks must go on fitting the same source
        started = read_train_config(last).get("init")
        if started is not None and _named(started) != _named(cfg.source):
            raise RarEdgeError(f"{cfg.out} fits blocks to --source {started}, not {cfg.source}: resume with that "
                               "source, or choose another --out")

    def task(tc: TrainConfig, device: torch.device) -> TrainTask:
        model = RAR(config).to(device)
        pairs = start_from(model, source.to(device), parts)
        model.requires_grad_(False)
        for _, _, new in pairs:
            new.requires_grad_(True)
        return TrainTask(model=model, objective=BlockFit(source, pairs, tc.unroll), float_model=lambda: model,
                         load_model_state=model.load_state_dict)

    tc = TrainConfig(preset=cfg.preset, data=cfg.data, out=cfg.out, steps=cfg.steps, minutes=cfg.minutes,
                     batch=cfg.batch, crop=cfg.crop, lr=cfg.lr, warmup=cfg.warmup, unroll=cfg.unroll, seed=cfg.seed,
                     val_data=cfg.val_data, val_every=cfg.val_every, val_crop=cfg.crop, device=cfg.device,
                     init=str(source_dir), resume=cfg.resume, progress=cfg.progress, synthesis=cfg.synthesis,
                     amp=False)  # fp32 targets: bf16's rounding is the size of the fits' errors (~1 %)
    return train(tc, task)
