"""Checkpoints: a folder of safetensors weights plus JSON, written atomically; never pickles.

    CKPT/model.safetensors      model weights
    CKPT/config.json            preset, model config, step, metrics, package version, quality meaning
    CKPT/extras.safetensors     task-specific modules, "name/key" (e.g. distillation projections, QAT state)
    CKPT/optimizer.safetensors  optimizer tensors (training checkpoints only)
    CKPT/trainer.json           optimizer hyper-parameters, scheduler state, train config
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rar_edge import __version__
from rar_edge.atomic import atomic_dir, recover_dir
from rar_edge.errors import RarEdgeError
from rar_edge.loop import QUALITY_MEANING
from rar_edge.model import PRESETS, RAR, RARConfig
from rar_edge.paths import portable  # noqa: F401  (re-exported: callers import it from here)

FORMAT = "rar_edge.checkpoint"
FORMAT_VERSION = 1


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def write_model_files(folder: Path, model: RAR, preset: str, step: int, metrics: dict | None = None,
                      extra_config: dict | None = None) -> None:
    """Write model.safetensors and config.json into an existing folder (callers make it atomic)."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": FORMAT, "preset": preset})
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
        "preset": preset, "model": model.config.to_dict(), "step": step, "metrics": metrics or {},
        "quality_meaning": QUALITY_MEANING, **portable(extra_config or {}),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def save_checkpoint(
    path: str | Path, model: RAR, preset: str, step: int, metrics: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, train_config: dict | None = None,
    extras: dict[str, torch.nn.Module] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (an existing one is replaced only once the new one is whole)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_model_files(tmp, model, preset, step, metrics)
        if extras:
            # clone(): modules registered under two names (PT2E's shared observers) share tensors,
            # which safetensors refuses; loading writes the same value into the one module twice.
            flat = {f"{name}/{k}": v.detach().cpu().clone().contiguous()
                    for name, module in extras.items() for k, v in module.state_dict().items()}
            save_file(flat, tmp / "extras.safetensors")
        if optimizer is not None:
            tensors, meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, tmp / "optimizer.safetensors")
            trainer = {"optimizer": meta, "scheduler": scheduler.state_dict() if scheduler else None,
                       "train_config": portable(train_config or {})}
            (tmp / "trainer.json").write_text(json.dumps(trainer, indent=2))
    return path


def pack_checkpoint(src: str | Path, dst: str | Path, note: str = "") -> Path:
    """A release copy of a checkpoint for committing: weights only, in float16 (half the bytes; loading
    casts back to float32), config.json with machine paths made portable and ``note`` recorded."""
    model, config = load_model(src)
    dst = Path(dst)
    with atomic_dir(dst) as tmp:
        weights = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors", metadata={"format": FORMAT, "preset": config["preset"]})
        packed = {**config, "weights_dtype": "float16", "note": note,
                  "train_config": read_train_config(checkpoint_dir(src))}
        (tmp / "config.json").write_text(json.dumps(portable(packed), indent=2))
    return dst


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder of ``path`` (the folder, or a file in it), recovered if a writer was killed."""
    path = recover_dir(path)
    if path.is_file() and path.name in ("model.safetensors", "config.json"):
        path = path.parent
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise RarEdgeError(
            f"checkpoint {path} not found: pass a folder written by 'rar-edge train' "
            "(it holds model.safetensors and config.json)"
        )
    return path


def read_train_config(folder: str | Path) -> dict:
    """The training settings a trainer checkpoint folder was written with (its trainer.json), or {} without one."""
    trainer = Path(folder) / "trainer.json"
    return json.loads(trainer.read_text()).get("train_config", {}) if trainer.is_file() else {}


def read_config(path: str | Path) -> dict:
    """The checkpoint's config.json, validated."""
    path = checkpoint_dir(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RarEdgeError(f"checkpoint {path} is damaged (config.json: {e}); re-train or re-download it") from None
    if config.get("format") != FORMAT:
        raise RarEdgeError(f"{path} is not a rar_edge checkpoint (format {config.get('format')!r})")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RarEdgeError(f"checkpoint {path} is damaged (format_version {version!r} is not an integer); "
                           "re-train or re-download it")
    if version > FORMAT_VERSION:
        raise RarEdgeError(f"checkpoint {path} has format version {version}; "
                           f"this rar_edge {__version__} reads up to {FORMAT_VERSION}: upgrade rar_edge")
    if config.get("preset") not in PRESETS:
        raise RarEdgeError(f"checkpoint {path} is of unknown preset {config.get('preset')!r}; "
                           f"known presets: {', '.join(PRESETS)}")
    return config


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[RAR, dict]:
    """Rebuild the model of a checkpoint folder; returns (model in eval mode, config.json)."""
    path = checkpoint_dir(path)
    config = read_config(path)
    try:
        model = RAR(RARConfig.from_dict(config["model"]))
        weights = load_file(path / "model.safetensors")
        model.load_state_dict(weights)
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RarEdgeError(f"checkpoint {path} is damaged or does not match its config ({first}); "
                           "re-train or re-download it") from None
    return model.to(device).eval(), config


def load_training_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    """Restore optimizer and scheduler state from a training checkpoint; returns trainer.json."""
    path = checkpoint_dir(path)
    if not (path / "trainer.json").is_file() or not (path / "optimizer.safetensors").is_file():
        raise RarEdgeError(f"checkpoint {path} holds weights only, not a training state; it cannot be resumed")
    trainer = json.loads((path / "trainer.json").read_text())
    tensors = load_file(path / "optimizer.safetensors")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, trainer["optimizer"]))
    if scheduler is not None and trainer.get("scheduler"):
        scheduler.load_state_dict(trainer["scheduler"])
    return trainer
