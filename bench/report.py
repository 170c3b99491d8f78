"""Quality report on held-out photos: input, classical baselines, teacher, student fp32, student int8
through onnxruntime and through ExecuTorch (issue 6's benchmark report).

    python bench/report.py [--teacher runs/teacher/best] --student rar_edge/weights/rar-edge-s \\
        --photos photos/heldout --syntheses v2,albumentations --json report.json --plot docs/figures/report_psnr.png

Each test synthesis (``--syntheses``) gets its own table: ``v2`` is the training synthesis, ``albumentations``
independent code no model trains on (the stand-in for users' photos, docs/degradations.md); ``v1`` is what
previews 1-6 trained on.

Every held-out photo gives ``--crops`` random crops; each crop goes through every evaluation case (the six
single degradations, four composites, clean) with severities drawn in [0.2, 0.9] from a fixed seed. RAR
models run their adaptive loop with the checkpoint's defaults; int8 runs through the runtime's bundles,
once more with the loop always running to its step cap (the adaptive loop's saving, measured).

PSNR is capped at ``PSNR_CAP_DB`` per image before averaging: a crop returned unchanged (the clean input,
or a RAR loop's pass-through) has infinite PSNR, which would make the whole column's mean infinite. For
the clean case the report also counts the crops returned unchanged and gives the lowest PSNR.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from baselines import METHODS, apply, ffdnet_method  # noqa: E402

#: Per-image PSNR ceiling (dB) for the means: an exact copy counts as this, not as infinity.
PSNR_CAP_DB = 100.0
#: A crop counts as harmed when its output is this many dB below its input (``harmed`` in evaluate's results).
HARM_DB = 1.0


def gain_db(restored: np.ndarray, degraded: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(capped PSNR of ``restored``, its gain over ``degraded``'s capped PSNR) against ``clean``; both clipped
    to [0, 1] first. One rule for every figure that says how much a method helped or harmed a crop."""
    from rar_edge.eval.metrics import psnr

    p = min(psnr(np.clip(restored, 0, 1), clean), PSNR_CAP_DB)
    return p, p - min(psnr(np.clip(degraded, 0, 1), clean), PSNR_CAP_DB)


def test_set(photos: str, crops: int, crop: int, seed: int = 0, synthesis: str = "v2"):
    """(clean crops (N,H,W,3), degraded (N*cases,H,W,3), case name per degraded row, clean index per row)."""
    import torch

    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.cases import make_cases

    folder = PhotoFolder(photos)
    clean = folder.random_crops(crops * len(folder.images), crop, torch.Generator().manual_seed(seed))
    batch, names = make_cases(clean, seed=seed, synthesis=synthesis)
    n = clean.shape[0]
    return (clean.numpy().transpose(0, 2, 3, 1), batch.degraded.clamp(0, 1).numpy().transpose(0, 2, 3, 1), names,
            [i % n for i in range(len(names))])


def torch_restorer(checkpoint: str):
    import torch

    from rar_edge.train.checkpoint import load_model

    model, _ = load_model(checkpoint)

    def run(x: np.ndarray) -> tuple[np.ndarray, int]:
        with torch.no_grad():
            res = model.restore_loop(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])[0]
        return res.image.numpy().transpose(1, 2, 0), res.steps_run

    return run


