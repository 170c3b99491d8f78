"""Start a model from another one's weights (``--init``), across the architecture changes we allow.

Two additions since the first checkpoints can be bridged, each exactly (the new model computes what the
old one did until training uses the new parts):
- the assessor's detail statistics (``assess_detail``): the assessor MLP's first layer, whose input grew
  by the statistics (appended last), keeps the old weights in its first columns and zeros in the new
  ones, and the direct map from the statistics starts at zero, as in a new model;
- the restorer's global path (``global_rank`` from 0, restorer.GlobalStep): its tensors keep the new
  model's initialisation, whose output is zero;
- the detail statistics' grid contrast (``assess_grid``): appended last to the statistics, so the MLP's first
  layer and the direct map keep their weights in their first columns and start the new ones at zero;
- a deeper restorer (``restore_depths`` at least the source's at every level): each stage keeps the source's
  blocks first and appends new ones, which start as the identity (a NAFBlock's residual scales and a
  ConvBlock's output conv are zero);
- a wider restorer (``restore_width`` at least the source's): every restorer tensor keeps the source's
  weights on the source's channels (``_widen``) and this model's initialisation on the new ones, except the
  weights from new channels into old ones, which start at zero, so the new channels change nothing until
  training uses them. The gated layers' outputs (a NAFBlock's two halves) keep each half in its half.

A part of another block kind (``assess_block``, ``restore_block``; config.BLOCK_FIELDS) has no weights to take
over: it keeps this model's initialisation in full (a restorer starts as the identity: its head is zero), and
only the other parts come from the source. A codec of another kind (``ae_block``) makes a new latent space
(its own random basis), which the source's assessor and restorer never saw: every part starts fresh
(``_FRESH_WHEN_CHANGED``). ``fresh`` does the same for named parts of a model of the same architecture: a
control run that restarts a restorer from scratch beside one of another kind.
"""

from __future__ import annotations

import logging

import torch

from .config import BLOCK_FIELDS, LOOP_FIELDS
from .rar import RAR

log = logging.getLogger(__name__)

#: The tensors whose inputs the detail statistics (and their grid contrast) grow.
GROWN = "assessor.mlp.0.weight"
DIRECT = "assessor.direct.weight"
#: Architecture fields a model may add to a source without them (False or 0 there; module docstring), and
#: the part each belongs to (a part that starts fresh takes none of the source's, so any value fits).
_ADDABLE = {"assess_detail": "assessor", "assess_grid": "assessor", "global_rank": "restorer"}

#: Config fields that are not architecture (config.LOOP_FIELDS) or that transfer_weights bridges.
_NOT_COMPARED = set(_ADDABLE) | LOOP_FIELDS | {"restore_depths", "restore_width"} | set(BLOCK_FIELDS)
#: The parts ``transfer_weights`` may leave at this model's initialisation (``fresh``).
PARTS = ("encoder", "decoder", "assessor", "restorer")
#: Per block-kind field, the parts that start fresh when the source's differs: a new codec draws its own
#: latent basis (init_linear_path), so the source's assessor and restorer, trained on another latent space,
#: carry nothing over either.
_FRESH_WHEN_CHANGED = {"ae_block": PARTS, "assess_block": ("assessor",), "restore_block": ("restorer",)}
assert set(_FRESH_WHEN_CHANGED) == set(BLOCK_FIELDS), "every block-kind field says what a change of it resets"
#: The restorer's stages and the level (index into restore_depths) of each.
_STAGES = {"enc1": 0, "dec1": 0, "enc2": 1, "dec2": 1, "mid": 2}


