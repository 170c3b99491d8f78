"""Write one bundle: artifacts, manifest (also embedded), checksums and the parity check, atomically."""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

from rar_edge.atomic import atomic_dir
from rar_edge.errors import RarEdgeError
from rar_edge.manifest import build_manifest, sha256, write_manifest
from rar_edge.runtime.tone import DEFAULT_TONE

from . import INT8_GRAPHS, WEIGHT_BITS, default_weight_bits
from .onnx_int8 import weight_bits_text
from .onnx_static import ORT_QUANTIZED
from .parity import DYNAMIC_PARITY_SIZE, check_parity, photo_crops, torch_runner
from .source import float_programs, load_source, torch_programs
from .tone import export_tone
from .tone import summary_line as tone_summary


log = logging.getLogger(__name__)


def weight_bits_hint(weight_bits: int) -> str:
    """What an int8 ONNX parity failure's message adds about the weight width it was exported with: the other
    width, where this CPU checks it fairly (export.default_weight_bits: 8-bit weights saturate without VNNI)."""
    full = default_weight_bits() == WEIGHT_BITS[0]
    if weight_bits == WEIGHT_BITS[1]:
        return "; --full-range keeps the weights' 8 bits" if full else ""
    if not full:
        return "; this CPU (x86 without VNNI) saturates 8-bit weights: drop --full-range (7-bit weights)"
    return ""


#: The manifest's parity status of a bundle whose format cannot run on the exporting platform.
NOT_RUN = "not run on this platform"


def _parity_line(precision: str, against: str, parity: dict | None, status: str) -> str:
    if status == NOT_RUN:
        line = f"  parity ({precision}): {NOT_RUN} (Core ML predicts only on macOS); spec and op list verified"
        if parity:
            line += (f"; emulation{against}: loop {_db(parity['loop_psnr_db'])}, "
                     f"decode {_db(parity['decode_psnr_db'])}")
        return line
    return (f"  parity ({precision}{against}): loop {_db(parity['loop_psnr_db'])}, "
            f"decode {_db(parity['decode_psnr_db'])}, quality within {parity['loop_quality_max_abs_db']:.3f} dB")


def _db(psnr_db: float) -> str:
    """A parity PSNR for people: identical outputs (infinite PSNR) read "exact"."""
    return "exact" if math.isinf(psnr_db) else f"{psnr_db:.1f} dB"


def _size(path: Path) -> int:
    """Bytes of a file, or of all files in a folder (an .mlpackage)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def bundle_name(source, precision: str, target: str) -> str:
    """A bundle's folder name: preset, precision, target."""
    return f"{source.preset}-{precision}-{target}"


def quantized_entries(quantization: dict) -> tuple[str, ...]:
    """The entry points an int8 bundle quantizes: all but the ones its recipe kept in float."""
    from rar_edge.model import ENTRY_POINTS

    return tuple(n for n in ENTRY_POINTS if n not in quantization.get("kept_float", ()))


class ParityFailed(RarEdgeError):
    """A bundle missed its parity bound; nothing of it was written. ``failures``: the bounds missed."""

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


