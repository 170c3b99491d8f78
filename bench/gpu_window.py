"""One GPU window, one command: a finished, packed model in OUT before the window closes.

    python bench/gpu_window.py --data photos/train --val-data photos/heldout --out OUT \\
        [--minutes 9] [--preset rar-edge-s] [--init checkpoints/rar-edge-s-v4] [--batch 256] [--crop 128] [--compile]
    python bench/gpu_window.py --smoke --out OUT          # the same stages on the CPU in seconds (make test)

Stages, each printing its images/s:
1. probe: 30 steps eager (bf16 autocast, channels_last) and, with ``--compile``, 30 steps with the restore
   step compiled (compile time reported); the faster setting trains.
2. train: the student on ground truth (issue 10's measurement: distillation cost ~3x the compute for no
   measured gain) with the default synthesis generated on the GPU, for the time left less a reserve; the
   LR follows the time budget, OUT/run/last is written every minute and on SIGTERM, OUT/run/marks at
   each quarter of the budget.
3. pack: OUT/packed, a float16 weights-only copy of the best checkpoint to commit (``rar-edge pack``).
Quantization-aware training and export run on the CPU afterwards (``rar-edge distill --init OUT/packed``).
Runs from a checkout where rar_edge is not installed: ``source bench/checkout_pythonpath.sh DIR`` first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rar_edge.atomic import check_writable
from rar_edge.errors import RarEdgeError, run_guarded

#: Time kept back from training for validation, the last checkpoint and packing.
RESERVE_S = 45.0


def rate(run: Path) -> float:
    """The last logged training throughput (images/s) of a run folder; 0 when it logged none."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] \
        if (run / "log.jsonl").is_file() else []
    rates = [r["img_per_s"] for r in rows if "img_per_s" in r]
    return rates[-1] if rates else 0.0


def run_window(a: argparse.Namespace) -> dict:
    import torch

    from rar_edge.train.checkpoint import pack_checkpoint
    from rar_edge.train.trainer import TrainConfig, train

    start = time.perf_counter()
    out = Path(a.out)
    if (out / "run").exists() or (out / "window.json").exists():
        raise RarEdgeError(f"{out} already holds a GPU window's run; choose a new --out (continue a run with --init "
                           f"{out}/packed)")
    check_writable(out)
    if a.smoke:
        device, preset, batch, crop, minutes, probe_steps = "cpu", "rar-tiny", 2, 32, a.minutes or 0.15, 3
        data = val = str(smoke_photos(out / "smoke_photos"))
    else:
        if not torch.cuda.is_available():
            raise RarEdgeError("no CUDA GPU here: run this on the GPU machine, or pass --smoke for the CPU check")
        device, preset, batch, crop, minutes, probe_steps = "cuda", a.preset, a.batch, a.crop, a.minutes or 9.0, 30
        data, val = a.data, a.val_data or a.data
        if not data:
            raise RarEdgeError("pass --data (a folder of clean photos: rar-edge photos -o DIR)")
    if minutes * 60 < RESERVE_S + 10 and not a.smoke:
        raise RarEdgeError(f"--minutes {minutes:g} cannot fit a probe, training and a checkpoint; give at least 1")
    base = dict(preset=preset, data=data, val_data=val, batch=batch, crop=crop, device=device, init=a.init,
                lr=a.lr, warmup=min(100, probe_steps * 3), val_every=10**9, ckpt_every=10**9, progress=False,
                channels_last=device == "cuda", val_crop=crop)
    stages: dict[str, dict] = {}

    # 1. probe: which setting trains fastest on this GPU.
    settings = {"eager": {}} | ({"compiled": {"compile": True}} if a.compile and device == "cuda" else {})
    for name, extra in settings.items():
        t = time.perf_counter()
        run = out / f"probe_{name}"
        train(TrainConfig(**base, **extra, out=str(run), steps=probe_steps, resume=True))
        stages[f"probe {name}"] = {"img_per_s": rate(run), "seconds": time.perf_counter() - t}
        print(f"probe {name}: {stages[f'probe {name}']['img_per_s']:.0f} img/s "
              f"({stages[f'probe {name}']['seconds']:.0f} s with start-up)", flush=True)
    best = max(settings, key=lambda n: stages[f"probe {n}"]["img_per_s"])

    # 2. train for the time left.
    left_min = (minutes * 60 - (time.perf_counter() - start) - (0 if a.smoke else RESERVE_S)) / 60
    left_min = max(left_min, 0.1)
    marks = tuple(round(left_min * q, 3) for q in (0.25, 0.5, 0.75))
    run = out / "run"
    t = time.perf_counter()
    metrics = train(TrainConfig(**{**base, "val_every": 500, "ckpt_every": 500}, **settings[best], out=str(run),
                                steps=10**9, minutes=left_min, ckpt_minutes=1.0, marks=marks, resume=True))
    stages["train"] = {"img_per_s": rate(run), "seconds": time.perf_counter() - t, "setting": best,
                       "mean_gain": metrics.get("mean_gain")}
    print(f"train ({best}): {stages['train']['img_per_s']:.0f} img/s for {stages['train']['seconds']:.0f} s, "
          f"validation gain {metrics.get('mean_gain', float('nan')):+.2f} dB", flush=True)

    # 3. pack the best checkpoint for committing.
    src = run / "best" if (run / "best" / "config.json").is_file() else run / "last"
    note = (f"{preset}, {stages['train']['seconds'] / 60:.1f} min on {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}"
            f" at {stages['train']['img_per_s']:.0f} img/s, batch {batch}, crop {crop}; bench/gpu_window.py")
    packed = pack_checkpoint(src, out / "packed", note=note)
    stages["total"] = {"seconds": time.perf_counter() - start}
    (out / "window.json").write_text(json.dumps(stages, indent=2))
    print(f"packed {packed} ({note}); {stages['total']['seconds']:.0f} s in all", flush=True)
    return stages


def smoke_photos(folder: Path) -> Path:
    """A few of scikit-image's photos, small: the smoke run's data."""
    from PIL import Image

    from rar_edge.data.photos import skimage_photos

    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in list(skimage_photos().items())[:4]:
        im = Image.fromarray(arr)
        im.thumbnail((96, 96))
        im.save(folder / f"{name}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data")
    p.add_argument("--val-data")
    p.add_argument("--minutes", type=float, help="the whole window, stages included (default 9; smoke 0.15)")
    p.add_argument("--preset", default="rar-edge-s")
    p.add_argument("--init", help="start from this checkpoint (e.g. the committed one)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--compile", action="store_true", help="also probe a compiled restore step")
    p.add_argument("--smoke", action="store_true", help="tiny preset on the CPU: checks every stage in seconds")
    a = p.parse_args(argv)
    return run_guarded("gpu_window", lambda: (run_window(a), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
