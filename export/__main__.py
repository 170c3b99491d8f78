"""``python -m rar_edge.export`` (also ``rar-edge export``): one entry point for every target.

    python -m rar_edge.export --target onnx --checkpoint runs/student/student --precision int8

Writes ``OUT/<preset>-<precision>-<target>/`` (manifest.json + artifacts) through a temporary folder:
a failed export, parity included, leaves nothing behind. Heavy imports happen after argument checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from rar_edge.errors import RarEdgeError, run_guarded

from . import INT8_GRAPHS, WEIGHT_BITS, default_weight_bits

TARGETS = ("executorch", "coreml", "onnx")
ALIASES = {"et": "executorch", "pte": "executorch", "mlpackage": "coreml", "ios": "coreml", "ort": "onnx"}
#: Precisions each target accepts, and its default.
PRECISIONS = {"executorch": ("fp32", "int8"), "coreml": ("fp16", "fp32", "int8"), "onnx": ("fp32", "int8")}
DEFAULT_PRECISION = {"executorch": "fp32", "coreml": "fp16", "onnx": "fp32"}


class ExportError(RarEdgeError):
    """A user-facing export argument error (one line)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rar_edge.export",
                                description="Export a RAR model to ExecuTorch, Core ML or ONNX bundles.")
    p.add_argument("--target",
                   help=f"required (but with --add-tone): {', '.join(TARGETS)} or all "
                        f"(aliases: {', '.join(f'{k}={v}' for k, v in ALIASES.items())})")
    p.add_argument("--checkpoint", help="folder from 'rar-edge train' (float) or 'rar-edge distill' (OUT/student, int8)")
    p.add_argument("--preset", help="preset of the shipped weights (default rar-edge-s)")
    p.add_argument("--precision", help="fp32 | fp16 | int8 (default: fp16 for Core ML, fp32 otherwise)")
    p.add_argument("--imgsz", default="512", help="input (tile) size: 512 or 512x768 (multiples of 16; default 512)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and H x W instead of a fixed tile")
    p.add_argument("--calib", metavar="DIR", help="photo folder for post-training int8 of a float checkpoint "
                   "(a distilled student's QAT int8 is more accurate)")
    p.add_argument("--int8-graph", choices=INT8_GRAPHS,
                   help="int8 ONNX only: 'ort' quantizes the float graphs with onnxruntime's own quantizer, calibrated "
                   "on the int8 programs' inputs (faster on onnxruntime); 'qat' exports the int8 programs' own "
                   "graph (default: ort, and qat where ort's graphs miss the parity bound; docs/export.md)")
    bits = p.add_mutually_exclusive_group()
    bits.add_argument("--reduce-range", action="store_true",
                      help="int8 ONNX only: 7-bit weights (onnxruntime's reduce_range) for x86 CPUs without VNNI, "
                      "whose int8 kernels can saturate on full 8-bit weights (default: 7-bit on such a CPU, where "
                      "the parity check runs, 8-bit elsewhere; docs/export.md)")
    bits.add_argument("--full-range", action="store_true",
                      help="int8 ONNX only: full 8-bit weights even on an x86 CPU without VNNI (for VNNI and ARM "
                      "devices; the parity check on such a CPU may then fail)")
    tone = p.add_mutually_exclusive_group()
    tone.add_argument("--tone-head", metavar="DIR",
                      help="the exposure stage's head every bundle carries (a rar-edge train-tone folder; default: the "
                      "shipped one): its files, which rar-edge restore --tone reads, and a float32 graph for apps "
                      "(tone.onnx, tone.pte or tone.mlpackage: thumbnail -> curve table, logit; docs/export.md)")
    tone.add_argument("--no-tone", action="store_true", help="leave the exposure stage's head out of the bundle")
    p.add_argument("--add-tone", metavar="BUNDLE",
                   help="instead of exporting: put the exposure stage (the shipped head, or --tone-head DIR) into an "
                   "exported ONNX or ExecuTorch bundle without exporting its graphs again (one exported without it, "
                   "or to change its head)")
    p.add_argument("-o", "--out", default="exports", help="output folder (default: exports)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def parse_imgsz(text: str, multiple: int = 16) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise ExportError(f"--imgsz {text!r} is not a size: use 512 or 512x768") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or any(v % multiple for v in parts):
        raise ExportError(f"--imgsz {text!r} must be one or two positive multiples of {multiple} (e.g. 512 or 512x768)")
    return parts[0], parts[1]


def resolve_targets(text: str) -> list[str]:
    name = ALIASES.get(text.lower(), text.lower())
    if name == "all":
        return list(TARGETS)
    if name not in TARGETS:
        raise ExportError(f"unknown --target {text!r}; use one of {', '.join(TARGETS)}, all, "
                          f"or an alias ({', '.join(ALIASES)})")
    return [name]


def check_args(targets: list[str], precision: str | None, calib: str | None, dynamic: bool,
               int8_graph: str | None = None, reduce_range: bool = False, full_range: bool = False) -> dict[str, str]:
    """Per-target precision after validation; raises ExportError saying what is allowed."""
    chosen = {}
    for t in targets:
        p = precision or DEFAULT_PRECISION[t]
        if p not in PRECISIONS[t]:
            raise ExportError(f"--precision {p} is not available for {t}; use one of {', '.join(PRECISIONS[t])}")
        chosen[t] = p
    if int8_graph is not None and chosen.get("onnx") != "int8":
        raise ExportError("--int8-graph chooses how int8 ONNX graphs are made: use it with --target onnx "
                          "--precision int8, or drop it")
    for flag, asked, what in (("--reduce-range", reduce_range, "7-bit"), ("--full-range", full_range, "8-bit")):
        if asked and chosen.get("onnx") != "int8":
            raise ExportError(f"{flag} makes int8 ONNX weights {what}: use it with --target onnx --precision int8, "
                              "or drop it")
    if calib is not None and set(chosen.values()) != {"int8"}:
        raise ExportError("--calib calibrates int8 activations: use it with --precision int8")
    if calib is not None and not Path(calib).is_dir():
        raise ExportError(f"--calib {calib} is not a folder; pass a folder of photos")
    if dynamic and chosen.get("executorch") == "int8":  # known before minutes of export, not after
        raise ExportError("a --dynamic int8 ExecuTorch program keeps one of the restorer's convolutions outside "
                          "XNNPACK, so it is refused (docs/export.md): drop --dynamic (the runtime tiles images at the "
                          "fixed shape) or export fp32")
    if dynamic and "coreml" in chosen:
        print("export: warning: --dynamic gives Core ML ranged input shapes, which keep the model off the Neural "
              "Engine; the default fixed tile (the runtime tiles images) runs there", file=sys.stderr)
    return chosen


def weight_bits(reduce_range: bool, full_range: bool, onnx_int8: bool) -> int:
    """int8 ONNX weight width: as asked, else this CPU's default (export.default_weight_bits), said when it is 7."""
    if reduce_range or full_range:
        return WEIGHT_BITS[1] if reduce_range else WEIGHT_BITS[0]
    bits = default_weight_bits()
    if onnx_int8 and bits == WEIGHT_BITS[1]:
        print("export: note: this CPU (x86 without VNNI) saturates full 8-bit int8 weights in onnxruntime, where "
              "the parity check runs: int8 ONNX weights are 7-bit (--full-range keeps 8 bits for VNNI and ARM "
              "devices)", file=sys.stderr)
    return bits


def default_model_note() -> str:
    """What an export without --checkpoint or --preset exports, and how it differs from the model that
    ``Restorer.load()`` and ``rar-edge restore`` run (the shipped default bundle, exported from a checkpoint
    of its own: its manifest's ``source``)."""
    from rar_edge import SHIPPED_STUDENT
    from rar_edge.runtime.restorer import DEFAULT_BUNDLE

    try:
        source = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text()).get("source")
    except (OSError, ValueError):
        source = None
    note = f"export: note: exporting the shipped student {SHIPPED_STUDENT} (its int8 programs for int8 targets)"
    if source and Path(source).name != SHIPPED_STUDENT:
        note += (f"; the default bundle that rar-edge restore runs holds another model, exported from {source}: "
                 f"export that one with --checkpoint {source} (in a source checkout)")
    return note


