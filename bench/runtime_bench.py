"""The runtime's targets (issue 5): overhead, budgets kept, adaptive savings, 12 MP memory, seams.

    python bench/runtime_bench.py --teacher runs/teacher/best --photos photos/heldout --json runtime.json
    python bench/runtime_bench.py --latency rar_edge/weights/rar-edge-s --json latency.json
    python bench/runtime_bench.py --compare BUNDLE... [--repeats 5] [--torch-threads default,none]

``--latency CKPT`` measures only the latency table of a (distilled) checkpoint instead: fp32 and int8 on
ONNX and ExecuTorch at a fixed 512 tile, a 512² photo with 2 steps and a 12 MP photo with 1 step.
``--compare`` times bundles already exported (fixed tile), alternating processes, medians over ``--repeats``.

Bundles are exported first into a temporary folder: rar-edge-s fp32 at a fixed 512 tile for ONNX and
ExecuTorch (its initial weights: costs do not depend on training), and the teacher as a dynamic ONNX
bundle for what needs a trained model (adaptive savings, seams). Every measurement runs in its own
process (``--task``), one backend per process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Fixed steps, every entry point timed: no stop before the cap, and the last latent kept and decoded (a rule
#: that keeps the best-assessed latent may keep the input's and skip the decode: a bundle timed without it).
FIXED = dict(target_quality=1e9, min_gain=-1e9, min_change=0.0, min_better=0.0, min_detect=0.0, keep="last")


def photo_u8(h: int, w: int) -> np.ndarray:
    """A real photo (scikit-image's astronaut), resized to (h, w), uint8 RGB (no float copy on the way)."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC))


def photo(h: int, w: int) -> np.ndarray:
    """The same photo as float32 RGB in [0, 1]."""
    return photo_u8(h, w).astype(np.float32) / 255.0


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_overhead_and_budget(bundle: str, runs: int = 20, budget_runs: int = 100) -> dict:
    """Restorer vs the same entry-point calls made directly; then budgets of 2x/4x/8x encode+decode."""
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundle)
    tile = r.fixed_tile
    image = photo(*tile)
    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None])

    def raw() -> float:
        t0 = time.perf_counter()
        z = r.backend.run("encode", [x])[0]
        _, _, c = r.backend.run("assess", [z])
        for _ in range(2):
            z = r.backend.run("restore", [z, c])[0]
            _, _, c = r.backend.run("assess", [z])
        r.backend.run("decode", [z])
        return (time.perf_counter() - t0) * 1000

    raw_ms, api_ms = [], []
    for _ in range(runs):  # interleaved, so drifts hit both alike
        raw_ms.append(raw())
        t0 = time.perf_counter()
        r.restore(image, max_steps=2, **FIXED)
        api_ms.append((time.perf_counter() - t0) * 1000)
    out = {"backend": r.backend.name, "tile": list(tile), "raw_ms": float(np.median(raw_ms)),
           "restorer_ms": float(np.median(api_ms))}
    out["overhead_pct"] = 100 * (out["restorer_ms"] / out["raw_ms"] - 1)
    codec = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r.backend.run("decode", [r.backend.run("encode", [x])[0]])
        codec.append((time.perf_counter() - t0) * 1000)
    out["encode_decode_ms"] = float(np.median(codec))
    out["budgets"] = []
    for k in (2, 4, 8):
        budget = k * out["encode_decode_ms"]
        walls, steps = [], []
        for _ in range(budget_runs):
            t0 = time.perf_counter()
            res = r.restore(image, budget_ms=budget, max_steps=8, **FIXED)
            walls.append((time.perf_counter() - t0) * 1000)
            steps.append(res.steps_run)
        walls = np.array(walls)
        out["budgets"].append({"x": k, "budget_ms": budget, "met_pct": float(100 * np.mean(walls <= budget)),
                               "p95_wall_ms": float(np.percentile(walls, 95)), "mean_steps": float(np.mean(steps))})
    return out


def parse_options(texts) -> dict:
    """``["half_latents=1", "assess_tiles=4"]`` -> ``Restorer.load`` keyword arguments (integer values)."""
    return {key: int(value) for key, _, value in (t.partition("=") for t in texts)}


