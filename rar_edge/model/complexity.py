"""Parameter and MAC counts per entry point (convolutions and linear layers; elementwise ops are not counted)."""

from __future__ import annotations

import torch
from torch import nn

from .entry_points import example_inputs
from .rar import ENTRY_POINTS, RAR

_PARTS = {"encode": "encoder", "assess": "assessor", "restore": "restorer", "decode": "decoder"}


def entry_macs(model: RAR, name: str, height: int, width: int) -> int:
    """Conv and linear multiply-accumulates of one call of entry point ``name`` on a height x width image."""
    total = 0

    def hook(mod: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += output.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += output.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            getattr(model, name)(*example_inputs(model, name, height, width))
    finally:
        for h in handles:
            h.remove()
    return total


def count_complexity(model: RAR, size: int = 512) -> dict[str, dict[str, float]]:
    """Per entry point: parameters and GMAC per megapixel (measured at ``size`` x ``size``), plus totals.

    Returns ``{entry: {"params": int, "gmac_per_mp": float}, "step": ..., "codec": ..., "total": ...}``
    where "step" is one assess + restore and "codec" is encode + decode.
    """
    mp = size * size / 1e6
    out: dict[str, dict[str, float]] = {}
    for name in ENTRY_POINTS:
        part = getattr(model, _PARTS[name])
        out[name] = {
            "params": sum(p.numel() for p in part.parameters()),
            "gmac_per_mp": entry_macs(model, name, size, size) / 1e9 / mp,
        }
    for combo, names in {"step": ("assess", "restore"), "codec": ("encode", "decode"), "total": ENTRY_POINTS}.items():
        out[combo] = {k: sum(out[n][k] for n in names) for k in ("params", "gmac_per_mp")}
    return out
