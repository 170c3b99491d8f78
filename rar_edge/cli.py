"""The ``rar-edge`` command. Heavy imports (torch) happen inside each sub-command, not at start-up."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from rar_edge import DEFAULT_SYNTHESIS, DEGRADATIONS, FIT_CLEAN_CROPS, FOREIGN_SYNTHESIS, RESTORE_LOSSES, SYNTHESES, __version__
from rar_edge.errors import RarEdgeError, run_guarded


def _add_providers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--providers", help="onnxruntime execution providers for an ONNX bundle, in order of preference: "
                                       "cuda, tensorrt, openvino, coreml, directml, qnn or full names, comma-separated; "
                                       "the CPU provider is always the fallback (default: cpu)")


def _provider_options(a: argparse.Namespace) -> dict:
    """``Restorer.load``'s ``providers`` from ``--providers`` (nothing when not given)."""
    if a.providers is None:
        return {}
    from rar_edge.runtime.backends import resolve_providers

    return {"providers": resolve_providers(a.providers)}


def _add_stop_rule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-steps", type=int,
                   help="most restore steps (default: the model's own rule, from the bundle or checkpoint)")
    p.add_argument("--target-quality", type=float, help="stop once assessed quality reaches this, in dB")
    p.add_argument("--min-gain", type=float, help="stop once a step gains less than this, in dB")
    p.add_argument("--min-change", type=float,
                   help="stop once a proposed step moves the latent by less than this fraction (0: off)")
    p.add_argument("--keep", choices=["best", "last"],
                   help="decode the best-assessed latent or the last step's (default: the model's own rule)")
    p.add_argument("--min-better", type=float,
                   help="stop when the judge gives a step less than this probability of helping (0: judge off)")
    p.add_argument("--min-detect", type=float,
                   help="step only when some degradation is detected with at least this probability, or a bundle's "
                        "learned gate gives steps that probability of helping (the same threshold moves both; 0: off)")


