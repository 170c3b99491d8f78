"""``rar-edge distill``: teacher -> student in float, then quantization-aware, then int8 programs.

    OUT/float/     phase 1 run: float distillation (trainer checkpoints: last, best, log.jsonl)
    OUT/qat/       phase 2 run: QAT with fake-quant through the unrolled loop; observers frozen at the end
    OUT/student/   the result: model.safetensors + config.json (the QAT-trained weights, float, with the
                   quantization config) and int8/<entry>.pt2 (converted programs export/ consumes)
    OUT/report.json, printed table: teacher vs student fp32 vs int8 (fake-quant and converted)

Both phases run through the trainer (rar_edge.train.trainer.train): same progress, checkpoints,
exact resume and torchrun/DDP.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rar_edge.atomic import atomic_dir, atomic_path
from rar_edge.errors import RarEdgeError
from rar_edge.model import ENTRY_POINTS, RAR, get_preset, transfer_weights
from rar_edge.train.checkpoint import checkpoint_dir, load_model, read_config, write_model_files
from rar_edge.train.task import TrainTask, load_extras
from rar_edge.train.trainer import TrainConfig, train

from .objective import DistillObjective, Projections, check_matchable
from .qat import QuantRAR
from .quantizers import BACKENDS, describe, make_quantizer

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    teacher: str
    data: str
    out: str
    preset: str = "rar-edge-s"
    backend: str = "xnnpack"
    steps: int = 4000  # float distillation
    qat_steps: int = 1000
    freeze_fraction: float = 0.25  # observers frozen for the last part of QAT
    keep_float: tuple[str, ...] = ()
    #: int8 entry points whose ranges are observed after QAT (post-training) instead of trained: float through
    #: QAT, then calibrated on ``data`` around the converted programs (docs/quantization.md).
    post_training: tuple[str, ...] = ()
    #: Crop side of the post-training calibration: the size bundles are exported at. Ranges observed on 128²
    #: crops failed the 512² export's parity (the assessor 1.1 dB off); observed on 512² ones they passed at
    #: 256² and 512² (BENCHMARKS.md, "Dense blocks throughout, carried over").
    calib_crop: int = 512
    init: str | None = None  # start the float phase from this student's weights (a new schedule)
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    qat_lr: float = 1e-4
    unroll: int = 3
    seed: int = 0
    val_data: str | None = None
    val_every: int = 500
    ckpt_every: int = 250
    report_images: int = 8  # 0: no report
    report_crop: int = 128
    device: str | None = None
    resume: bool = False
    progress: bool = True


#: The fields that shape a run's checkpoints (which parts carry QAT state): a --resume must keep them.
RECIPE_FIELDS = ("preset", "backend", "keep_float", "post_training")
#: Where a run records them (OUT/RECIPE_FILE), written as its phase 2 starts.
RECIPE_FILE = "recipe.json"


def _recipe(cfg: DistillConfig) -> dict:
    """The run's RECIPE_FIELDS as JSON values; entry point lists sorted (their order does not matter)."""
    return {f: sorted(v) if isinstance(v, (list, tuple)) else v for f, v in
            ((f, getattr(cfg, f)) for f in RECIPE_FIELDS)}


def _check_recipe(cfg: DistillConfig, out: Path) -> None:
    """On --resume, the recipe the run started with must be this one (else its checkpoints do not load).
    Runs started before recipe.json existed are not checked."""
    path = out / RECIPE_FILE
    if not (cfg.resume and path.is_file()):
        return
    try:
        saved = json.loads(path.read_text())
        saved = {f: saved[f] for f in RECIPE_FIELDS}
    except (ValueError, KeyError, TypeError):
        raise RarEdgeError(f"{path} is damaged: resume with the flags the run started with after deleting it, "
                           "or choose another --out") from None
    now = _recipe(cfg)
    changed = [f for f in RECIPE_FIELDS if saved[f] != now[f]]
    if changed:
        was = "; ".join(f"--{f.replace('_', '-')} "
                        + ((",".join(saved[f]) or "none") if isinstance(saved[f], list) else str(saved[f]))
                        for f in changed)
        raise RarEdgeError(f"--resume: {out} was started with {was}; pass the same to resume it, or choose another "
                           "--out for the new recipe")