def export_bundle(target: str, precision: str, checkpoint: str | None, preset: str | None, size: tuple[int, int],
                  dynamic: bool, out: Path, calib: str | None = None, int8_graph: str | None = None,
                  weight_bits: int | None = None, tone_head: str | Path | None = DEFAULT_TONE) -> str:
    """Export ``target`` at ``precision``; returns a printable summary with the next command to run.

    ``tone_head``: the exposure stage's head the bundle carries (its files and a float32 graph: export/tone.py;
    default the shipped one), or None for none.

    ``int8_graph`` (INT8_GRAPHS) chooses how an int8 ONNX bundle's graphs are made, ``weight_bits``
    (export/__init__.py's WEIGHT_BITS; None: this CPU's default_weight_bits) how wide their weights are; other
    bundles ignore both. Left unset,
    int8 ONNX takes onnxruntime's quantizer ("ort", the faster) and, where its graphs miss the parity bound,
    the int8 programs' own graphs ("qat", the closer) with a warning: an export that can pass, passes."""
    if int8_graph is not None and int8_graph not in INT8_GRAPHS:
        raise RarEdgeError(f"int8 graph {int8_graph!r} is not one of {', '.join(INT8_GRAPHS)}")
    weight_bits = default_weight_bits() if weight_bits is None else weight_bits
    if weight_bits not in WEIGHT_BITS:
        raise RarEdgeError(f"weight bits {weight_bits} is not one of {', '.join(map(str, WEIGHT_BITS))}")
    source = load_source(checkpoint, preset)
    chosen = torch_programs(source, precision, target, calib)
    write = partial(_write_bundle, source, chosen, target, precision, size, dynamic, out, calib,
                    weight_bits=weight_bits, tone_head=tone_head)
    if int8_graph is not None or (target, precision) != ("onnx", "int8"):
        return write(int8_graph or INT8_GRAPHS[0])
    try:
        return write(INT8_GRAPHS[0])
    except ParityFailed as e:
        reason = "; ".join(e.failures)
        log.warning("onnxruntime's int8 graphs missed the parity bound (%s); exporting the int8 programs' own "
                    "graphs instead (--int8-graph %s)", reason, INT8_GRAPHS[1])
        try:
            return write(INT8_GRAPHS[1], fallback=reason)
        except ParityFailed as again:
            hint = weight_bits_hint(weight_bits)
            raise ParityFailed(f"parity check failed for {bundle_name(source, precision, target)} with both int8 "
                               f"graphs: {INT8_GRAPHS[0]} {reason}; {INT8_GRAPHS[1]} {'; '.join(again.failures)}; "
                               f"nothing written{hint}; or export the fp32 ONNX or the int8 ExecuTorch bundle",
                               again.failures) from None