def task_big_photo(bundle: str, *options: str) -> dict:
    """A 12 MP uint8 photo through the 512 tile bundle: time, tiles, peak RSS of this process, and how far
    the restore raised it above the RSS just before (bundle loaded, photo in memory). ``options``:
    ``KEY=INT`` keyword arguments of ``Restorer.load`` (e.g. ``half_latents=1``), and ``steps=N`` fixed
    steps (default 1; the shipped rule's cap is 6)."""
    from rar_edge.runtime import Restorer

    height, width = 3000, 4000
    kwargs = parse_options(options)
    steps = kwargs.pop("steps", 1)
    r = Restorer.load(bundle, **kwargs)
    image = photo_u8(height, width)
    before_mb = rss_mb()
    t0 = time.perf_counter()
    res = r.restore(image, max_steps=steps, **FIXED)
    ms = (time.perf_counter() - t0) * 1000
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"backend": r.backend.name, "megapixels": height * width / 1e6, "tiles": res.tiles, "ms": ms,
            "peak_rss_mb": peak_mb, "rss_before_mb": before_mb, "restore_peak_extra_mb": peak_mb - before_mb,
            "steps": res.steps_run, "shape_ok": res.image.shape == image.shape}


def task_latency(bundle: str, runs: int | str = 10, torch_threads: str = "default") -> dict:
    """A 512² photo, 2 fixed steps: median ms per entry point (summed over calls) and in total.

    ``torch_threads`` (ExecuTorch bundles): "default" loads the backend as users get it, "none" leaves torch's
    threads alone, a number sets them (runtime/backends.py).
    """
    from rar_edge.runtime import Restorer

    executorch = json.loads((Path(bundle) / "manifest.json").read_text())["target"] == "executorch"
    options = {} if torch_threads == "default" or not executorch else {
        "torch_threads": None if torch_threads == "none" else int(torch_threads)}
    r = Restorer.load(bundle, **options)
    image = photo(*r.fixed_tile)
    results = [r.restore(image, max_steps=2, **FIXED) for _ in range(int(runs))]
    threads = None
    if executorch:
        import torch

        threads = torch.get_num_threads()  # what the backend left torch at (the setting measured)
    return {"backend": r.backend.name, "tile": list(r.fixed_tile), "steps": 2, "runs": runs, "torch_threads": threads,
            "ms": {k: float(np.median([res.ms[k] for res in results])) for k in results[0].ms}}


def degraded_set(photos: str, crop: int, count: int, seed: int = 0):
    """(clean, degraded) crops of held-out photos at mixed severities (bench-side: uses torch)."""
    import torch

    from rar_edge.data.degrade import degrade
    from rar_edge.data.folder import PhotoFolder

    clean = PhotoFolder(photos).random_crops(count, crop, torch.Generator().manual_seed(seed))
    degraded = degrade(clean, seed=seed).degraded
    return clean.numpy().transpose(0, 2, 3, 1), np.clip(degraded.numpy().transpose(0, 2, 3, 1), 0, 1)


def task_adaptive(bundle: str, photos: str, crop: int = 256, count: int = 24) -> dict:
    """The stop rule against always running the step cap, on the teacher."""
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer

    r = Restorer.load(bundle, tile=crop)
    clean, degraded = degraded_set(photos, crop, count)
    degraded_mask = [psnr(d, c) < 60 for c, d in zip(clean, degraded)]  # the set holds clean photos too
    rows = {}
    for name, kwargs in (("adaptive", {}), ("step cap", dict(FIXED))):
        steps, out_db, in_db, clean_db, ms = [], [], [], [], []
        for c, d, is_degraded in zip(clean, degraded, degraded_mask):
            res = r.restore(d, **kwargs)
            steps.append(res.steps_run)
            ms.append(res.ms["total"])
            if is_degraded:
                in_db.append(psnr(d, c))
                out_db.append(psnr(res.image, c))
            else:
                clean_db.append(psnr(res.image, c))
        rows[name] = {"mean_steps_run": float(np.mean(steps)), "degraded_psnr_in_db": float(np.mean(in_db)),
                      "degraded_psnr_out_db": float(np.mean(out_db)), "clean_psnr_out_db": float(np.mean(clean_db)),
                      "clean_images": len(clean_db), "mean_ms": float(np.mean(ms))}
    return {"images": count, "crop": crop, "max_steps": r.rule.max_steps, **rows}


def task_seams(bundle: str, photos: str, side: int = 1024, tile: int = 512) -> dict:
    """PSNR between the tiled and the untiled restore of one side x side degraded photo (2 fixed steps)."""
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer

    _, degraded = degraded_set(photos, side, 1, seed=3)
    whole = Restorer.load(bundle, tile=side, warmup=False).restore(degraded[0], max_steps=2, **FIXED)
    tiled = Restorer.load(bundle, tile=tile, warmup=False).restore(degraded[0], max_steps=2, **FIXED)
    return {"side": side, "tile": tile, "tiles": tiled.tiles, "psnr_tiled_vs_untiled_db": psnr(tiled.image, whole.image)}


TASKS = {"overhead": task_overhead_and_budget, "big": task_big_photo, "adaptive": task_adaptive, "seams": task_seams,
         "latency": task_latency}


