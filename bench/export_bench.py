"""Export time, artifact sizes and ExecuTorch delegation per target and precision (BENCHMARKS.md).

    python bench/export_bench.py --checkpoint rar-teacher=runs/teacher/best --calib photos/heldout

Each export is one ``python -m rar_edge.export`` process (wall time includes its imports, as a user sees
it), at the default 512x512 tile, parity check included; ``--no-tone`` leaves the exposure stage out, as bundles
were before they carried it (rows comparable with those). int8 comes from ``--calib`` (post-training) for
a float checkpoint, or from the student's QAT graphs when the checkpoint is a distilled student. A preset
given without a checkpoint is exported from freshly initialised weights (sizes and times do not depend
on training; the parity check still runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [("onnx", "fp32"), ("onnx", "int8"), ("executorch", "fp32"), ("executorch", "int8"),
           ("coreml", "fp16"), ("coreml", "int8")]


def untrained_checkpoint(preset: str, folder: Path) -> Path:
    """A checkpoint folder of ``preset`` at its initial weights."""
    import torch

    from rar_edge.model import RAR
    from rar_edge.model.presets import get_preset
    from rar_edge.train.checkpoint import write_model_files

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    write_model_files(folder, RAR(get_preset(preset).config), preset, step=0, metrics={})
    return folder


def bytes_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def export_command(checkpoint: Path, target: str, precision: str, calib: str | None, imgsz: int, out: Path,
                   tone: bool = True) -> list[str]:
    """The ``python -m rar_edge.export`` command of one row (``tone=False``: ``--no-tone``, as bundles were
    before they carried the exposure stage: its seconds and files left out of the row)."""
    cmd = [sys.executable, "-m", "rar_edge.export", "--target", target, "--checkpoint", str(checkpoint),
           "--precision", precision, "--imgsz", str(imgsz), "-o", str(out), *([] if tone else ["--no-tone"])]
    quantized = (Path(checkpoint) / "int8").is_dir()
    if precision == "int8" and not quantized and calib:  # int8 activations on every target (Core ML too)
        cmd += ["--calib", calib]
    return cmd


def run(checkpoint: Path, target: str, precision: str, calib: str | None, imgsz: int, out: Path,
        tone: bool = True) -> dict:
    cmd = export_command(checkpoint, target, precision, calib, imgsz, out, tone)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        return {"target": target, "precision": precision, "error": res.stderr.strip().splitlines()[-1]}
    bundle = next(out.glob(f"*-{precision}-{target}"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    row = {"target": target, "precision": precision, "seconds": round(seconds, 1),
           "bytes": {name: bytes_of(bundle / name) for name in manifest["artifacts"]},
           "loop_psnr_db": manifest["parity"].get("loop_psnr_db"), "int8_source": (manifest.get("quantization") or {}).get("flow")}
    if target == "executorch":
        row["delegation"] = {m: {k: v[k] for k in ("delegated_ops", "non_delegated_ops")}
                             for m, v in manifest["delegation"].items()}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", default=[], metavar="PRESET=DIR",
                   help="checkpoint per preset; a bare preset name exports its initial weights")
    p.add_argument("--calib", help="photo folder for post-training int8 of float checkpoints")
    p.add_argument("--imgsz", type=int, default=512)
    p.add_argument("--no-tone", action="store_true",
                   help="export without the exposure stage, as bundles were before it: rows comparable with those")
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.checkpoint or ["rar-edge-s", "rar-teacher"]:
            preset, _, folder = item.partition("=")
            ckpt = Path(folder) if folder else untrained_checkpoint(preset, Path(tmp) / f"{preset}-init")
            for target, precision in CONFIGS:
                out = Path(tmp) / f"{preset}-{target}-{precision}"
                row = {"preset": preset, "weights": folder or "initial",
                       **run(ckpt, target, precision, args.calib, args.imgsz, out, not args.no_tone)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
