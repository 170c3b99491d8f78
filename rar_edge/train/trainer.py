"""The full-precision trainer: AdamW + warm-up/cosine, unrolled RAR losses, DDP, bf16, exact resume."""

from __future__ import annotations

import collections
import json
import logging
import math
import signal
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from rar_edge import DEGRADATIONS
from rar_edge.atomic import check_writable, recover_dir
from rar_edge.data.degrade import DEFAULT_SYNTHESIS, apply_degradations, check_synthesis, sample_specs
from rar_edge.data.folder import PhotoFolder
from rar_edge.errors import RarEdgeError
from rar_edge.eval.cases import cases_within, make_cases
from rar_edge.model import RAR, get_preset, transfer_weights
from rar_edge.model.transfer import PARTS

from . import distributed
from .checkpoint import load_model, load_training_state, read_config, read_train_config, save_checkpoint
from .ema import with_weight_average
from .losses import LossWeights, RARObjective, psnr_db
from .signals import StopSignals, TrainingInterrupted
from .task import TrainTask, load_extras, rar_task

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    preset: str = "rar-tiny"
    data: str = ""
    out: str = "runs/train"
    steps: int = 20000
    batch: int = 16  # per process
    crop: int = 128
    #: Alternate (crop, batch) pairs step by step instead of ``crop`` and ``batch`` (e.g. ((192, 4), (96, 13))):
    #: large crops for the global types' context, many small ones for the local types (BENCHMARKS.md, "Crop size").
    crop_mix: tuple[tuple[int, int], ...] = ()
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 500
    unroll: int = 3
    seed: int = 0
    val_data: str | None = None
    val_every: int = 500
    val_crop: int = 128
    ckpt_every: int = 500
    log_every: int = 25
    grad_clip: float = 1.0
    device: str | None = None
    amp: bool = True  # bf16 autocast, CUDA only
    compile: bool = False  # torch.compile the restore step module (CUDA only; eager if compiling fails)
    channels_last: bool = False  # NHWC weights and batches: faster convolutions on GPUs
    degradations: tuple[str, ...] = DEGRADATIONS  # train on a subset (e.g. a denoise-only model)
    #: Draw some types more often (name -> relative weight; 1 for the rest): rar_edge.data.degrade.sample_specs.
    type_weights: dict[str, float] = field(default_factory=dict)
    #: Learning-rate factor for the per-image conditioning paths (COND_PATHS); 1: one rate for all.
    cond_lr_scale: float = 1.0
    #: How a sample's normalised restore error enters the loss: "ratio" (as is) or "log" (a PSNR loss).
    restore_loss: str = "ratio"
    synthesis: str = DEFAULT_SYNTHESIS  # degradation models (rar_edge/data/degrade.py); validation uses the same
    init: str | None = None  # start from these weights (not a resume: new optimizer and schedule)
    init_fresh: tuple[str, ...] = ()  # parts that keep their new initialisation under --init (transfer.PARTS)
    #: Parts whose weights stay as loaded (transfer.PARTS): e.g. retrain the assessor's sense of a new degradation
    #: model against a trained restorer. Gradients still flow through them to the parts that train.
    freeze: tuple[str, ...] = ()
    resume: bool = False  # continue OUT/last exactly
    minutes: float | None = None  # a time budget: the LR schedule follows elapsed time, the run stops at it
    ckpt_minutes: float | None = None  # also checkpoint OUT/last this often (default 1 with --minutes)
    marks: tuple[float, ...] = ()  # minutes at which to keep a weights-only snapshot in OUT/marks/<m>min
    #: Decay of a moving average of the weights that checkpoints store as the model (0: off; ema.py).
    ema: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


#: The per-image conditioning paths: the assessor's embedding head and what the restorer's global step reads
#: from it. Their outputs must move far (a haze offset is ~0.3 of the pixel range) from small weights, so at
#: one learning rate they learn slowest (rar-edge train --cond-lr-scale; BENCHMARKS.md, "Recipes").
COND_PATHS = ("assessor.cond.", "global_step.gain.", "global_step.offset.")


