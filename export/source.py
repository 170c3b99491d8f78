"""What an export starts from: a float checkpoint, a distilled student (with int8 programs), or a preset."""

from __future__ import annotations

import sys
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
        name = preset or rar_edge.SHIPPED_STUDENT
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


@dataclass
class Programs:
    """The four torch callables an export is made from, and how they are quantized."""

    parts: dict
    quantization: dict | None  # the manifest's "quantization" (None: float)
    weight_only: bool = False  # Core ML int8 from float weights: int8 weights, fp16 activations


def warn(message: str) -> None:
    print(f"export: warning: {message}", file=sys.stderr)


def float_programs(source: Source) -> dict:
    """The model's four float entry points (torch modules)."""
    from rar_edge.model import ENTRY_POINTS
    from rar_edge.model.entry_points import EntryPoint

    return {name: EntryPoint(source.model, name).eval() for name in ENTRY_POINTS}


def torch_programs(source: Source, precision: str, target: str = "onnx", calib: str | None = None) -> Programs:
    """The programs for ``precision``: float entry points, the distilled int8 programs, post-training
    int8 calibrated on ``calib``, or (Core ML only) float programs whose weights Core ML quantizes."""
    from rar_edge.model import ENTRY_POINTS

    floats = float_programs(source)
    if calib is not None and (precision != "int8" or source.int8_dir is not None):
        raise RarEdgeError("--calib is for an int8 export of a float checkpoint"
                           + ("; this student already holds QAT int8 programs: drop --calib" if source.int8_dir else
                              f", not --precision {precision}"))
    if precision != "int8":
        return Programs(floats, None)
    if source.int8_dir is not None:
        from rar_edge.quantize.qat import load_programs

        return Programs(dict(load_programs(source.int8_dir, source.model).parts), source.quantization)
    if calib is not None:
        from rar_edge.quantize.ptq import calibrate_int8
        from rar_edge.quantize.quantizers import describe

        warn(f"post-training int8 calibrated on {calib}: quantization-aware distillation (rar-edge distill) "
             "is more accurate")
        calibrated = calibrate_int8(source.model, calib)
        quant = {**describe("xnnpack"), "flow": f"PT2E post-training (calibrated on the photos of {Path(calib).name!r})",
                 "quantized": list(calibrated.quantized),
                 "kept_float": [n for n in ENTRY_POINTS if n not in calibrated.quantized]}
        return Programs(dict(calibrated.parts), quant)
    if target == "coreml":
        warn("int8 from a float checkpoint: Core ML gets int8 weights only (smaller file, not faster); "
             "pass a distilled student, or --calib DIR for int8 activations too")
        quant = {"flow": "Core ML linear_quantize_weights", "weights": "int8 symmetric, per output channel",
                 "activations": "fp16"}
        return Programs(floats, quant, weight_only=True)
    raise RarEdgeError(f"{source.path} holds no int8 programs: an int8 export needs a distilled student "
                       "(rar-edge distill ... then --checkpoint OUT/student) or post-training calibration "
                       "on photos (--calib DIR)")