def _write_bundle(source, chosen, target: str, precision: str, size: tuple[int, int], dynamic: bool, out: Path,
                  calib: str | None, int8_graph: str, weight_bits: int, fallback: str | None = None,
                  tone_head: str | Path | None = None) -> str:
    """One export attempt of ``export_bundle``; ``fallback`` is why onnxruntime's int8 graphs were passed over."""
    programs = chosen.parts
    height, width = size
    name = bundle_name(source, precision, target)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RarEdgeError(f"cannot create output folder {out} ({e.strerror}); choose a writable -o") from None
    manifest = build_manifest(source.model.config, source.preset, precision, target, None if dynamic else size,
                              dynamic, source.path, chosen.quantization)
    against = ""  # what the parity check compared the bundle with, when not the bundle's own runtime
    float_left: list[str] = []  # int8 ONNX graphs' quantized ops that onnxruntime still runs in float
    tone_files: list[str] = []
    try:
        with atomic_dir(out / name) as tmp:
            if tone_head is not None:  # first: the manifest the formats embed below then describes it too

                tone_files, manifest["tone"] = export_tone(target, tone_head, tmp)
            if target == "onnx":
                from .onnx import embed_metadata, export_onnx, kernel_report, ort_runner, slim, unfused

                # int8: which entry points onnxruntime's quantizer makes from float graphs (export/onnx_static.py);
                # every other quantized one is its int8 program's graph, re-typed (export/onnx_int8.py)
                quantized = quantized_entries(chosen.quantization) if precision == "int8" else ()
                by_ort = [n for n in quantized if n in ORT_QUANTIZED] if int8_graph == "ort" else []
                graphs = {**programs, **{n: g for n, g in float_programs(source).items() if n in by_ort}}
                files = export_onnx(graphs, source.model, tmp, height, width, dynamic)
                retyped = [n for n in quantized if n not in by_ort]
                # an int8 bundle's float entry points (rar-edge-s's assessor) keep float16 weights: half_weights
                kept_float = list(chosen.quantization.get("kept_float", ())) if precision == "int8" else []
                slim(tmp, files, retype=retyped, weight_bits=weight_bits, half=kept_float)
                made = {}
                if by_ort:  # the parity check below holds these graphs to the int8 programs they stand for
                    from .onnx_static import calibration_images, quantize_bundle

                    made = quantize_bundle(tmp, files, by_ort, torch_runner(programs),
                                           calibration_images(height, width, calib), calib, weight_bits)
                if retyped:
                    qat = f"the int8 programs' QDQ graph, re-typed for onnxruntime ({', '.join(retyped)})"
                    made["graph"] = f"{made['graph']}; {qat}" if made else qat
                    if not by_ort:  # what export/onnx_int8.py does to the programs' int8 (a mixed bundle: see graph)
                        made["onnx_activations"] = "uint8 asymmetric, per tensor (the programs' int8 ranges, moved by 128)"
                        made["onnx_weights"] = f"int8 symmetric, per output channel, {weight_bits_text(weight_bits)}"
                if quantized:  # onnx_weight_bits: what the runtime checks against the CPU (runtime/backends.py)
                    made["onnx_weight_bits"] = weight_bits
                    if kept_float:
                        made["onnx_float_weights"] = f"float16, computed in float32 ({', '.join(kept_float)})"
                    if fallback:
                        made["fallback"] = f"onnxruntime's quantizer missed the parity bound ({fallback})"
                    manifest["quantization"] = {**manifest["quantization"], **made}
                if precision == "int8":
                    manifest.update(kernel_report(tmp, files))
                float_left = unfused(manifest)
                embed_metadata(tmp, files, manifest)
                runner = ort_runner(tmp, files)
            elif target == "executorch":
                from .executorch import et_runner, export_executorch

                # A .pte has no metadata field: the manifest travels beside it in the bundle.
                files, manifest["delegation"] = export_executorch(programs, source.model, tmp, height, width, dynamic)
                runner = et_runner(tmp)
            else:
                from . import coreml

                files, manifest["coreml"] = coreml.export_coreml(programs, source.model, tmp, height, width, dynamic,
                                                                 precision, chosen.weight_only)
                coreml.embed_metadata(tmp, manifest)
                runner, manifest["coreml"]["parity_on"] = coreml.parity_runner(
                    tmp, programs, source.model, precision, chosen.weight_only)
                if not coreml.can_predict():  # off macOS: the torch graph it was converted from (docs/export.md)
                    against = f", against {manifest['coreml']['parity_on']}"
                    # fp32 and QAT int8 would compare that graph with itself: no figure is better than a fake one.
                    emulated = "half precision" in manifest["coreml"]["parity_on"]
                    runner = runner if emulated else None
            # Parity on real photo crops: at the bundle's fixed shape (batch 1), or two crops of another size
            # for dynamic bundles (parity.DYNAMIC_PARITY_SIZE).
            images = photo_crops(*DYNAMIC_PARITY_SIZE, count=2) if dynamic else photo_crops(height, width, count=1)
            parity = check_parity(torch_runner(programs), runner, images, precision) if runner is not None else None
            if parity is not None and not parity["passed"]:
                int8_onnx = target == "onnx" and precision == "int8"
                hint = ("; --int8-graph qat keeps the int8 programs' own graphs" if int8_onnx and int8_graph == "ort"
                        else "") + (weight_bits_hint(weight_bits) if int8_onnx else "")
                raise ParityFailed(f"parity check failed for {name}: {'; '.join(parity['failures'])}; nothing "
                                   f"written{hint}", parity["failures"])
            if target == "coreml" and not coreml.can_predict():
                manifest["parity"] = {"status": NOT_RUN, "reason": "Core ML predicts only on macOS: the package was "
                                      "verified by its spec, functions and op list",
                                      **({"emulation": {"compared": manifest["coreml"]["parity_on"], **parity}}
                                         if parity else {})}
            else:
                manifest["parity"] = {"status": "measured", **parity}
            manifest["artifacts"] = {f: sha256(tmp / f) for f in files + tone_files}
            write_manifest(tmp, manifest)
    except PermissionError as e:
        raise RarEdgeError(f"cannot write into {out} ({e.strerror}); choose a writable -o") from None
    bundle = out / name
    sizes = {f: _size(bundle / f) for f in files}
    lines = [f"exported {bundle}",
             "  " + ", ".join(f"{f} {s / 1e6:.2f} MB" for f, s in sizes.items()),
             _parity_line(precision, against, parity, manifest["parity"]["status"]),
             *([tone_summary(manifest["tone"], _size(bundle / manifest["tone"]["graph"]))] if tone_files else []),
             *([f"  warning: onnxruntime runs quantized convolutions/linears in float (slower than fp32): "
                f"{', '.join(float_left)}"] if float_left else []),
             *([f"  warning: onnxruntime's quantizer missed the parity bound ({fallback}): these are the int8 "
                f"programs' own graphs (--int8-graph {int8_graph}; slower on onnxruntime)"] if fallback else []),
             (f"next: rar-edge restore IMAGES -o OUT --bundle {bundle}" if target != "coreml" else
              f"next: on macOS, rar-edge restore IMAGES -o OUT --bundle {bundle}; in an app, load rar.mlpackage "
              "with MLModel(configuration:) per function (docs/runtime.md)")]
    return "\n".join(lines)