def param_groups(task: TrainTask, lr: float, cond_lr_scale: float = 1.0) -> list[dict]:
    """AdamW parameter groups: the conditioning paths at ``lr * cond_lr_scale``, the rest at ``lr``."""
    if cond_lr_scale == 1.0:
        return [{"params": task.parameters()}]
    fast, rest = [], []
    for name, p in task.objective.named_parameters():
        if p.requires_grad:
            (fast if any(k in name for k in COND_PATHS) else rest).append(p)
    return [{"params": rest}, {"params": fast, "lr": lr * cond_lr_scale}]


def lr_factor(step: int, warmup: int, total: int, progress: float | None = None) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5 % of the peak over the remaining
    steps, or over ``progress`` (the spent fraction of a time budget) when given."""
    if step < warmup:
        return (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


class Clock:
    """Training time spent in a run, across resumes (stored in each checkpoint's trainer.json).

    Time the process spends stopped is not training time: a run paused with SIGSTOP while something else
    is timed on the machine must not lose its LR schedule and time budget to the pause. So the loop
    reports each step (``lap``): a step that took over PAUSE_FACTOR times the median of the recent ones,
    and more than PAUSE_MIN_S seconds, counts as a median one. Validation and checkpoints report theirs
    with ``pausable=False``: they are long by nature and count in full (so does a pause during them).
    """

    PAUSE_FACTOR = 20.0
    PAUSE_MIN_S = 30.0

    def __init__(self, spent_s: float = 0.0, budget_s: float | None = None) -> None:
        self.budget_s = budget_s
        self._counted, self._last = spent_s, time.perf_counter()
        self._recent: collections.deque[float] = collections.deque(maxlen=50)
        self.paused_s = 0.0  # wall time not counted, for the log

    def lap(self, pausable: bool = True) -> None:
        """Count the time since the previous lap: one training step, or (``pausable=False``) other work."""
        now = time.perf_counter()
        delta, self._last = now - self._last, now
        if pausable and self._recent:
            typical = statistics.median(self._recent)
            if delta > self.PAUSE_MIN_S and delta > self.PAUSE_FACTOR * typical:
                self.paused_s += delta - typical
                delta = typical
        if pausable:
            self._recent.append(delta)
        self._counted += delta

    @property
    def spent_s(self) -> float:
        return self._counted + time.perf_counter() - self._last

    def progress(self, warmup_s: float) -> float | None:
        """The spent fraction of the budget after warm-up (None without a budget)."""
        if self.budget_s is None:
            return None
        return (self.spent_s - warmup_s) / max(1.0, self.budget_s - warmup_s)

    def over(self) -> bool:
        return self.budget_s is not None and self.spent_s >= self.budget_s


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**62)


def training_batch(photos: PhotoFolder, cfg: TrainConfig, step: int, rank: int, device: torch.device):
    """The batch of ``step`` on ``rank``: a pure function of (seed, step, rank), so resume replays it."""
    seed = _step_seed(cfg.seed, step, rank)
    gen = torch.Generator().manual_seed(seed)
    crop, n = cfg.crop_mix[step % len(cfg.crop_mix)] if cfg.crop_mix else (cfg.crop, cfg.batch)
    clean = photos.random_crops(n, crop, gen).to(device)
    dev_gen = torch.Generator(device=device).manual_seed(seed)
    labels, severity = sample_specs(n, gen, types=tuple(cfg.degradations), type_weights=cfg.type_weights)
    batch = apply_degradations(clean, labels, severity, dev_gen, cfg.synthesis)
    t = torch.rand(n, generator=gen).to(device)
    return batch, t


@torch.no_grad()
def validate(model: RAR, objective: RARObjective, val_clean: torch.Tensor, batch_size: int = 16,
             degradations: tuple[str, ...] = DEGRADATIONS, synthesis: str = DEFAULT_SYNTHESIS) -> dict:
    """Loss and PSNR in -> out (after ``objective.unroll`` steps) per case on the fixed validation set.

    Only the cases made of the ``degradations`` the model trains on: a denoise-only model is not
    judged on rain it never saw.
    """
    model.eval()
    batch, names = make_cases(val_clean, seed=1234, cases=cases_within(degradations), synthesis=synthesis)
    totals: dict[str, list[float]] = {}
    loss_sum, count = 0.0, 0
    for i in range(0, len(names), batch_size):
        sl = slice(i, i + batch_size)
        deg, clean, labels = batch.degraded[sl], batch.clean[sl], batch.labels[sl]
        out = objective(deg, clean, labels, torch.zeros(deg.shape[0], device=deg.device))
        loss_sum += float(out["total"]) * deg.shape[0]
        count += deg.shape[0]
        z = model.encode(deg)
        _, _, cond = model.assess(z)
        for _ in range(objective.unroll):
            z = model.restore(z, cond)
            _, _, cond = model.assess(z)
        p_in, p_out = psnr_db(deg, clean), psnr_db(model.decode(z), clean)
        for name, a, b in zip(names[sl], p_in.tolist(), p_out.tolist()):
            totals.setdefault(name, []).append(b - a)
    model.train()
    gains = {name: sum(v) / len(v) for name, v in totals.items()}
    degraded_gains = [g for name, g in gains.items() if name != "clean"]
    return {"loss": loss_sum / count, "psnr_gain": gains, "mean_gain": sum(degraded_gains) / len(degraded_gains)}


def default_task(cfg: TrainConfig, device: torch.device) -> TrainTask:
    """A float RAR of ``cfg.preset`` (optionally from ``cfg.init``) with the RAR objective."""
    model = RAR(get_preset(cfg.preset).config).to(device)
    if cfg.init:
        init_model, init_cfg = load_model(cfg.init)
        try:  # another preset is fine where transfer_weights bridges it (e.g. a deeper restorer)
            fresh = transfer_weights(model, init_model, cfg.init_fresh)
        except ValueError as e:
            raise RarEdgeError(f"--init checkpoint {cfg.init} ({init_cfg['preset']}) does not fit {cfg.preset}: "
                               f"{e}; start from a checkpoint of the same architecture or drop --init") from None
        random = [p for p in cfg.freeze if p in fresh]
        if random:
            raise RarEdgeError(f"--freeze {','.join(random)}: --init {cfg.init} ({init_cfg['preset']}) has another "
                               f"block kind there, so it starts from scratch and would never train; drop it from "
                               "--freeze")
    def objective(m: RAR) -> RARObjective:
        return RARObjective(m, cfg.weights, cfg.unroll, cfg.restore_loss).to(device)

    task = rar_task(model, objective(model))
    return with_weight_average(task, cfg.ema, objective) if cfg.ema else task


def train(cfg: TrainConfig, build_task: Callable[[TrainConfig, torch.device], TrainTask] = default_task) -> dict:
    """Train (or resume) ``build_task``'s model; returns the last validation metrics."""
    try:
        get_preset(cfg.preset)
    except KeyError as e:
        raise RarEdgeError(e.args[0]) from None
    unknown = set(cfg.degradations) - set(DEGRADATIONS)
    if unknown or not cfg.degradations:
        raise RarEdgeError(f"unknown degradations {sorted(unknown)}; choose from {', '.join(DEGRADATIONS)}")
    unknown = set(cfg.type_weights) - set(cfg.degradations)
    if unknown:
        raise RarEdgeError(f"--type-weights names {sorted(unknown)}, which this run does not train on; "
                           f"choose from {', '.join(cfg.degradations)}")
    if not 0 < cfg.cond_lr_scale < float("inf"):
        raise RarEdgeError(f"--cond-lr-scale must be a positive number, got {cfg.cond_lr_scale}")
    if not 0 <= cfg.weights.fft < float("inf"):
        raise RarEdgeError(f"--fft-weight must be a number >= 0, got {cfg.weights.fft}")
    if not 0 <= cfg.ema < 1:
        raise RarEdgeError(f"--ema must be a decay in [0, 1) (e.g. 0.999; 0: off), got {cfg.ema}")
    if cfg.ema and build_task is not default_task:  # distillation's QAT graphs and reblock's fits have no average
        raise RarEdgeError("--ema averages the float model of 'rar-edge train'; this training task does not keep one: "
                           "drop --ema")
    if any(not w > 0 for w in cfg.type_weights.values()):
        raise RarEdgeError(f"--type-weights must be positive numbers, got {cfg.type_weights}")
    check_synthesis(cfg.synthesis)
    unknown = set(cfg.init_fresh) - set(PARTS)
    if unknown:
        raise RarEdgeError(f"--init-fresh names {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if cfg.init_fresh and not cfg.init:
        raise RarEdgeError("--init-fresh needs --init: without it every part starts from scratch already")
    unknown = set(cfg.freeze) - set(PARTS)
    if unknown:
        raise RarEdgeError(f"--freeze names {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if set(cfg.freeze) == set(PARTS):
        raise RarEdgeError("--freeze names every part: nothing would train; leave at least one out")
    if set(cfg.freeze) & set(cfg.init_fresh):
        raise RarEdgeError(f"--freeze and --init-fresh both name {sorted(set(cfg.freeze) & set(cfg.init_fresh))}: "
                           "a fresh part that never trains stays random; drop it from one of them")
    for flag, value in (("--minutes", cfg.minutes), ("--ckpt-minutes", cfg.ckpt_minutes)):
        if value is not None and not 0 < value < float("inf"):
            raise RarEdgeError(f"{flag} must be a positive number of minutes, got {value}")
    if cfg.minutes is not None and cfg.minutes < 0.1:
        raise RarEdgeError(f"--minutes {cfg.minutes:g} leaves no time for a step and a checkpoint; give at least 0.1")
    out = Path(cfg.out)
    last = recover_dir(out / "last")  # a run killed mid-checkpoint left its previous one aside
    recover_dir(out / "best")
    if (last / "config.json").exists() and not cfg.resume:
        raise RarEdgeError(f"{out} already holds a run (step {read_config(last)['step']}): "
                           "pass --resume to continue it, or choose another --out")
    if (last / "config.json").exists():  # the optimizer holds only the trained weights: the same ones on resume
        saved_run = read_train_config(last)
        frozen = saved_run.get("freeze", [])
        if set(frozen) != set(cfg.freeze):
            raise RarEdgeError(f"{out} was trained with --freeze {','.join(frozen) or '(none)'}: resume with the same "
                               "--freeze, or choose another --out")
        if bool(saved_run.get("ema", 0.0)) != bool(cfg.ema):  # its checkpoint holds (or lacks) the raw weights
            was = f"with --ema {saved_run['ema']:g}" if saved_run.get("ema") else "without --ema"
            raise RarEdgeError(f"{out} was trained {was}: resume with --ema on or off as it was, or choose another --out")
    elif cfg.freeze and not cfg.init:
        raise RarEdgeError(f"--freeze needs --init: {out} holds no run to resume, so the frozen parts would keep "
                           "their random initialisation; pass --init CHECKPOINT")
    check_writable(out)  # before any work, creating nothing (a run refused below leaves no folder)
    info = distributed.setup(cfg.device)
    photos = PhotoFolder(cfg.data)
    val_photos = PhotoFolder(cfg.val_data) if cfg.val_data else photos
    val_clean = val_photos.center_crops(cfg.val_crop)[:16].to(info.device)

    torch.manual_seed(cfg.seed)  # the initial weights are part of the run's reproducibility
    task = build_task(cfg, info.device)
    model, objective = task.model, task.objective
    for part in cfg.freeze:  # before the optimizer: task.parameters() leaves frozen weights out
        weights = [w for name, w in model.named_parameters() if name.startswith(part + ".")]
        if not weights:
            raise RarEdgeError(f"--freeze {part}: this training's model has no such part; drop --freeze")
        for w in weights:
            w.requires_grad_(False)
    optimizer = torch.optim.AdamW(param_groups(task, cfg.lr, cfg.cond_lr_scale), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    clock = Clock(0.0, cfg.minutes * 60 if cfg.minutes else None)
    warmup_s = [0.0]  # with a time budget, the cosine starts when warm-up ends
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup, cfg.steps, clock.progress(warmup_s[0])))

    start = 0
    if (last / "config.json").exists():
        saved = read_config(last)
        if saved["preset"] != cfg.preset:
            raise RarEdgeError(f"{last} holds a {saved['preset']} run, not {cfg.preset}: choose another --out")
        resumed, _ = load_model(last, info.device)
        if task.load_model_state is not None:
            task.load_model_state(resumed.state_dict())
        load_extras(last, task.extras)
        state = load_training_state(last, optimizer, scheduler)
        clock = Clock(state.get("train_config", {}).get("spent_s", 0.0), clock.budget_s)
        warmup_s[0] = state.get("train_config", {}).get("warmup_s", 0.0)
        start = saved["step"]
        if info.is_main:
            log.info("resuming %s from step %d", last, start)
    elif cfg.resume and info.is_main:
        log.info("nothing to resume in %s: starting a new run", out)

    runner: torch.nn.Module = objective
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    eager_step = None
    if info.device.type == "cuda" and cfg.compile:
        # Only the step module: the unrolled loop around it compiled for minutes without finishing (H200).
        # Assigning forward keeps the state_dict's keys (a compiled submodule would rename them).
        eager_step = model.restorer.forward
        model.restorer.forward = torch.compile(eager_step)
    if info.world_size > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    use_amp = cfg.amp and info.device.type == "cuda"

    def checkpoint(step: int, metrics: dict, name: str = "last") -> None:
        if info.is_main:
            run = {k: v for k, v in cfg.to_dict().items() if k != "weights"} | {"fft_weight": cfg.weights.fft}
            save_checkpoint(out / name, task.float_model(), cfg.preset, step, metrics, optimizer, scheduler,
                            {**run, "spent_s": clock.spent_s, "warmup_s": warmup_s[0]}, task.extras)
        if name == "last":
            last_ckpt_s[0] = clock.spent_s

    last_ckpt_s = [clock.spent_s]
    ckpt_minutes = cfg.ckpt_minutes or (1.0 if cfg.minutes else None)
    marks_left = sorted(m for m in cfg.marks if m * 60 > clock.spent_s)

    metrics: dict = {}
    best_gain = -float("inf")
    if (out / "best" / "config.json").exists():
        best_gain = read_config(out / "best")["metrics"].get("mean_gain", best_gain)
    log_path = out / "log.jsonl"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and info.is_main), unit="step")
    model.train()
    t0, seen = time.perf_counter(), 0
    done = start  # completed steps
    skipped = 0
    try:
        with StopSignals() as stop:
            for step in range(start, cfg.steps):
                if task.on_step is not None:
                    task.on_step(step)
                batch, t = training_batch(photos, cfg, step, info.rank, info.device)
                if cfg.channels_last:
                    batch.degraded = batch.degraded.contiguous(memory_format=torch.channels_last)
                    batch.clean = batch.clean.contiguous(memory_format=torch.channels_last)
                first = step == start
                tick = time.perf_counter()
                try:
                    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_amp):
                        losses = runner(batch.degraded, batch.clean, batch.labels, t)
                except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the run
                    if not (first and eager_step is not None):
                        raise
                    log.warning("torch.compile failed (%s): training eagerly", str(e).splitlines()[0][:200])
                    model.restorer.forward = eager_step
                    eager_step = None
                    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_amp):
                        losses = runner(batch.degraded, batch.clean, batch.labels, t)
                if first and eager_step is not None and info.is_main:
                    bar.write(f"first step with the compiled restore step: {time.perf_counter() - tick:.1f} s "
                              "(compile time included)")
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                    if task.after_step is not None:
                        task.after_step()
                else:
                    # A non-finite batch would poison every weight through Adam's moments: skip it.
                    # Gradients are all-reduced before this point, so every DDP rank skips together.
                    skipped += 1
                    log.warning("step %d: non-finite gradients, update skipped (%d so far)", step + 1, skipped)
                clock.lap()  # before the LR follows the clock: a pause must not move it
                scheduler.step()
                seen += batch.clean.shape[0] * info.world_size  # --crop-mix varies the batch by step
                if info.is_main and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                    rate = seen / (time.perf_counter() - t0)
                    row = {"step": step + 1, "lr": scheduler.get_last_lr()[0], "img_per_s": rate, "skipped": skipped,
                           "paused_s": clock.paused_s,
                           **{k: float(v.detach()) for k, v in losses.items()}}
                    with open(log_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    shown = {"loss": f"{row['total']:.3f}", "img_s": f"{rate:.1f}"}
                    if "psnr_out" in row:  # tasks that restore (not rar-edge reblock's block fits)
                        shown["dB"] = f"{row['psnr_in']:.1f}->{row['psnr_out']:.1f}"
                    bar.set_postfix(shown)
                bar.update(1)
                done = step + 1
                if done == cfg.warmup:
                    warmup_s[0] = clock.spent_s
                out_of_time = distributed.any_rank(clock.over(), info)
                while marks_left and clock.spent_s >= marks_left[0] * 60:
                    if info.is_main:  # a snapshot to evaluate later (bench/learning_curve.py): weights only
                        for folder, marked in {**task.marked_too, "marks": task.float_model}.items():
                            save_checkpoint(out / folder / f"{marks_left[0]:g}min", marked(), cfg.preset, done,
                                            {"spent_s": clock.spent_s})
                    marks_left.pop(0)
                if done % cfg.val_every == 0 or done == cfg.steps or out_of_time:
                    if info.is_main:
                        metrics = validate(model if task.eval_model is None else task.eval_model,
                                           objective if task.eval_objective is None else task.eval_objective,
                                           val_clean, degradations=cfg.degradations, synthesis=cfg.synthesis)
                        with open(log_path, "a") as f:
                            f.write(json.dumps({"step": done, "val": metrics}) + "\n")
                        bar.write(f"step {done}: val loss {metrics['loss']:.4f}, "
                                  f"mean PSNR gain {metrics['mean_gain']:+.2f} dB")
                        if metrics["mean_gain"] > best_gain:
                            best_gain = metrics["mean_gain"]
                            checkpoint(done, metrics, "best")
                # Stop only between whole steps: the checkpoint then matches its step count, so
                # --resume stays exact (rar_edge/train/signals.py). One tiny all-reduce per step under DDP.
                stopping = distributed.any_rank(stop.requested is not None, info) and done < cfg.steps
                # Every rank must agree (the checkpoint ends in a barrier): any rank's clock decides.
                timed = ckpt_minutes is not None and distributed.any_rank(
                    clock.spent_s - last_ckpt_s[0] >= ckpt_minutes * 60, info)
                if stopping or timed or out_of_time or done % cfg.ckpt_every == 0 or done == cfg.steps:
                    checkpoint(done, metrics)
                    distributed.barrier(info)
                clock.lap(pausable=False)  # validation, snapshots and checkpoints count in full
                if out_of_time:
                    bar.write(f"time budget of {cfg.minutes:g} min spent after step {done}: checkpoint in {last}")
                    break
                if stopping:
                    signum = stop.requested or signal.SIGTERM  # another rank's signal
                    raise TrainingInterrupted(signum, f"stopped by {signal.Signals(signum).name} after step {done}; "
                                                      f"checkpoint in {last}; continue with --resume")
    finally:
        bar.close()
        distributed.teardown(info)
    return metrics