def runtime_restorer(student: str, target: str, crop: int, folder: Path, **rule):
    """The int8 student's bundle for ``target`` (exported into ``folder`` once) run by the runtime.

    ``rule``: stop-rule overrides for ``Restorer.restore`` (default: the bundle's loop defaults).
    """
    from rar_edge.export.__main__ import main as export_main
    from rar_edge.runtime import Restorer

    if not any(folder.glob(f"*-int8-{target}")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = export_main(["--target", target, "--checkpoint", student, "--precision", "int8",
                                "--imgsz", str(crop), "-o", str(folder)])
        if code != 0:
            raise SystemExit(f"export {target} failed: {err.getvalue().strip().splitlines()[-1]}")
    # torch_threads=None: this process runs the teacher and the float student in torch too; the ExecuTorch
    # backend would otherwise set torch to one thread for all of them (runtime/backends.py).
    r = Restorer.load(next(folder.glob(f"*-int8-{target}")), **({"torch_threads": None} if target == "executorch" else {}))

    def run(x: np.ndarray) -> tuple[np.ndarray, int]:
        res = r.restore(x, **rule)
        return res.image, res.steps_run

    return run


def evaluate(methods: dict, clean, degraded, names, index) -> dict:
    """Per method and case: mean PSNR (capped at PSNR_CAP_DB per image), SSIM, steps, ms; the share of
    crops returned unchanged and the lowest PSNR; each crop's gain over its input: the lowest (``gain_min``)
    and the share at least HARM_DB below the input (``harmed``: a mean hides a few ruined photos)."""
    from rar_edge.eval.metrics import ssim

    out: dict = {}
    for mname, fn in methods.items():
        acc: dict = defaultdict(lambda: defaultdict(list))
        t0 = time.perf_counter()
        for x, case, i in zip(degraded, names, index):
            t = time.perf_counter()
            y, steps = fn(x)
            ms = (time.perf_counter() - t) * 1000
            unchanged = float(np.array_equal(y, x))
            y = np.clip(y, 0, 1)
            p, gain = gain_db(y, x, clean[i])
            for k, v in (("psnr", p), ("ssim", ssim(y, clean[i])), ("steps", steps), ("ms", ms),
                         ("unchanged", unchanged), ("harmed", float(gain <= -HARM_DB)), ("gain", gain)):
                acc[case][k].append(v)
        out[mname] = {case: {k: float(np.mean(v)) for k, v in d.items()}
                      | {"psnr_min": float(min(d["psnr"])), "gain_min": float(min(d["gain"]))}
                      for case, d in acc.items()}
        print(f"{mname}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def markdown(results: dict, cases: list[str], classical: list[str]) -> str:
    rows = ["| method | " + " | ".join(cases) + " | mean (degraded) |", "|---" * (len(cases) + 2) + "|"]
    best = {c: max(classical, key=lambda m: results[m][c]["psnr"]) for c in cases}
    results = dict(results)
    results["best classical (per type)"] = {c: results[best[c]][c] for c in cases}
    for m, per in results.items():
        degraded_cases = [c for c in cases if c != "clean"]
        mean = np.mean([per[c]["psnr"] for c in degraded_cases])
        rows.append(f"| {m} | " + " | ".join(f"{per[c]['psnr']:.2f}" for c in cases) + f" | {mean:.2f} |")
    rows.append("")
    rows.append("best classical per type: " + ", ".join(f"{c}: {best[c]}" for c in cases))
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", help="a float teacher to compare (optional)")
    p.add_argument("--student", required=True, help="distilled student folder (float weights + int8/)")
    p.add_argument("--photos", required=True, help="held-out photos")
    p.add_argument("--crops", type=int, default=2, help="crops per photo")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--json")
    p.add_argument("--plot", help="PNG of PSNR per case and method (first synthesis)")
    p.add_argument("--syntheses", default="v2,albumentations", help="test syntheses, comma-separated")
    a = p.parse_args()
    reports = {}
    for synthesis in a.syntheses.split(","):
        print(f"\n## test synthesis: {synthesis}\n", flush=True)
        reports[synthesis] = report_one(a, synthesis, a.plot if not reports else None)
    if a.json:
        Path(a.json).write_text(json.dumps(reports, indent=1) + "\n")


def report_one(a: argparse.Namespace, synthesis: str, plot: str | None) -> dict:
    """The tables of one test synthesis; returns its results."""
    clean, degraded, names, index = test_set(a.photos, a.crops, a.crop, synthesis=synthesis)
    methods: dict = {"input": lambda x: (x, 0)}
    classical = dict(METHODS)
    ff = ffdnet_method()
    if ff is not None:
        classical["ffdnet"] = ff
    methods.update({k: (lambda f: lambda x: (apply(f, x), 0))(f) for k, f in classical.items()})
    with tempfile.TemporaryDirectory() as tmp:
        if a.teacher:
            methods["teacher"] = torch_restorer(a.teacher)
        methods["student fp32 (torch)"] = torch_restorer(a.student)
        methods["student int8 (onnxruntime)"] = runtime_restorer(a.student, "onnx", a.crop, Path(tmp))
        methods["student int8 (ExecuTorch)"] = runtime_restorer(a.student, "executorch", a.crop, Path(tmp))
        # The adaptive loop against always running the step cap and decoding the last step (fixed steps).
        methods["student int8, step cap (onnxruntime)"] = runtime_restorer(
            a.student, "onnx", a.crop, Path(tmp), target_quality=1e9, min_gain=-1e9, min_change=0.0, keep="last",
            min_better=0.0, min_detect=0.0)
        results = evaluate(methods, clean, degraded, names, index)
    cases = list(dict.fromkeys(names))
    print(markdown(results, cases, list(classical)))
    for m in [m for m in ("teacher", "student int8 (onnxruntime)", "student int8, step cap (onnxruntime)") if m in results]:
        print(f"{m}: mean steps " + ", ".join(f"{c} {results[m][c]['steps']:.2f}" for c in cases))
    if "clean" in cases:
        print("clean crops returned unchanged, and the lowest PSNR: " + ", ".join(
            f"{m} {r['clean']['unchanged']:.0%} / {r['clean']['psnr_min']:.2f} dB" for m, r in results.items()
            if m != "input"))
    if plot:
        from rar_edge.viz import line_plot

        keep = [m for m in ("input", "teacher", "student int8 (onnxruntime)") if m in results]
        series = {m: [results[m][c]["psnr"] for c in cases] for m in keep}
        series["best classical"] = [max(results[m][c]["psnr"] for m in classical) for c in cases]
        line_plot(series, plot, "PSNR per case (x: " + ", ".join(f"{i}={c}" for i, c in enumerate(cases))[:110] + ")",
                  "case", "PSNR (dB)", size=(900, 440))
    return {"cases": cases, "images_per_case": len(clean), "results": results}


if __name__ == "__main__":
    main()
