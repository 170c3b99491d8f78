"""Start a model from another one's weights (``--init``), across the one architecture change we allow.

A checkpoint made before the assessor's detail statistics existed (``assess_detail=False``) can start a
model that has them: every tensor is copied; the assessor MLP's first layer, whose input grew by the
detail statistics (appended last), keeps the old weights in its first columns and zeros in the new
ones, and the direct map from the statistics starts at zero (as in a new model), so the new model
computes exactly what the old one did until training uses the new inputs.
"""

from __future__ import annotations

from dataclasses import fields

import torch

from rar_edge.loop import StopRule

from .rar import RAR

#: The only tensor whose shape the detail statistics change.
GROWN = "assessor.mlp.0.weight"


#: Config fields that are not architecture (the loop's defaults, named as StopRule's fields) or that
#: transfer_weights bridges.
_NOT_COMPARED = {"assess_detail"} | {f.name for f in fields(StopRule)}


def transfer_weights(model: RAR, source: RAR) -> None:
    """Load ``source``'s weights into ``model``; raises ValueError if their architectures differ otherwise."""
    def architecture(m: RAR) -> dict:
        return {k: v for k, v in m.config.to_dict().items() if k not in _NOT_COMPARED}

    if architecture(model) != architecture(source):
        raise ValueError("the two models' architectures differ")
    if source.config.assess_detail and not model.config.assess_detail:
        raise ValueError("the source's assessor has detail statistics this model lacks")
    state = source.state_dict()
    if source.config.assess_detail != model.config.assess_detail:
        target = model.state_dict()
        grown = torch.zeros_like(target[GROWN])
        grown[:, : state[GROWN].shape[1]] = state[GROWN]
        state[GROWN] = grown
        for key in ("assessor.direct.weight", "assessor.direct.bias"):
            state[key] = torch.zeros_like(target[key])
    model.load_state_dict(state)
