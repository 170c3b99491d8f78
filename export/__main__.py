"""``python -m rar_edge.export``: the export entry point.

The exporters themselves are not built yet (tracked as issue 4); this entry point already
resolves as ``rar_edge.export`` from editable and wheel installs, parses the documented
arguments, and refuses to run with a clear message rather than pretending to export.
"""

from __future__ import annotations

import argparse
import sys

TARGETS = ("executorch", "coreml", "onnx", "all")
ALIASES = {"et": "executorch", "pte": "executorch", "mlpackage": "coreml", "ios": "coreml", "ort": "onnx"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rar_edge.export",
                                description="Export a RAR model to ExecuTorch, Core ML or ONNX bundles.")
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGETS)} (aliases: {', '.join(ALIASES)})")
    p.add_argument("--checkpoint", help="checkpoint folder written by rar-edge train / distill")
    p.add_argument("--preset", help="preset name of a shipped model")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"))
    p.add_argument("--imgsz", default="512", help="input size: 512 or 512x768")
    p.add_argument("--dynamic", action="store_true", help="dynamic H x W instead of a fixed tile")
    p.add_argument("-o", "--out", default="exports", help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = ALIASES.get(args.target, args.target)
    if target not in TARGETS:
        print(f"export: error: unknown --target {args.target!r}; use one of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    print("export: error: the exporters are not in this version of rar_edge yet (see the project's export issue); "
          "nothing was written", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