def compare(bundles: list[str], repeats: int, settings: list[str]) -> dict:
    """512² latency of exported bundles: every (bundle, setting) once per round in its own process, ``repeats``
    rounds, so this host's drift falls on all alike; prints the median per entry point and the total's spread."""
    if repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    bad = [t for t in settings if t not in ("default", "none") and not (t.isdigit() and int(t) >= 1)]
    if bad:
        sys.exit(f"error: --torch-threads takes default, none or a thread count >= 1, comma-separated; got {', '.join(map(repr, bad))}")
    targets = {}
    for b in bundles:
        try:
            targets[b] = json.loads((Path(b) / "manifest.json").read_text())["target"]
        except (OSError, ValueError, KeyError):
            sys.exit(f"error: {b} is not an exported bundle (no readable manifest.json); "
                     "pass folders from python -m rar_edge.export")
    # The torch-thread settings are the ExecuTorch backend's: other bundles run once, as they are.
    keys = [(b, t) for b in bundles for t in (settings if targets[b] == "executorch" else ["default"])]
    runs: dict = {k: [] for k in keys}
    runs_threads: dict = {}
    for _ in range(repeats):
        for b, t in keys:
            res = spawn("latency", b, "10", t)
            if "error" in res:
                sys.exit(f"latency of {b} failed: {res['error']}")
            runs[(b, t)].append(res["ms"])
            runs_threads[(b, t)] = res["torch_threads"]
    entries = ["encode", "assess", "restore", "decode", "overhead", "total"]
    print("| bundle | torch threads | " + " | ".join(entries) + " | total min–max |")
    print("|---|---|" + "---|" * (len(entries) + 1))
    out = {}
    for b, t in keys:
        med = {e: float(np.median([r[e] for r in runs[(b, t)]])) for e in entries}
        totals = [r["total"] for r in runs[(b, t)]]
        print(f"| {Path(b).parent.name}/{Path(b).name} | {t} | " + " | ".join(f"{med[e]:.1f}" for e in entries)
              + f" | {min(totals):.1f}–{max(totals):.1f} |", flush=True)
        out[f"{b}|{t}"] = {"median_ms": med, "totals": totals, "torch_threads": runs_threads[(b, t)]}
    return out


def spawn(task: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--task", task, *args], capture_output=True, text=True)
    if res.returncode != 0:
        return {"task": task, "error": res.stderr.strip().splitlines()[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def export(args: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "rar_edge.export", *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"export failed: {res.stderr.strip().splitlines()[-1]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", help="trained teacher checkpoint (adaptive savings, seams)")
    p.add_argument("--photos", help="held-out photo folder")
    p.add_argument("--latency", metavar="CKPT", help="only the latency table of this distilled checkpoint")
    p.add_argument("--compare", nargs="+", metavar="BUNDLE",
                   help="only the 512² latency of these exported bundles, one process each, alternating")
    p.add_argument("--repeats", type=int, default=5, help="--compare: processes per bundle and setting (median)")
    p.add_argument("--torch-threads", default="default",
                   help="--compare: comma-separated settings for ExecuTorch bundles: default, none or a number")
    p.add_argument("--json")
    p.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.task:
        print(json.dumps(TASKS[a.task](*a.args)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from export_bench import untrained_checkpoint

    results: dict = {}
    if a.compare:
        results = compare(a.compare, a.repeats, a.torch_threads.split(","))
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
        return
    if a.latency:
        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "int8"):
                for target in ("onnx", "executorch"):
                    t0 = time.perf_counter()
                    export(["--target", target, "--checkpoint", a.latency, "--precision", precision, "-o", tmp])
                    bundle = next(Path(tmp).glob(f"*-{precision}-{target}"))
                    row = {"export_s": time.perf_counter() - t0, "512": spawn("latency", str(bundle)),
                           "12mp": spawn("big", str(bundle))}
                    results[f"{precision}_{target}"] = row
                    print(json.dumps({f"{precision}_{target}": row}), flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        edge = untrained_checkpoint("rar-edge-s", Path(tmp) / "edge")
        for target in ("onnx", "executorch"):
            export(["--target", target, "--checkpoint", str(edge), "-o", tmp])
            bundle = f"{tmp}/rar-edge-s-fp32-{target}"
            results[f"overhead_{target}"] = spawn("overhead", bundle)
            print(json.dumps(results[f"overhead_{target}"]), flush=True)
        results["big_onnx"] = spawn("big", f"{tmp}/rar-edge-s-fp32-onnx")
        print(json.dumps(results["big_onnx"]), flush=True)
        if a.teacher and a.photos:
            export(["--target", "onnx", "--checkpoint", a.teacher, "--dynamic", "-o", f"{tmp}/teacher"])
            bundle = f"{tmp}/teacher/rar-teacher-fp32-onnx"
            for task in ("adaptive", "seams"):
                results[task] = spawn(task, bundle, a.photos)
                print(json.dumps(results[task]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
