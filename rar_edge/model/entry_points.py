"""The four entry points as standalone modules, and their example inputs, for torch.export."""

from __future__ import annotations

import torch
from torch import nn

from .rar import ENTRY_POINTS, RAR


class EntryPoint(nn.Module):
    """Wrap one RAR method as a module whose ``forward`` is that method."""

    def __init__(self, model: RAR, name: str) -> None:
        super().__init__()
        if name not in ENTRY_POINTS:
            raise ValueError(f"unknown entry point {name!r}; expected one of {ENTRY_POINTS}")
        self.model = model
        self.name = name

    def forward(self, *args: torch.Tensor):
        return getattr(self.model, self.name)(*args)


def example_inputs(model: RAR, name: str, height: int, width: int, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Example inputs of entry point ``name`` for an image of ``height`` x ``width``."""
    c = model.config
    if height % c.size_multiple or width % c.size_multiple:
        raise ValueError(f"image size {height}x{width} must be a multiple of {c.size_multiple}")
    h, w = height // c.stride, width // c.stride
    z = torch.rand(batch, c.latent_channels, h, w)
    if name == "encode":
        return (torch.rand(batch, 3, height, width),)
    if name == "assess" or name == "decode":
        return (z,)
    if name == "restore":
        return (z, torch.randn(batch, c.cond_dim))
    raise ValueError(f"unknown entry point {name!r}; expected one of {ENTRY_POINTS}")


def export_entry_point(model: RAR, name: str, height: int, width: int, dynamic: bool = False):
    """``torch.export`` one entry point at a fixed size, or with dynamic H and W (multiples of the size step)."""
    module = EntryPoint(model, name).eval()
    args = example_inputs(model, name, height, width)
    shapes = None
    if dynamic:
        c = model.config
        # Spatial dims are expressed as multiples of the restorer's granularity in latent units,
        # so torch.export can prove the U-Net's down/up-sampling shapes line up.
        unit = c.size_multiple // c.stride
        hq = torch.export.Dim("hq", min=1, max=1024)
        wq = torch.export.Dim("wq", min=1, max=1024)
        scale = c.stride if name == "encode" else 1
        spatial = {2: unit * scale * hq, 3: unit * scale * wq}
        # One entry per positional argument, wrapped once more because forward takes *args.
        shapes = (tuple(spatial if a.dim() == 4 else None for a in args),)
    return torch.export.export(module, args, dynamic_shapes=shapes)