def _check(cfg: DistillConfig) -> RAR:
    """Validate everything before anything is written; returns the teacher."""
    teacher, _ = load_model(cfg.teacher)
    try:
        preset = get_preset(cfg.preset)
    except KeyError as e:
        raise RarEdgeError(e.args[0]) from None
    check_matchable(RAR(preset.config), teacher)
    if cfg.init:
        init_preset = read_config(cfg.init)["preset"]
        if init_preset != cfg.preset:
            raise RarEdgeError(f"--init {cfg.init} is a {init_preset} model, not {cfg.preset}; "
                               f"pass a {cfg.preset} student or drop --init")
    if cfg.backend not in BACKENDS:
        raise RarEdgeError(f"unknown --backend {cfg.backend!r}; choose from {', '.join(BACKENDS)}")
    for flag, names in (("--keep-float", cfg.keep_float), ("--post-training", cfg.post_training)):
        unknown = set(names) - set(ENTRY_POINTS)
        if unknown:
            raise RarEdgeError(f"unknown entry points {sorted(unknown)} in {flag}; "
                               f"choose from {', '.join(ENTRY_POINTS)}")
    both = set(cfg.post_training) & set(cfg.keep_float)
    if both:
        raise RarEdgeError(f"{', '.join(sorted(both))} in both --keep-float and --post-training: an entry point "
                           "stays float or is quantized post-training, not both")
    if cfg.post_training and (cfg.calib_crop <= 0 or cfg.calib_crop % 16):
        raise RarEdgeError(f"--calib-crop {cfg.calib_crop}: give a positive multiple of 16 (the size you export at)")
    if set(cfg.keep_float) | set(cfg.post_training) == set(ENTRY_POINTS):
        raise RarEdgeError("--keep-float and --post-training name every entry point: nothing would be "
                           "quantization-aware trained; leave one out of them (post-training int8 alone: "
                           "python -m rar_edge.export --calib DIR)")
    if not 0 <= cfg.freeze_fraction <= 1:
        raise RarEdgeError("--freeze-fraction must be in [0, 1]")
    out = Path(cfg.out)
    if (out / "float" / "last").exists() and not cfg.resume:
        raise RarEdgeError(f"{out} already holds a distillation: pass --resume to continue it, or choose another --out")
    _check_recipe(cfg, out)
    return teacher