def _rule_args(a: argparse.Namespace) -> dict:
    """The stop-rule overrides given on the command line (None: the checkpoint's or bundle's default)."""
    if a.max_steps is not None and a.max_steps < 0:
        raise RarEdgeError(f"--max-steps must be 0 or more, got {a.max_steps}")
    if a.min_change is not None and not 0 <= a.min_change < float("inf"):
        raise RarEdgeError(f"--min-change must be a fraction of the latent >= 0 (e.g. 0.02; 0: off), got {a.min_change}")
    if a.min_better is not None and not 0 <= a.min_better < 1:
        raise RarEdgeError(f"--min-better must be a probability in [0, 1) (e.g. 0.5; 0: judge off), got {a.min_better}")
    if a.min_detect is not None and not 0 <= a.min_detect < 1:
        raise RarEdgeError(f"--min-detect must be a probability in [0, 1) (e.g. 0.6; 0: off), got {a.min_detect}")
    overrides = {"max_steps": a.max_steps, "target_quality": a.target_quality, "min_gain": a.min_gain,
                 "min_change": a.min_change, "keep": a.keep, "min_better": a.min_better, "min_detect": a.min_detect}
    from rar_edge.loop import StopRule

    try:  # the rule's own checks (a NaN target...), before any model loads; its field names said as flags
        StopRule(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:
        field, _, rest = str(e).partition(" ")
        raise RarEdgeError(f"--{field.replace('_', '-')} {rest}" if field in overrides else str(e)) from None
    return overrides


#: Largest evaluation crop: the photo folders hold photos of at most 1024 px (smaller ones are upscaled).
MAX_EVAL_CROP = 1024


def _check_eval_args(multiple: int, crop: int, max_images: int) -> None:
    """Refuse crop sizes the model cannot take (or that would only upscale photos) and empty sets."""
    if crop < multiple or crop % multiple or crop > MAX_EVAL_CROP:
        raise RarEdgeError(f"--crop {crop}: use a multiple of {multiple} (the model's size multiple) "
                           f"between {multiple} and {MAX_EVAL_CROP}")
    if max_images < 1:
        raise RarEdgeError(f"--max-images must be at least 1, got {max_images}")


def _marks(text: str | None) -> tuple[float, ...]:
    try:
        marks = tuple(float(m) for m in text.split(",")) if text else ()
    except ValueError:
        raise RarEdgeError(f"--marks {text!r}: pass minutes separated by commas, e.g. 15,30,60") from None
    if any(not 0 < m < float("inf") for m in marks):
        raise RarEdgeError(f"--marks {text!r}: every mark must be a positive number of minutes")
    return marks


def _type_weights(text: str | None) -> dict[str, float]:
    """``haze=2,rain=1.5`` -> {"haze": 2.0, "rain": 1.5}, with a one-line error for anything else."""
    weights: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise RarEdgeError(f"--type-weights {text!r}: write NAME=WEIGHT pairs, e.g. haze=2,rain=1.5") from None
    return weights


def _crop_mix(text: str | None) -> tuple[tuple[int, int], ...]:
    """``--crop-mix 192x4,96x13`` -> ((192, 4), (96, 13))."""
    pairs = []
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        crop, _, batch = item.partition("x")
        if not (crop.isdigit() and batch.isdigit() and int(crop) % 16 == 0 and int(crop) > 0 and int(batch) > 0):
            raise RarEdgeError(f"--crop-mix {text!r}: write CROPxBATCH pairs with crops a multiple of 16, "
                               "e.g. 192x4,96x13")
        pairs.append((int(crop), int(batch)))
    return tuple(pairs)


def cmd_train(a: argparse.Namespace) -> int:
    from rar_edge.train.losses import LossWeights
    from rar_edge.train.trainer import TrainConfig, train

    cfg = TrainConfig(preset=a.preset, data=a.data, out=a.out, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr,
                      unroll=a.unroll, seed=a.seed, val_data=a.val_data, val_every=a.val_every,
                      ckpt_every=a.ckpt_every, warmup=a.warmup, device=a.device, amp=not a.no_amp,
                      compile=a.compile, channels_last=a.channels_last, init=a.init, resume=a.resume,
                      init_fresh=tuple(x for x in a.init_fresh.split(",") if x),
                      freeze=tuple(x for x in a.freeze.split(",") if x),
                      degradations=tuple(a.degradations.split(",")), synthesis=a.synthesis, minutes=a.minutes,
                      ckpt_minutes=a.ckpt_minutes, marks=_marks(a.marks), type_weights=_type_weights(a.type_weights),
                      cond_lr_scale=a.cond_lr_scale, restore_loss=a.restore_loss, crop_mix=_crop_mix(a.crop_mix),
                      weights=LossWeights(fft=a.fft_weight), ema=a.ema)
    metrics = train(cfg)
    if metrics:
        print(f"done: {a.out}/last (mean PSNR gain on validation {metrics['mean_gain']:+.2f} dB)")
    print(f"next: rar-edge eval --checkpoint {a.out}/last --data DIR")
    return 0


def cmd_distill(a: argparse.Namespace) -> int:
    from rar_edge.quantize.distill import DistillConfig, distill

    cfg = DistillConfig(teacher=a.teacher, data=a.data, out=a.out, preset=a.preset, backend=a.backend, steps=a.steps,
                        qat_steps=a.qat_steps, freeze_fraction=a.freeze_fraction,
                        keep_float=tuple(x for x in a.keep_float.split(",") if x),
                        post_training=tuple(x for x in a.post_training.split(",") if x), calib_crop=a.calib_crop,
                        init=a.init, batch=a.batch, crop=a.crop,
                        lr=a.lr, qat_lr=a.qat_lr, seed=a.seed, val_data=a.val_data, val_every=a.val_every,
                        ckpt_every=a.ckpt_every, report_images=a.report_images, report_crop=a.report_crop,
                        device=a.device, resume=a.resume)
    distill(cfg)
    print(f"student: {a.out}/student (float weights + int8 programs), report: {a.out}/report.json")
    print(f"next: rar-edge eval --checkpoint {a.out}/student --data DIR   (the student's float weights; "
          "the int8 programs in student/int8 are what the exporters will consume)")
    return 0


def cmd_reblock(a: argparse.Namespace) -> int:
    from rar_edge.train.reblock import ReblockConfig, reblock

    cfg = ReblockConfig(source=a.source, preset=a.preset, data=a.data, out=a.out, steps=a.steps, minutes=a.minutes,
                        batch=a.batch, crop=a.crop, lr=a.lr, seed=a.seed, synthesis=a.synthesis,
                        val_data=a.val_data, val_every=a.val_every, device=a.device, resume=a.resume)
    metrics = reblock(cfg)
    if metrics:  # the loss: the new blocks' mean error relative to the source blocks' residuals (1: the identity)
        print(f"done: {a.out}/last (on validation: block error / residual {metrics['loss']:.3f}, "
              f"the reblocked loop's mean PSNR gain {metrics['mean_gain']:+.2f} dB)")
    print(f"next: rar-edge distill --preset {a.preset} --teacher {a.source} --init {a.out}/last --data {a.data} "
          "--out DIST   (closes what the block fits compound, then quantizes)")
    return 0


def cmd_train_tone(a: argparse.Namespace) -> int:
    from rar_edge.train.tone import ToneTrainConfig, train_tone

    if a.batch < 1 or a.crop < 8 or not a.lr > 0:
        raise RarEdgeError(f"--batch must be >= 1, --crop >= 8 and --lr > 0 (got {a.batch}, {a.crop}, {a.lr:g})")
    done = train_tone(ToneTrainConfig(data=a.data, out=a.out, minutes=a.minutes, steps=a.steps,
                                      synthesis=a.synthesis, batch=a.batch, crop=a.crop, lr=a.lr, seed=a.seed))
    print(f"done: {a.out} ({done['steps']} steps in {done['minutes']:.1f} min, last loss {done['last_loss']:.4f})")
    print(f"next: rar-edge restore PHOTO -o OUT --tone --tone-head {a.out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from rar_edge.eval.evaluate import evaluate, format_report
    from rar_edge.train.checkpoint import load_model

    rule_args = _rule_args(a)
    model, _ = load_model(a.checkpoint)
    _check_eval_args(model.config.size_multiple, a.crop, a.max_images)
    rule = model.stop_rule(**rule_args)
    report = evaluate(model, a.data, rule, crop=a.crop, max_images=a.max_images, synthesis=a.synthesis)
    print(format_report(report))
    if a.json:
        from rar_edge.atomic import atomic_path

        with atomic_path(a.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    return 0


def _fit_syntheses(value: str) -> tuple[str, ...]:
    """fit-stop's --synthesis: one or more training syntheses, comma-separated, each once."""
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if FOREIGN_SYNTHESIS in names:
        raise RarEdgeError(f"--synthesis {FOREIGN_SYNTHESIS} is the independent test synthesis: fit on training "
                           f"syntheses ({', '.join(SYNTHESES)}) and keep it for `rar-edge eval`")
    unknown = [n for n in names if n not in SYNTHESES]
    if unknown or not names:
        raise RarEdgeError(f"--synthesis takes training syntheses separated by commas ({', '.join(SYNTHESES)}), "
                           f"got {value!r}")
    return names


def cmd_fit_stop(a: argparse.Namespace) -> int:
    from rar_edge.eval.fit_stop import fit_from_photos, fit_record, format_fit, load_fit_model

    if a.max_steps < 1:
        raise RarEdgeError(f"--max-steps must be at least 1, got {a.max_steps}")
    if not 0 <= a.step_cost < float("inf"):
        raise RarEdgeError(f"--step-cost must be a finite number of dB per step >= 0, got {a.step_cost}")
    if not 0 <= a.clean_pass <= 1:
        raise RarEdgeError(f"--clean-pass must be a share in [0, 1] (e.g. 0.95), got {a.clean_pass}")
    if a.clean_crops < 1:
        raise RarEdgeError(f"--clean-crops counts the centre crop of each photo: at least 1, got {a.clean_crops}")
    if not 0 <= a.dark_originals <= 1:
        raise RarEdgeError(f"--dark-originals is a share in [0, 1] (e.g. 0.25), got {a.dark_originals}")
    if not 0 <= a.harm_weight < float("inf"):
        raise RarEdgeError(f"--harm-weight must be a finite number >= 0 (e.g. 1), got {a.harm_weight}")
    if a.workers is not None and a.workers < 1:
        raise RarEdgeError(f"--workers counts processes for the replay: at least 1, got {a.workers}")
    syntheses = _fit_syntheses(a.synthesis)
    if (a.checkpoint is None) == (a.bundle is None):
        raise RarEdgeError("pass --checkpoint (a checkpoint or student: fit its torch model) or --bundle (an exported "
                           "bundle: fit the graphs it runs), one of the two")
    if a.bundle is not None:
        if a.precision != "auto":
            raise RarEdgeError("--precision chooses a checkpoint's weights; a --bundle is fitted at its own precision")
        from rar_edge.eval.bundle_model import BundleModel
        from rar_edge.export.stop_rule import COREML_REWRITE

        model = BundleModel(a.bundle)
        model.check_crop(a.crop)
        config, precision, folder = None, model.manifest["precision"], Path(a.bundle)
        if a.write:  # before the minutes of recording, not after
            from rar_edge.atomic import check_writable

            if model.manifest["target"] == "coreml":
                raise RarEdgeError(COREML_REWRITE.format(bundle=a.bundle))
            check_writable(folder.resolve().parent)
    else:
        model, config, precision, folder = load_fit_model(a.checkpoint, a.precision)
    _check_eval_args(model.config.size_multiple, a.crop, a.max_images)
    fit = fit_from_photos(model, a.data, a.max_steps, crop=a.crop, max_images=a.max_images, step_cost=a.step_cost,
                          judge=not a.no_judge, gate=a.gate, min_clean_pass=a.clean_pass, syntheses=syntheses,
                          clean_crops=a.clean_crops, harm_weight=a.harm_weight, dark_originals=a.dark_originals,
                          workers=a.workers or os.cpu_count() or 1, progress=True)
    current, fitted, traj, judge = fit.current, fit.fitted, fit.traj, fit.judge
    print(f"{precision} model, {len(traj.cases)} images ({len(set(traj.cases))} cases, synthesis "
          f"{'+'.join(syntheses)}{f', dark originals {a.dark_originals:g}' if a.dark_originals else ''}), up to {a.max_steps} steps, "
          f"step cost {a.step_cost} dB")
    if judge is not None:
        print(f"judge (is the new latent better?): helpful-step ROC-AUC {judge.auc_unseen:.3f} on images it was not "
              f"fitted on ({judge.auc_fit:.3f} on all, after refitting); {judge.positive_share:.0%} of steps helpful")
    if fit.gate is not None:
        print(f"clean gate (can steps help this input?): ROC-AUC {fit.gate.auc_unseen:.3f} on inputs it was not fitted "
              f"on ({fit.gate.auc_fit:.3f} on all); {fit.gate.positive_share:.0%} of inputs helpable")
    print(format_fit(current, fitted, fit.on_dark))
    if not a.write:
        print(f"next: rar-edge fit-stop ... --write   (stores the fitted rule as {a.checkpoint or a.bundle}'s loop "
              "defaults)")
        return 0
    from rar_edge.atomic import atomic_path
    from rar_edge.paths import portable

    r = fitted.rule
    record = fit_record(current, fitted, data=portable(str(a.data)), crop=a.crop, images=a.max_images,
                        step_cost=a.step_cost, precision=precision, cap=a.max_steps, clean_pass=a.clean_pass,
                        syntheses=list(syntheses), clean_crops=a.clean_crops, harm_weight=a.harm_weight,
                        dark_originals=a.dark_originals, gate=a.gate,
                        **({"graphs": model.manifest["target"]} if a.bundle is not None else {}))
    if a.bundle is not None:
        from rar_edge.export.stop_rule import store_stop_rule

        store_stop_rule(a.bundle, r, judge.head if judge else None, record)
        print(f"wrote the fitted rule into {folder / 'manifest.json'}")
        print(f"next: rar-edge restore IMAGES -o OUT --bundle {a.bundle}")
        return 0
    config["model"].update(r.to_dict(), judge=judge.head.flat() if judge and r.min_better > 0 else [])
    config["stop_rule_fit"] = record
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote the fitted rule into {folder / 'config.json'}")
    print(f"next: python -m rar_edge.export --checkpoint {a.checkpoint} ...   (bundles carry the loop defaults)")
    return 0


def cmd_restore(a: argparse.Namespace) -> int:
    if a.checkpoint is not None and a.bundle is not None:
        raise RarEdgeError("pass --bundle (an exported bundle: the runtime) or --checkpoint (a training checkpoint: "
                           "the torch reference path), not both; with neither, the shipped default bundle runs")
    from rar_edge.atomic import check_writable
    from rar_edge.runtime.files import expand_inputs, plan_outputs, restore_files, restorer_fn

    a.inputs = expand_inputs(a.inputs)  # folders: the images in them
    plan_outputs(a.inputs, a.out, a.overwrite)  # refuse bad arguments before loading any model
    from rar_edge.runtime.restorer import MAX_BUDGET_MS

    if a.budget_ms is not None and not 0 < a.budget_ms < MAX_BUDGET_MS:
        raise RarEdgeError(f"--budget-ms must be a positive number of milliseconds below {MAX_BUDGET_MS:g}, "
                           f"got {a.budget_ms:g}")
    check_writable(a.out)  # an unwritable -o is found now, not after the model loads or the restores
    if a.tone_head is not None and not a.tone:
        raise RarEdgeError("--tone-head names the exposure stage's head: add --tone to run the stage")
    rule_args = _rule_args(a)
    if a.max_megapixels is not None and not a.max_megapixels > 0:
        raise RarEdgeError(f"--max-megapixels must be a positive number of megapixels, got {a.max_megapixels:g}")
    if a.assess_tiles is not None and a.assess_tiles < 1:
        raise RarEdgeError(f"--assess-tiles must be a whole number of tiles >= 1, got {a.assess_tiles} "
                           "(leave it out to assess every tile)")
    if a.checkpoint is None:  # the runtime: the named bundle, or the shipped default (torch-free)
        from rar_edge.runtime import Restorer

        restorer = Restorer.load(a.bundle, backend=a.backend, profile=a.profile, tile=a.tile,
                                 max_megapixels=a.max_megapixels, assess_tiles=a.assess_tiles,
                                 half_latents=a.half_latents, tone_head=a.tone_head, **_provider_options(a))
        restore = restorer_fn(restorer, budget_ms=a.budget_ms, tone=a.tone, denoise=a.denoise, **rule_args,
                              **({} if a.json else {"progress": _CallsBar()}))
    else:
        for flag in ("backend", "budget_ms", "profile", "tile", "assess_tiles", "half_latents", "providers"):
            if getattr(a, flag) not in (None, False):
                raise RarEdgeError(f"--{flag.replace('_', '-')} is a runtime option (the default bundle or --bundle); "
                                   "--checkpoint runs torch: leave one of the two out")
        from rar_edge.infer import restore_array
        from rar_edge.runtime.denoise import denoise
        from rar_edge.runtime.images import unit_float
        from rar_edge.runtime.jpeg_grid import grid_probability
        from rar_edge.runtime.restorer import wants_noise_stage
        from rar_edge.runtime.tone import ToneCurve
        from rar_edge.train.checkpoint import load_model

        tone = ToneCurve.load(a.tone_head) if a.tone else None  # the runtime's stage: both paths tone alike
        model, _ = load_model(a.checkpoint)
        rule = model.stop_rule(**rule_args)

        def restore(rgb):
            x, decision = tone(rgb) if tone else (rgb, None)
            out, record = restore_array(model, unit_float(x), rule)
            record["jpeg_grid"] = round(grid_probability(rgb), 4)  # as the runtime reports it, on the photo as given
            # as the runtime runs it (its rule, its keys)
            record["denoised"] = a.denoise and wants_noise_stage(record["degradations"], *rgb.shape[:2])
            record["denoise_skipped"] = False  # no budget on this path
            t = time.perf_counter()
            out = denoise(out) if record["denoised"] else out
            ms = (time.perf_counter() - t) * 1000 if record["denoised"] else 0.0
            record["ms"] = {**record["ms"], "denoise": round(ms, 2), "total": round(record["ms"]["total"] + ms, 2)}
            if decision is not None:  # as the runtime reports it: the stage's decision and time
                record["tone"] = decision.to_json()
                record["ms"] = {**record["ms"], "tone": round(decision.ms, 2),
                                "total": round(record["ms"]["total"] + decision.ms, 2)}
            return out, record

    return _report_restores(restore_files(restore, a.inputs, a.out, overwrite=a.overwrite,
                                          max_megapixels=a.max_megapixels), a)


class _CallsBar:
    """A progress bar within one photo of many tiles (a 12 MP photo takes seconds): model calls done out of
    the most the loop can make. Small photos get none: the bar over the images is enough."""

    MIN_CALLS = 40

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            if total < self.MIN_CALLS or done >= total:
                return
            self.bar = tqdm(total=total, unit="call", desc="tiles x steps", leave=False, file=sys.stderr,
                            disable=not sys.stderr.isatty())
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.bar.close()
            self.bar = None


def _report_restores(records, a: argparse.Namespace) -> int:
    """Print each record as it comes (text or JSON lines); the exit status of ``_batch_status``."""
    from tqdm import tqdm

    failed = []
    # A bar only on a terminal: in a log or a pipe its redraws would be spliced into the result lines.
    bar = tqdm(records, total=len(a.inputs), unit="img", file=sys.stderr,
               disable=len(a.inputs) < 2 or a.json or not sys.stderr.isatty())
    for record in bar:
        if "error" in record:
            failed.append(record)
            if len(a.inputs) == 1 and not a.json:  # said once, below
                continue
        with tqdm.external_write_mode(file=sys.stderr):  # a line, not a line spliced into the bar
            _print_record(record, a.json)
    if len(a.inputs) > 1 and not a.json and len(failed) < len(a.inputs):
        print(f"restored {len(a.inputs) - len(failed)} of {len(a.inputs)} images into {a.out}")
    return _batch_status("restore", [(r["input"], r["error"]) for r in failed], len(a.inputs), detailed=True)


def _about(path: str, error: str) -> str:
    """An input's error, naming the input once (most errors about a file start with its path already)."""
    return error if error.startswith(str(path)) else f"{path}: {error}"


def _batch_status(command: str, failed: list[tuple[str, str]], total: int, detailed: bool = False) -> int:
    """Exit status of a command over ``total`` inputs, of which ``failed`` (input, error) failed: 0 for none; a
    single input that failed is bad input (its one error line, 2); some of a batch, a summary line and 1
    (``detailed``: naming each failed input and its error)."""
    if not failed:
        return 0
    if total == 1:
        print(f"rar-edge {command}: error: {failed[0][1]}", file=sys.stderr)
        return 2
    print(f"rar-edge {command}: {len(failed)} of {total} inputs failed"
          + (": " + "; ".join(_about(path, error) for path, error in failed) if detailed else ""), file=sys.stderr)
    return 1


def cmd_assess(a: argparse.Namespace) -> int:
    """The assessor alone, torch-free: per image the predicted quality and each degradation's probability."""
    if not 0 < a.threshold < 1:
        raise RarEdgeError(f"--threshold must be a probability in (0, 1), got {a.threshold:g}")
    from rar_edge.runtime import Restorer
    from rar_edge.runtime.files import expand_inputs
    from rar_edge.runtime.images import load_image

    inputs = expand_inputs(a.inputs)
    restorer = Restorer.load(a.bundle, backend=a.backend, tile=a.tile, warmup=False, **_provider_options(a))
    names = restorer.degradations
    failed, header = [], not a.json  # the table's header comes with its first row
    for path in inputs:
        try:
            result = restorer.assess(load_image(path).rgb, a.threshold, per_tile=a.per_tile, tone=a.tone)
        except RarEdgeError as e:
            failed.append((path, str(e)))
            if a.json:
                print(json.dumps({"input": path, "error": str(e)}))
            elif len(inputs) > 1:  # a single input's error is said once, below
                print(f"error: {_about(path, str(e))}", file=sys.stderr)
            continue
        if a.json:
            print(json.dumps({"input": path, **result.to_json()}), flush=True)
            continue
        if header:
            print(f"{'image':<28} {'quality dB':>10}  " + " ".join(f"{n:>9}" for n in names) + "  jpeg grid  present"
                  + ("  under-exposed (--tone would brighten)" if a.tone else ""))
            header = False
        present = ", ".join(result.present) or "-"
        tone = "" if result.tone is None else f"  {'yes' if result.tone.applied else 'no'} (logit {result.tone.logit:+.1f})"
        print(f"{Path(path).name[:28]:<28} {result.quality:>10.1f}  "
              + " ".join(f"{result.degradations[n]:>9.2f}" for n in names)
              + f"  {result.jpeg_grid:>9.2f}  {present}{tone}", flush=True)
        if a.per_tile:
            print("  per tile (dB): " + " ".join(f"{q:.1f}" for q in result.tile_quality))
    return _batch_status("assess", failed, len(inputs))


def _print_record(record: dict, as_json: bool) -> None:
    from rar_edge.loop import STOP_REASONS
    from rar_edge.runtime.restorer import FOUND_AT, present

    if as_json:
        print(json.dumps(record), flush=True)
        return
    if "error" in record:
        print(f"error: {_about(record['input'], record['error'])}", file=sys.stderr)
        return
    head = f"{record['input']} -> {record['output']}"
    if not record["quality"]:  # the budget could not pay for encode + decode
        what = "tone curve applied, no restore step" if record.get("tone", {}).get("applied") else "returned unchanged"
        if record.get("cost_unknown"):
            why = "nothing measured yet says what the model costs here: run once without --budget-ms, or --profile"
        elif record.get("needed_ms"):
            why = f"budget below encode + decode: this photo needs a budget of about {record['needed_ms']:.0f} ms"
        else:
            why = "budget below encode + decode"
        print(f"{head}: {what} ({why}), {record['ms']['total']:.0f} ms")
        return
    budget = ""
    if record.get("budget_ms"):
        budget = f", budget {record['budget_ms']:.0f} ms{' (it stopped the loop)' if record['budget_bound'] else ''}"
    probs = record.get("degradations", {})
    found_names = present(probs, jpeg_grid=record.get("jpeg_grid"))
    found = ",".join(found_names) or "no degradation"
    if not found_names and record.get("steps_run") and probs:  # the clean gate opened below FOUND_AT: say on what
        top = max(probs, key=probs.get)
        found += f" at p >= {FOUND_AT:g} (the most probable: {top} {probs[top]:.2f})"
    reason = record.get("stop_reason")
    why = f" ({reason}: {STOP_REASONS[reason]})" if reason in STOP_REASONS else f" ({reason})" if reason else ""
    tone = record.get("tone")
    toned = "" if tone is None else ("tone curve applied (under-exposed); " if tone["applied"] else
                                     "tone curve not needed; ")
    # The assessed quality of the kept step (a step undone is not shown; the noise stage after it is not
    # assessed); after a tone curve, the loop assessed the brightened photo.
    quality = record["quality"]
    shown = quality[min(record["steps"], len(quality) - 1)]
    of = " of the brightened photo" if tone and tone["applied"] else ""
    hints = []
    if tone is None and "low_light" in found_names:  # the stage is opt-in: say so
        hints.append("if the photo is under-exposed, --tone corrects its exposure first")
    if "jpeg" in found_names and record.get("stop_reason") == "clean":  # found, yet "clean" to the loop: say why
        hints.append("JPEG blocking: the loop does not undo it yet")
    if record.get("denoise_skipped"):
        hints.append("noise found: the noise stage did not fit the budget")
    hint = "".join(f" ({h})" for h in hints)
    steps = f"{record['steps']} step{'' if record['steps'] == 1 else 's'}"
    if record.get("denoised"):
        steps += " + the noise stage"
    change = f"{quality[0]:.1f} -> {shown:.1f}" if record["steps"] else f"{quality[0]:.1f}"
    print(f"{head}: {toned}found {found}; {steps}{why}, assessed quality{of} {change} dB, "
          f"{record['ms']['total']:.0f} ms{budget}{hint}")


def cmd_profile(a: argparse.Namespace) -> int:
    from rar_edge.runtime.profiler import profile_in_subprocess

    sizes = [(int(h), int(w)) for h, _, w in (s.partition("x") if "x" in s else (s, "x", s)
                                             for s in a.sizes.split(","))] if a.sizes else None
    providers = _provider_options(a).get("providers")
    profile = profile_in_subprocess(a.bundle, a.backend, sizes, a.runs, a.out, providers)
    if profile.providers:
        print(f"measured on {', '.join(profile.providers)}")
    for size, row in profile.sizes.items():
        print(f"{size}: " + ", ".join(f"{e} {v['median_ms']:.1f} ms (p90 {v['p90_ms']:.1f})" for e, v in row.items()))
    again = f" --providers {a.providers}" if a.providers else ""
    print(f"wrote {a.out}\nnext: rar-edge restore IMAGES -o OUT --bundle {a.bundle} --profile {a.out}{again} "
          "--budget-ms MS")
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from rar_edge.train.checkpoint import pack_checkpoint

    out = pack_checkpoint(a.checkpoint, a.out, a.note)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB, float16 weights)")
    print(f"next: git add {out}; a new machine continues with rar-edge train --init {out} ...")
    return 0


def cmd_photos(a: argparse.Namespace) -> int:
    from rar_edge.data.photos import build_photo_folder

    summary = build_photo_folder(a.out, holdout=a.holdout, use_debian=not a.no_debian, max_side=a.max_side)
    print(f"wrote {summary['train']} training and {summary['heldout']} held-out photos to {summary['out']}")
    print(f"next: rar-edge train --preset rar-teacher --data {a.out}/train --val-data {a.out}/heldout --out runs/teacher")
    return 0


def cmd_presets(a: argparse.Namespace) -> int:
    from rar_edge.model import PRESETS, RAR, count_complexity

    rows = []
    for name, preset in PRESETS.items():
        c = count_complexity(RAR(preset.config), size=a.size)
        rows.append({"preset": name, "description": preset.description, **c})
        if not a.json:
            print(f"{name:<12} {c['total']['params'] / 1e6:6.3f} M params | GMAC/MP: "
                  + ", ".join(f"{k} {c[k]['gmac_per_mp']:.2f}" for k in ("encode", "assess", "restore", "decode", "step", "codec")))
    if a.json:
        print(json.dumps(rows, indent=2))
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that states each option's default when it has a real one (not None, False or an empty string)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        real = action.default not in (None, False, "", argparse.SUPPRESS)
        if real and action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


#: Examples at the end of a command's --help (ultralytics-style: the commands people run first).
EXAMPLES = {
    "restore": "examples:\n  rar-edge restore photo.jpg -o out                      # the shipped default model\n"
               "  rar-edge restore dark.jpg -o out --tone                # an under-exposed photo: its exposure first\n"
               "  rar-edge restore photos/ -o out --budget-ms 150 --json\n"
               "  rar-edge restore photo.jpg -o out --bundle exports/rar-edge-s-int8-executorch",
    "assess": "examples:\n  rar-edge assess photo.jpg\n  rar-edge assess photos/ --json --per-tile",
    "train": "examples:\n  rar-edge photos -o photos\n"
             "  rar-edge train --preset rar-edge-s --data photos/train --val-data photos/heldout --out runs/s "
             "--minutes 60 --marks 15,30",
    "eval": "example:\n  rar-edge eval --checkpoint runs/s/best --data photos/heldout --synthesis albumentations",
    "fit-stop": "example:\n  rar-edge fit-stop --checkpoint runs/s/best --data photos/train --write",
    "train-tone": "example:\n  rar-edge train-tone --data photos/train --out my-tone-head --minutes 7\n"
                  "  rar-edge restore dark.jpg -o out --tone --tone-head my-tone-head",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rar-edge", description="RAR all-in-one image restoration for edge devices")
    parser.add_argument("--version", action="version", version=f"rar-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")

    p = sub.add_parser("train", parents=[common],
                       help="train a full-precision RAR model (GPU or CPU; torchrun for DDP)")
    p.add_argument("--preset", default="rar-teacher", help="model preset (rar-edge presets lists them)")
    p.add_argument("--data", required=True, help="folder of clean photos (recursive)")
    p.add_argument("--out", required=True, help="run folder: checkpoints in OUT/last and OUT/best, log in OUT/log.jsonl")
    p.add_argument("--steps", type=int, default=20000, help="optimizer steps (a cap when --minutes is given)")
    p.add_argument("--batch", type=int, default=16, help="per process")
    p.add_argument("--crop", type=int, default=128, help="training crop side in pixels (a multiple of 16)")
    p.add_argument("--crop-mix", help="alternate CROPxBATCH pairs step by step instead of --crop and --batch, "
                                      "e.g. 192x4,96x13 (about equal pixels per step)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW; warm-up, then cosine decay)")
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    p.add_argument("--unroll", type=int, default=3, help="restore steps unrolled in training")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the crops and degradations (a resumed run replays them)")
    p.add_argument("--degradations", default=",".join(DEGRADATIONS),
                   help="comma-separated types to train on (default: all)")
    p.add_argument("--type-weights",
                   help="draw some types more often, alone and in composites: NAME=WEIGHT pairs, e.g. haze=2 "
                        "(1 for the rest; default: all equally likely)")
    p.add_argument("--cond-lr-scale", type=float, default=1.0,
                   help="learning-rate factor for the per-image conditioning paths (the assessor's embedding head, "
                        "the restorer's global step)")
    p.add_argument("--restore-loss", default="ratio", choices=RESTORE_LOSSES,
                   help="how each sample's input-normalised restore error enters the loss: as is, or its log "
                        "(a PSNR loss: improved samples keep their weight; docs/training.md) (default: %(default)s)")
    p.add_argument("--fft-weight", type=float, default=0.0,
                   help="add each sample's spectral error (L1 of the FFT magnitude of out - clean, normalised like "
                        "the pixel error) at this weight: fine detail counts like energy (docs/training.md) "
                        "(default: %(default)s, off)")
    p.add_argument("--synthesis", default=DEFAULT_SYNTHESIS, choices=SYNTHESES,
                   help="degradation models to train and validate on (docs/degradations.md; default %(default)s)")
    p.add_argument("--val-data", help="held-out photo folder (default: the training photos)")
    p.add_argument("--val-every", type=int, default=500, help="validate on the held-out photos every this many steps")
    p.add_argument("--ckpt-every", type=int, default=500, help="write OUT/last every this many steps")
    p.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the restore step module (CUDA; falls back to eager if compiling fails)")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and batches (faster on GPUs)")
    p.add_argument("--init", help="start from these weights (new optimizer and schedule)")
    p.add_argument("--init-fresh", default="", metavar="PARTS",
                   help="with --init: parts that start from scratch instead (comma-separated: encoder, decoder, "
                        "assessor, restorer; a restorer of another block kind always does)")
    p.add_argument("--freeze", default="", metavar="PARTS",
                   help="with --init: parts whose weights stay as loaded (comma-separated, as --init-fresh), "
                        "e.g. encoder,decoder,restorer to retrain the assessor alone")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT/last exactly (same step, LR and data order)")
    p.add_argument("--minutes", type=float,
                   help="time budget: the LR decays over this much training time (across resumes), and the run "
                        "stops with a checkpoint when it is spent (--steps still caps it)")
    p.add_argument("--ckpt-minutes", type=float, help="also checkpoint OUT/last this often (default: 1 with --minutes)")
    p.add_argument("--marks", help="minutes at which to keep weights-only snapshots in OUT/marks/ (e.g. 15,30,60; "
                                   "bench/learning_curve.py evaluates them)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep a moving average of the weights with this decay (e.g. 0.999: about the last 1000 updates, "
                        "once past its warm-up) "
                        "and store it as the checkpoints' model; the raw weights train as before and go beside it, "
                        "and --marks also keeps them in OUT/marks-raw/ (default: 0, off; docs/training.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", parents=[common],
                       help="quantization-aware distillation of a teacher into an int8 student")
    p.add_argument("--teacher", required=True, help="teacher checkpoint folder (rar-edge train)")
    p.add_argument("--preset", default="rar-edge-s", help="student preset")
    p.add_argument("--data", required=True, help="folder of clean photos")
    p.add_argument("--out", required=True, help="distillation folder: float/, qat/, student/, report.json")
    p.add_argument("--backend", default="xnnpack", help="xnnpack (ExecuTorch, ONNX) or coreml")
    p.add_argument("--steps", type=int, default=4000, help="float distillation steps")
    p.add_argument("--qat-steps", type=int, default=1000, help="quantization-aware steps")
    p.add_argument("--freeze-fraction", type=float, default=0.25, help="last fraction of QAT with frozen observers")
    p.add_argument("--keep-float", default="", help="comma-separated entry points to keep in float")
    p.add_argument("--post-training", default="", metavar="PARTS",
                   help="comma-separated entry points to train in float and quantize after QAT with observed "
                        "ranges (e.g. assess: keeps its calibration; docs/quantization.md)")
    p.add_argument("--calib-crop", type=int, default=512,
                   help="crop side of the --post-training calibration: the size you export at (default: %(default)s)")
    p.add_argument("--init", help="start the float phase from this student (e.g. a previous distillation's "
                                  "student/), with a new schedule")
    p.add_argument("--batch", type=int, default=8, help="crops per step")
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels (a multiple of 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the float phase")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="learning rate of the quantization-aware phase")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and degradations")
    p.add_argument("--val-data", help="held-out photos for validation and the report (default: --data)")
    p.add_argument("--val-every", type=int, default=500, help="validate every this many steps")
    p.add_argument("--ckpt-every", type=int, default=250, help="checkpoint every this many steps")
    p.add_argument("--report-images", type=int, default=8, help="held-out photos in the final report")
    p.add_argument("--report-crop", type=int, default=128, help="crop side of the report")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available; QAT runs where the quantizer runs)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted distillation exactly")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("train-tone", parents=[common],
                       help="train the exposure stage's head (restore --tone): a global tone curve for "
                            "under-exposed photos, estimated from a thumbnail",
                       description="Train the exposure stage's head on synthesized crops of clean photos: a small MLP "
                                   "on a 64x64 thumbnail's statistics that returns a per-channel tone curve and "
                                   "whether the photo is under-exposed. Minutes on a CPU, apart from any RAR model.")
    p.add_argument("--data", required=True, help="folder of clean photos")
    p.add_argument("--out", required=True, help="output folder: tone.safetensors and config.json")
    p.add_argument("--minutes", type=float, default=7.0, help="time budget (the learning rate decays over it)")
    p.add_argument("--steps", type=int, help="stop after this many steps (default: the time budget alone); the "
                   "learning rate decays over whichever budget ends first")
    p.add_argument("--synthesis", default="v3", choices=SYNTHESES, help="degradation models of the crops")
    p.add_argument("--batch", type=int, default=16, help="crops per step")
    p.add_argument("--crop", type=int, default=192, help="crop side in pixels")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--seed", type=int, default=1, help="seed of the crops and degradations")
    p.set_defaults(func=cmd_train_tone)

    p = sub.add_parser("reblock", parents=[common],
                       help="carry a trained model into another block kind (e.g. rar-edge-s-conv -> rar-edge-s-dense), "
                            "fitting each new block to the one it replaces")
    p.add_argument("--source", required=True, help="trained checkpoint folder to carry over")
    p.add_argument("--preset", required=True, help="the model to carry it into: the source's architecture with "
                                                   "other block kinds (rar-edge presets lists them)")
    p.add_argument("--data", required=True, help="folder of clean photos (the source's loop runs on their crops)")
    p.add_argument("--out", required=True, help="run folder: the reblocked model in OUT/last")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (a cap when --minutes is given)")
    p.add_argument("--minutes", type=float, help="time budget (the LR decays over it)")
    p.add_argument("--batch", type=int, default=8, help="degraded crops per step (their clean crops run too)")
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels (a multiple of 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW; warm-up, then cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and degradations")
    p.add_argument("--synthesis", default=DEFAULT_SYNTHESIS, choices=SYNTHESES,
                   help="degradation models of the crops (default %(default)s)")
    p.add_argument("--val-data", help="held-out photos: the reblocked model's own loop is validated on them")
    p.add_argument("--val-every", type=int, default=500, help="validate every this many steps")
    p.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT/last exactly")
    p.set_defaults(func=cmd_reblock)

    p = sub.add_parser("eval", parents=[common],
                       help="evaluate a checkpoint per degradation type")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder (rar-edge train) or distilled student (its float weights)")
    p.add_argument("--data", required=True, help="folder of clean photos, degraded on the fly with fixed seeds")
    p.add_argument("--crop", type=int, default=256, help="centre-crop side in pixels (a multiple of 16)")
    p.add_argument("--max-images", type=int, default=16, help="photos to evaluate (each under every case)")
    p.add_argument("--synthesis", default=DEFAULT_SYNTHESIS, choices=SYNTHESES + (FOREIGN_SYNTHESIS,),
                   help=f"degradations to test on: a training synthesis, or {FOREIGN_SYNTHESIS} (independent code "
                        "no model trains on; needs rar-edge[eval]); default %(default)s")
    p.add_argument("--json", help="also write the report as JSON here")
    _add_stop_rule_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("fit-stop", parents=[common],
                       help="fit the adaptive loop's stop rule to a model's assessor on photos")
    p.add_argument("--checkpoint", help="checkpoint or distilled student folder (or --bundle)")
    p.add_argument("--bundle", help="an exported ONNX or ExecuTorch bundle: fit on the graphs it runs (the runtime), "
                                    "and with --write store the rule in it")
    p.add_argument("--data", required=True,
                   help="folder of clean photos to fit on: training or calibration photos, never your test set")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="fit the int8 programs (default when the folder has int8/) or the float weights "
                        "(a --bundle fits its own)")
    p.add_argument("--max-steps", type=int, default=6, help="the largest step cap to consider")
    p.add_argument("--step-cost", type=float, default=0.0,
                   help="dB of PSNR one restore step must be worth (0: quality only; latency breaks ties)")
    p.add_argument("--harm-weight", type=float, default=0.0,
                   help="extra weight of the dB a rule leaves degraded photos below their input (0: the mean "
                        "PSNR alone; 1: a loss counts twice, so a rule that ruins a few photos for gains on "
                        "others loses)")
    p.add_argument("--dark-originals", type=float, default=0.0, metavar="SHARE",
                   help="also fit on the photos darkened and taken as originals (dark by nature), this share of "
                        "them (0-1; 0: none), so that the rule weighs brightening a dark photo meant to be dark "
                        "(the larger, the more cautious on low light)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that replay the candidate rules (default: one per CPU core)")
    p.add_argument("--crop", type=int, default=256,
                   help="crop side: the image or tile size you deploy at (the fitted rule depends on it)")
    p.add_argument("--max-images", type=int, default=48,
                   help="photos to fit on, each under every case (48 under two syntheses: about 15 minutes on 2 cores)")
    p.add_argument("--clean-pass", type=float, default=1.0,
                   help="share of clean crops the rule must return untouched at 0 steps (default all: unseen "
                        "photos pass less often than the fit's own; 0: no constraint)")
    p.add_argument("--clean-crops", type=int, default=FIT_CLEAN_CROPS,
                   help="crops of each photo that --clean-pass is held on: the centre one and random others "
                        "(random crops of unseen photos pass less often than centre crops)")
    p.add_argument("--synthesis", default=DEFAULT_SYNTHESIS,
                   help=f"degradation synthesis of the fit, or several separated by commas (e.g. v2,v3: the rule and "
                        f"judge then fit more than one formula's quirks); one of {', '.join(SYNTHESES)} "
                        f"(default: {DEFAULT_SYNTHESIS})")
    p.add_argument("--no-judge", action="store_true",
                   help="do not fit the judge (\"is the new latent better?\"); only the assessor's thresholds")
    p.add_argument("--gate", action="store_true",
                   help="also fit a detector for the clean gate (\"can steps help this input?\", a logistic head on "
                        "the degradation probabilities) and let rules gated by it compete (docs/model.md)")
    p.add_argument("--write", action="store_true",
                   help="store the fitted rule (and its judge and gate, when it asks them) as the checkpoint's "
                        "or the bundle's loop defaults")
    p.set_defaults(func=cmd_fit_stop)

    p = sub.add_parser("restore", parents=[common],
                       help="restore images: an exported bundle (runtime) or a checkpoint (torch)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--out", required=True, help="output folder; files keep their input names")
    p.add_argument("--bundle", help="exported bundle folder (python -m rar_edge.export): the torch-free runtime "
                                    "(default: the shipped rar-edge-s-conv fp32 ONNX bundle)")
    p.add_argument("--checkpoint", help="training checkpoint folder: the torch reference path")
    p.add_argument("--backend", help="onnx | executorch | coreml (default: the bundle's target)")
    p.add_argument("--budget-ms", type=float, help="latency budget per image in ms (file I/O excluded)")
    p.add_argument("--profile", help="device profile JSON measured by `rar-edge profile` on the target device "
                                     "(for the same bundle: a profile of another one is refused)")
    p.add_argument("--tile", type=int, help="tile side for dynamic bundles (default 512)")
    _add_providers(p)
    p.add_argument("--max-megapixels", type=float,
                   help="refuse (and skip) images over this many megapixels, from their header (default: no limit)")
    p.add_argument("--assess-tiles", type=int,
                   help="assess at most this many tiles per step, spread over the image (default: all; faster on "
                        "large photos, slightly different outputs)")
    p.add_argument("--half-latents", action="store_true",
                   help="keep the tiles' latents in float16 between calls: about a third less memory on large "
                        "photos, outputs about 56 dB from the float32 ones")
    p.add_argument("--tone", action="store_true",
                   help="exposure stage first: a global tone curve brightens photos its head finds under-exposed "
                        "(dark scenes too: it cannot tell them apart), then the loop restores")
    p.add_argument("--tone-head", help="with --tone: a head trained by `rar-edge train-tone` (default: the bundle's own, else the shipped one)")
    p.add_argument("--no-denoise", dest="denoise", action="store_false",
                   help="skip the noise stage (by default it runs after the loop on photos where noise is found)")
    p.add_argument("--overwrite", action="store_true", help="allow writing over an input file")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    _add_stop_rule_args(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("assess", parents=[common],
                       help="the assessor alone (torch-free): predicted quality and degradations per image",
                       description="Predicted quality (PSNR in dB against the clean original, as the assessor learned "
                                   "it) and the probability of each degradation, per image; large photos are tiled and "
                                   "pooled. How far to trust it: docs/runtime.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--bundle", help="exported bundle folder (default: the shipped rar-edge-s-conv fp32 ONNX bundle)")
    p.add_argument("--backend", help="onnx | executorch | coreml (default: the bundle's target)")
    p.add_argument("--tile", type=int, help="tile side for dynamic bundles (default 512)")
    _add_providers(p)
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability from which a degradation counts as present (default %(default)s)")
    p.add_argument("--per-tile", action="store_true", help="also print each tile's predicted quality")
    p.add_argument("--tone", action="store_true",
                   help="also say whether the exposure stage (restore --tone) finds the image under-exposed")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser("profile", parents=[common],
                       help="measure a bundle's entry points on this device into a profile JSON")
    p.add_argument("--bundle", required=True, help="exported bundle folder to measure")
    p.add_argument("--backend", help="onnx | executorch | coreml (default: the bundle's target)")
    p.add_argument("--sizes", help="comma-separated sizes, 512 or 512x768 (default: the bundle's fixed shape)")
    p.add_argument("--runs", type=int, default=20, help="timed calls per entry point and size")
    _add_providers(p)
    p.add_argument("-o", "--out", required=True, help="profile JSON to write")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("photos", parents=[common],
                       help="build a training photo folder from offline sources")
    p.add_argument("-o", "--out", required=True, help="folder to write: OUT/train, OUT/heldout and OUT/sources.json")
    p.add_argument("--holdout", type=int, default=24, help="photos kept out of training (OUT/heldout; default %(default)s)")
    p.add_argument("--no-debian", action="store_true", help="scikit-image's photos only (no apt-get)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="photos larger than this are downscaled (pixels, longer side)")
    p.set_defaults(func=cmd_photos)

    p = sub.add_parser("pack", parents=[common],
                       help="a float16, weights-only copy of a checkpoint to commit (it outlives the machine)")
    p.add_argument("checkpoint", help="checkpoint folder (e.g. RUN/best)")
    p.add_argument("-o", "--out", required=True, help="folder to write (e.g. checkpoints/rar-edge-s)")
    p.add_argument("--note", default="", help="what it is: data, steps, hardware (kept in its config.json)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("presets", parents=[common],
                       help="list model presets with parameters and GMAC per megapixel")
    p.add_argument("--size", type=int, default=512, help="square input side the MACs are measured at")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_presets)

    # Listed for --help; main() hands "export ..." to rar_edge.export before parsing.
    sub.add_parser("export", help="export bundles: same arguments as python -m rar_edge.export", add_help=False)
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, command in sub.choices.items():
        command.formatter_class = _Formatter
        command.description = command.description or summaries.get(name)
        command.epilog = EXAMPLES.get(name)
    return parser


#: Commands whose extra is more than that of the first module they import (torch): named at once.
COMMAND_EXTRAS = {"distill": "export"}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        # Hand every argument to the export entry point untouched (argparse would take its options).
        from rar_edge.export.__main__ import main as export_main

        return export_main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_guarded(f"rar-edge {args.command}", lambda: args.func(args), args.debug,
                       extra=COMMAND_EXTRAS.get(args.command))


if __name__ == "__main__":
    sys.exit(main())
