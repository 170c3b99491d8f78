"""What an export starts from: a float checkpoint, a distilled student (with int8 programs), or a preset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import rar_edge
from rar_edge.errors import RarEdgeError
from rar_edge.model import RAR
from rar_edge.train.checkpoint import load_model


@dataclass
class Source:
    model: RAR  # float weights (fp32/fp16 exports, and the reference of parity checks)
    preset: str
    path: str
    int8_dir: Path | None  # converted int8 programs of a distilled student, if any
    quantization: dict | None


def load_source(checkpoint: str | None, preset: str | None) -> Source:
    """Resolve --checkpoint / --preset into a model; with neither, the shipped default student."""
    if checkpoint is None:
        name = preset or "rar-edge-s"
        weights = Path(rar_edge.__file__).parent / "weights" / name
        if not (weights / "config.json").exists():
            raise RarEdgeError(f"no shipped weights for {name} in this version of rar_edge yet: pass --checkpoint "
                               "with a folder from 'rar-edge train' or 'rar-edge distill' (OUT/student)")
        checkpoint = str(weights)
    model, config = load_model(checkpoint)
    if preset and config["preset"] != preset:
        raise RarEdgeError(f"--checkpoint holds a {config['preset']} model, not --preset {preset}: drop one of them")
    int8 = Path(checkpoint) / "int8"
    quant = config.get("quantization")
    return Source(model=model, preset=config["preset"], path=str(checkpoint),
                  int8_dir=int8 if quant and int8.is_dir() else None, quantization=quant)


def torch_programs(source: Source, precision: str) -> dict:
    """The four entry points as torch callables: the float model's, or the distilled int8 programs."""
    from rar_edge.model import ENTRY_POINTS
    from rar_edge.model.entry_points import EntryPoint

    if precision == "int8":
        if source.int8_dir is None:
            raise RarEdgeError(f"{source.path} holds no int8 programs: an int8 export needs a distilled student "
                               "(rar-edge distill ... then --checkpoint OUT/student)")
        from rar_edge.quantize.qat import load_programs

        return dict(load_programs(source.int8_dir, source.model.config).parts)
    return {name: EntryPoint(source.model, name).eval() for name in ENTRY_POINTS}