def run(args: argparse.Namespace) -> int:
    if args.add_tone:
        return add_tone(args)
    if not args.target:
        raise ExportError("--target is required: executorch, coreml, onnx or all (or --add-tone BUNDLE)")
    targets = resolve_targets(args.target)
    size = parse_imgsz(args.imgsz)
    precisions = check_args(targets, args.precision, args.calib, args.dynamic, args.int8_graph, args.reduce_range,
                            args.full_range)
    bits = weight_bits(args.reduce_range, args.full_range, precisions.get("onnx") == "int8")
    from rar_edge.runtime.tone import DEFAULT_TONE, ToneCurve

    tone_head = None if args.no_tone else Path(args.tone_head) if args.tone_head else DEFAULT_TONE
    if tone_head is not None:
        ToneCurve.load(tone_head)  # a bad head fails now, in one line, not after minutes of export
    if args.checkpoint is None and args.preset is None:
        print(default_model_note(), file=sys.stderr)
    from .bundle import export_bundle  # heavy: torch, onnx, coremltools

    for target, precision in precisions.items():
        print(export_bundle(target, precision, args.checkpoint, args.preset, size, args.dynamic, Path(args.out),
                            args.calib, args.int8_graph, bits, tone_head))
    return 0


def add_tone(args: argparse.Namespace) -> int:
    """``--add-tone BUNDLE [--tone-head DIR]``: the exposure stage into an exported bundle (export/tone.py)."""
    exporting = [flag for flag, given in (("--target", args.target), ("--checkpoint", args.checkpoint),
                                          ("--preset", args.preset), ("--precision", args.precision),
                                          ("--calib", args.calib), ("--int8-graph", args.int8_graph),
                                          ("--reduce-range", args.reduce_range), ("--full-range", args.full_range),
                                          ("--dynamic", args.dynamic), ("--no-tone", args.no_tone)) if given]
    if exporting:
        raise ExportError(f"--add-tone rewrites a bundle and exports nothing: drop {', '.join(exporting)} (only "
                          "--tone-head goes with it)")
    from .tone import add_tone as add
    from .tone import summary_line

    entry = add(args.add_tone, args.tone_head)["tone"]
    graph = Path(args.add_tone) / entry["graph"]
    print(f"added the exposure stage to {args.add_tone}\n{summary_line(entry, graph.stat().st_size)}\n"
          f"next: rar-edge restore IMAGES -o OUT --tone --bundle {args.add_tone}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:  # third-party narration (torch.onnx's stages) comes back with the tracebacks
        logging.getLogger("rar_edge").setLevel(logging.DEBUG)
    # torch's deepcopy of exported graphs warns about its own pytree internals: not actionable for users.
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=FutureWarning)
    # torch.onnx on dynamic batch and spatial axes that share a constraint: informational, not a problem.
    warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used", category=UserWarning)
    # torch.onnx on the int8 programs: exported graphs cannot be put in eval mode, and the parity check holds
    # the ONNX graphs to the programs' outputs anyway.
    warnings.filterwarnings("ignore", message=r"Exporting a model while it is in training mode", category=UserWarning)
    return run_guarded("export", lambda: run(args), args.debug, extra="export")


if __name__ == "__main__":
    sys.exit(main())