def _phase_config(cfg: DistillConfig, name: str, steps: int, lr: float) -> TrainConfig:
    return TrainConfig(preset=cfg.preset, data=cfg.data, out=str(Path(cfg.out) / name), steps=steps, batch=cfg.batch,
                       crop=cfg.crop, lr=lr, warmup=max(1, min(200, steps // 10)), unroll=cfg.unroll, seed=cfg.seed,
                       val_data=cfg.val_data, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every,
                       val_crop=cfg.crop, device=cfg.device, resume=cfg.resume, progress=cfg.progress)


def build_quant_student(cfg: DistillConfig, teacher: RAR, qat_ckpt: Path | None = None) -> tuple[QuantRAR, Projections]:
    """The QAT student prepared from the float-distilled student (and its QAT state, if given)."""
    float_last = Path(cfg.out) / "float" / "last"
    student, _ = load_model(float_last)
    proj = Projections(student.config, teacher.config)
    load_extras(float_last, {"proj": proj})
    float_in_qat = tuple(cfg.keep_float) + tuple(cfg.post_training)
    quant = QuantRAR.prepare(student, make_quantizer(cfg.backend), float_in_qat)
    if qat_ckpt is not None:
        load_extras(qat_ckpt, {"proj": proj, "qat": quant})
    return quant, proj


def distill(cfg: DistillConfig) -> dict:
    """Run both phases (resuming where asked), convert, write OUT/student and the report."""
    teacher = _check(cfg)
    out = Path(cfg.out)
    preset = get_preset(cfg.preset)

    def float_task(tc: TrainConfig, device: torch.device) -> TrainTask:
        student = RAR(preset.config).to(device)
        proj = Projections(student.config, teacher.config).to(device)
        if cfg.init:  # e.g. a previous student, distilled again from a better teacher
            init = checkpoint_dir(cfg.init)
            try:
                transfer_weights(student, load_model(init)[0])
            except ValueError as e:
                raise RarEdgeError(f"--init {cfg.init} does not fit {cfg.preset}: {e}; "
                                   "start from a checkpoint of the same architecture or drop --init") from None
            # Its feature projections too, when it has them (a float/ or qat/ checkpoint): fresh random
            # ones would pull the trained student toward meaningless targets for the first hundreds of steps.
            if (init / "extras.safetensors").is_file():
                load_extras(init, {"proj": proj})
        objective = DistillObjective(student, teacher.to(device), proj, tc.unroll)
        return TrainTask(model=student, objective=objective, float_model=lambda: student, extras={"proj": proj},
                         load_model_state=student.load_state_dict)

    log.info("phase 1/2: float distillation, %d steps", cfg.steps)
    train(_phase_config(cfg, "float", cfg.steps, cfg.lr), float_task)

    # The recipe decides the QAT state's shape: recorded as phase 2 starts (not before the data was read: a
    # failed start writes nothing), replacing any earlier start's; a resumed phase 2 keeps the recorded one.
    if not (out / "qat" / "last").exists():
        with atomic_path(out / RECIPE_FILE) as tmp:
            tmp.write_text(json.dumps(_recipe(cfg), indent=1) + "\n")
    freeze_at = int(round(cfg.qat_steps * (1 - cfg.freeze_fraction)))

    def qat_task(tc: TrainConfig, device: torch.device) -> TrainTask:
        quant, proj = build_quant_student(cfg, teacher)
        quant.to(device)
        proj.to(device)
        objective = DistillObjective(quant, teacher.to(device), proj, tc.unroll)

        def on_step(step: int) -> None:
            if step >= freeze_at:
                quant.disable_observers()

        return TrainTask(model=quant, objective=objective, float_model=quant.to_float,
                         extras={"proj": proj, "qat": quant}, on_step=on_step)

    log.info("phase 2/2: quantization-aware training (%s), %d steps, observers frozen from step %d",
             cfg.backend, cfg.qat_steps, freeze_at)
    train(_phase_config(cfg, "qat", cfg.qat_steps, cfg.qat_lr), qat_task)

    qat_last = out / "qat" / "last"
    quant, _ = build_quant_student(cfg, teacher.cpu(), qat_last)
    quant.eval()
    converted = quant.convert()
    if cfg.post_training:
        from .ptq import calibrate_int8

        log.info("post-training ranges for %s on %s", ", ".join(cfg.post_training), cfg.data)
        keep = tuple(n for n in ENTRY_POINTS if n not in cfg.post_training)
        converted = calibrate_int8(quant.to_float(), cfg.data, crops=16, crop=cfg.calib_crop, keep_float=keep,
                                   around=converted)
    quantization = {**describe(cfg.backend), "qat_steps": cfg.qat_steps, "observers_frozen_at": freeze_at,
                    "quantized": list(converted.quantized), "kept_float": list(cfg.keep_float),
                    "post_training": list(cfg.post_training), "programs": "int8"}
    with atomic_dir(out / "student") as tmp:
        sizes = converted.save_programs(tmp / "int8")
        quantization["program_bytes"] = sizes
        write_model_files(tmp, quant.to_float(), cfg.preset, read_config(qat_last)["step"],
                          extra_config={"quantization": quantization, "teacher": str(cfg.teacher),
                                        "distill_config": asdict(cfg)})

    if cfg.report_images <= 0:
        return {}
    from .report import build_report, format_report

    report = build_report(teacher.cpu(), quant, converted, cfg.val_data or cfg.data, crop=cfg.report_crop,
                          max_images=cfg.report_images)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print(format_report(report))
    return report
