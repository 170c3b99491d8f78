"""onnxruntime's own static int8 quantization of an fp32 ONNX bundle, against the bundle and the shipped int8.

    python bench/onnx_static_int8.py FP32_ONNX_BUNDLE --photos photos/heldout [--int8 INT8_ONNX_BUNDLE]
        [--side 256] [--runs 30] [--threads 2] [--out DIR]

Issue 23's second route to an int8 ONNX bundle that onnxruntime runs fast: instead of the QAT student's
PT2E QDQ graphs (re-typed by export/onnx_int8.py), quantize each fp32 graph with
``onnxruntime.quantization.quantize_static`` (QDQ, uint8 activations, per-channel int8 weights, MinMax
calibration on latents of the given photos, lightly noised so the calibration sees degraded inputs).
Reports, per entry point at a fixed ``--side`` tile: the median time of fp32, of the static int8 graph
and of ``--int8``'s graph (when its tile matches), file sizes, and the static graph's output SNR against
fp32 on the calibration inputs. A measurement for BENCHMARKS.md and the issue, not an export option.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import median_ms, ort_session  # noqa: E402  (the same session options and timing)

ENTRIES = ("encode", "restore", "decode")  # the assessor stays float (BENCHMARKS.md, "Latency")


def photo_tiles(folder: str, side: int, count: int = 12) -> list[np.ndarray]:
    """Centre tiles (1,3,side,side) in [0,1] of the first ``count`` photos, with mild noise added."""
    from PIL import Image

    tiles = []
    photos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for i, path in enumerate(photos[:count]):
        im = Image.open(path).convert("RGB")
        w, h = im.size
        left, top = (w - side) // 2, (h - side) // 2
        x = np.asarray(im.crop((left, top, left + side, top + side)), np.float32).transpose(2, 0, 1)[None] / 255
        tiles.append(np.clip(x + np.random.default_rng(i).normal(0, 0.05, x.shape), 0, 1).astype(np.float32))
    return tiles


def calibration(bundle: Path, tiles: list[np.ndarray], threads: int) -> dict[str, list[list[np.ndarray]]]:
    """Each entry point's inputs for the tiles, computed by the fp32 bundle itself."""
    enc, ass = (ort_session(bundle / f"{n}.onnx", threads) for n in ("encode", "assess"))
    feeds: dict[str, list[list[np.ndarray]]] = {n: [] for n in ENTRIES}
    for x in tiles:
        z = enc.run(None, {enc.get_inputs()[0].name: x})[0]
        cond = ass.run(None, {ass.get_inputs()[0].name: z})[2]
        feeds["encode"].append([x])
        feeds["restore"].append([z, cond])
        feeds["decode"].append([z])
    return feeds


def quantize(src: Path, dst: Path, inputs: list[list[np.ndarray]]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in ort_session(src, 1).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else dict(zip(names, x))

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fp32", help="an fp32 ONNX bundle (dynamic or of --side)")
    p.add_argument("--photos", required=True)
    p.add_argument("--int8", help="an int8 ONNX bundle to time beside (skipped where its tile is not --side)")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="keep the static int8 graphs here (default: a temporary folder)")
    a = p.parse_args(argv)
    fp32 = Path(a.fp32)
    if a.out and Path(a.out).resolve() == fp32.resolve():
        p.error("--out must not be the fp32 bundle: its graphs would be overwritten")
    feeds = calibration(fp32, photo_tiles(a.photos, a.side), a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in ENTRIES:
            static = out / f"{name}.onnx"
            quantize(fp32 / f"{name}.onnx", static, feeds[name])
            ref, q = ort_session(fp32 / f"{name}.onnx", a.threads), ort_session(static, a.threads)
            names = [i.name for i in ref.get_inputs()]
            err = sig = 0.0
            for x in feeds[name]:
                r, y = ref.run(None, dict(zip(names, x)))[0], q.run(None, dict(zip(names, x)))[0]
                err, sig = err + float(np.sum((y - r) ** 2)), sig + float(np.sum(r ** 2))
            x = dict(zip(names, feeds[name][0]))
            shipped = "—"
            if a.int8:
                s = ort_session(Path(a.int8) / f"{name}.onnx", a.threads)
                fixed = s.get_inputs()[0].shape
                if all(isinstance(d, int) for d in fixed) and list(fixed) != list(x[names[0]].shape):
                    shipped = "(other tile)"
                else:
                    feed = dict(zip([i.name for i in s.get_inputs()], feeds[name][0]))
                    shipped = f"{median_ms(lambda: s.run(None, feed), a.runs):.2f}"
            t32, t8 = median_ms(lambda: ref.run(None, x), a.runs), median_ms(lambda: q.run(None, x), a.runs)
            size32, size8 = (fp32 / f"{name}.onnx").stat().st_size, static.stat().st_size
            rows.append(f"| {name} | {t32:.2f} | {t8:.2f} ({t8 / t32:.2f}×) | {shipped} | {size32 / 1e6:.2f} | "
                        f"{size8 / 1e6:.2f} ({size8 / size32:.0%}) | {10 * np.log10(sig / max(err, 1e-30)):.1f} |")
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    machine = platform.processor() or platform.machine()
    print(f"`python bench/onnx_static_int8.py {command}` — {date.today()}, {machine}, {a.threads} threads, "
          f"{a.side}² tile, median of {a.runs}\n")
    print("| entry | fp32 ms | static int8 ms | --int8 ms | fp32 MB | static int8 MB "
          "| SNR vs fp32 dB (calibration inputs) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
