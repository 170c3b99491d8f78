"""Training throughput (images/s) per preset at a given crop on this machine's CPU (or CUDA if present).

    python bench/train_throughput.py [--presets rar-teacher,rar-edge-s] [--crop 128] [--batch 8] [--steps 10]
        [--amp] [--profile]

Times whole optimizer steps of the real objective (unroll 3) after warm-up steps, with the batch
synthesis (crops + degradations) timed separately. Prints a Markdown table for BENCHMARKS.md.
``--amp`` trains as the trainer does on CUDA (bf16 autocast, channels_last); ``--profile`` prints the
15 costliest operators of the timed steps (torch.profiler), to see where a GPU's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

import torch

from rar_edge.data.folder import PhotoFolder
from rar_edge.model import create_model
from rar_edge.train.losses import RARObjective
from rar_edge.runtime.profiler import machine_name
from rar_edge.train.trainer import TrainConfig, training_batch


def bench(preset: str, photos: PhotoFolder, crop: int, batch: int, steps: int, warmup: int, device: torch.device,
          amp: bool = False, profile: bool = False) -> dict:
    torch.manual_seed(0)
    model = create_model(preset).to(device).train()
    if amp:
        model = model.to(memory_format=torch.channels_last)
    objective = RARObjective(model, unroll=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = TrainConfig(preset=preset, crop=crop, batch=batch)
    data_s, step_s = [], []
    prof = None
    for i in range(warmup + steps):
        if profile and i == warmup:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []))
            prof.__enter__()
        t0 = time.perf_counter()
        b, t = training_batch(photos, cfg, i, 0, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = objective(b.degraded, b.clean, b.labels, t)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= warmup:
            data_s.append(t1 - t0)
            step_s.append(t2 - t1)
    if prof is not None:
        prof.__exit__(None, None, None)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"{preset}: the 15 costliest operators over {steps} steps (data synthesis included)")
        print(prof.key_averages().table(sort_by=key, row_limit=15))
    med_data, med_step = statistics.median(data_s), statistics.median(step_s)
    return {"preset": preset, "crop": crop, "batch": batch, "data_ms": med_data * 1e3, "step_ms": med_step * 1e3,
            "img_per_s": batch / (med_data + med_step)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="rar-teacher,rar-edge-s")
    p.add_argument("--data", help="photo folder (default: scikit-image's photos)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="bf16 autocast and channels_last, as the trainer on CUDA")
    p.add_argument("--profile", action="store_true", help="print each preset's 15 costliest operators")
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.data:
        photos = PhotoFolder(a.data)
    else:
        import tempfile

        from PIL import Image

        from rar_edge.data.photos import skimage_photos

        tmp = tempfile.mkdtemp()
        for name, arr in skimage_photos().items():
            Image.fromarray(arr).save(f"{tmp}/{name}.png")
        photos = PhotoFolder(tmp)
    machine = (torch.cuda.get_device_name() if device.type == "cuda"
               else f"{machine_name()}, {torch.get_num_threads()} threads")
    print(f"machine: {machine}; torch {torch.__version__}; {date.today()}")
    rows = [bench(preset, photos, a.crop, a.batch, a.steps, a.warmup, device, a.amp, a.profile)
            for preset in a.presets.split(",")]
    print(f"| preset | crop | batch | {'bf16 ' if a.amp else ''}data ms/batch | step ms/batch | images/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['crop']} | {r['batch']} | {r['data_ms']:.0f} | {r['step_ms']:.0f} | {r['img_per_s']:.2f} |")


if __name__ == "__main__":
    main()