def transfer_weights(model: RAR, source: RAR, fresh: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Load ``source``'s weights into ``model``, except the parts named in ``fresh`` (``PARTS``), which keep
    this model's initialisation; raises ValueError if their architectures differ otherwise. Returns the parts
    that kept it: ``fresh`` and those a change of block kind resets (``_FRESH_WHEN_CHANGED``)."""
    def architecture(m: RAR) -> dict:
        return {k: v for k, v in m.config.to_dict().items() if k not in _NOT_COMPARED}

    if isinstance(fresh, str):
        raise TypeError(f"fresh must be a tuple of part names, got the string {fresh!r}")
    unknown = set(fresh) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)} to start fresh; choose from {', '.join(PARTS)}")
    if architecture(model) != architecture(source):
        raise ValueError("the two models' architectures differ")
    for name, parts in _FRESH_WHEN_CHANGED.items():
        theirs, ours = getattr(source.config, name), getattr(model.config, name)
        if theirs != ours:
            log.info("%s differs (the source's %s, this model's %s): %s start fresh", name, theirs, ours,
                     ", ".join(parts))
            fresh = tuple(set(fresh) | set(parts))
    state = source.state_dict()
    target = model.state_dict()
    if "restorer" in fresh:  # nothing of the source's restorer is read (swapped below): no width or depth to bridge
        source_depths, source_width = model.config.restore_depths, model.config.restore_width
    else:
        source_depths, source_width = source.config.restore_depths, source.config.restore_width
    for flag, part in _ADDABLE.items():
        theirs, ours = getattr(source.config, flag), getattr(model.config, flag)
        if part not in fresh and theirs and theirs != ours:
            raise ValueError(f"the source has {flag}={theirs} and this model {ours}")
    if model.config.restore_width < source_width:
        raise ValueError(f"the source's restorer is wider ({source_width}) than this model's "
                         f"({model.config.restore_width})")
    deeper = model.config.restore_depths
    if any(n < o for n, o in zip(deeper, source_depths)):
        raise ValueError(f"the source's restorer is deeper ({list(source_depths)}) than this "
                         f"model's ({list(deeper)})")
    # Blocks past the source's depth keep this model's initialisation: the identity.
    state.update({k: v for k, v in target.items() if _added_block(k, source_depths)})
    bridged = "assessor" not in fresh  # a fresh assessor is replaced in full below: nothing to bridge
    if bridged and source.config.assess_detail != model.config.assess_detail:
        state[GROWN] = _grown_columns(state[GROWN], target[GROWN])
        for key in (DIRECT, "assessor.direct.bias"):
            state[key] = torch.zeros_like(target[key])
    elif bridged and source.config.assess_grid != model.config.assess_grid:
        for key in (GROWN, DIRECT):
            state[key] = _grown_columns(state[key], target[key])
    for part in fresh:  # the source's tensors of the part out (it may hold others), this model's in
        state = {k: v for k, v in state.items() if not k.startswith(part + ".")}
        state.update({k: v for k, v in target.items() if k.startswith(part + ".")})
    if source.config.global_rank != model.config.global_rank:
        state.update({k: v for k, v in target.items() if k.startswith("restorer.global_step.")})
    for key, value in target.items():
        if key.startswith("restorer.") and state[key].shape != value.shape:
            state[key] = _widen(key, state[key], value)
    model.load_state_dict(state)
    return tuple(p for p in PARTS if p in fresh)


def _added_block(key: str, depths: tuple[int, int, int]) -> bool:
    """Whether ``key`` is a tensor of a restorer block at or past ``depths`` in its stage."""
    parts = key.split(".")
    return (len(parts) > 4 and parts[0] == "restorer" and parts[1] in _STAGES and parts[2] == "blocks"
            and int(parts[3]) >= depths[_STAGES[parts[1]]])


#: Layers whose output channels a SigmoidGate (or FiLM) splits in halves: widened half by half.
_GATED = ("expand", "dwconv", "ffn_in", "film")


def _widen(key: str, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``old`` on its channels inside ``new`` (this model's initialisation), the weights from new input
    channels into old output channels zeroed (transfer_weights' module docstring)."""
    def index(dim: int) -> torch.Tensor:
        n_old, n_new = old.shape[dim], new.shape[dim]
        if dim == 0 and key.split(".")[-2] in _GATED:  # [a | b] -> [a, new a | b, new b]
            half_old, half_new = n_old // 2, n_new // 2
            return torch.cat([torch.arange(half_old), torch.arange(half_old) + half_new])
        return torch.arange(n_old)  # leading channels (a pixel shuffle's groups of 4 are leading too)

    out = new.clone()
    rows = index(0)
    if old.dim() == 1:
        out[rows] = old
        return out
    cols = index(1)
    out[rows] = 0  # an old output reads no new input
    out[rows[:, None], cols[None, :]] = old
    return out


def _grown_columns(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``old``'s weights in the first columns of a tensor shaped like ``new``, zeros in the rest."""
    grown = torch.zeros_like(new)
    grown[:, : old.shape[1]] = old
    return grown
