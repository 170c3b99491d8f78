"""Does the latency budget hold for any sequence of photos? (issue 21: the budget is a promise for the whole call)

    python bench/budget_sequence.py [--bundle DIR] [--budgets 150,500,2000] [--calls 24] [--json out.json]

An app restores photos of every size, one after another, from several threads. Per budget level this
opens a fresh Restorer as an app does (``Restorer.load``: its warm-up measures one tile; the first calls
at other sizes know no measured costs of theirs yet), then restores a sequence of noisy photos whose
sizes are drawn at random from 256² to 12 MP (seeded: the same sequence at every level), first from one
thread, then the same sequence split over two threads sharing the Restorer. A call is within budget when
its total time (``res.ms["total"]``: from entering ``restore()``, the wait for the lock included) is at
most the budget. Prints one Markdown row per level and threading: the share
of calls within budget, the p99 and largest overrun, the mean steps, and how many calls skipped the model.
Default bundle: the shipped one (rar_edge/weights/bundles). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import date

import numpy as np

#: (height, width) of the photos drawn: 256² to 12 MP.
SIZES = [(256, 256), (512, 512), (768, 1024), (1080, 1920), (2304, 1536), (3000, 4000)]


def noisy_photo(h: int, w: int, seed: int) -> np.ndarray:
    """scikit-image's astronaut resized to (h, w) with Gaussian noise (sigma 20/255): a photo the model steps on."""
    from PIL import Image
    from skimage import data

    base = np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 20.0, base.shape).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def run_level(bundle, budget: float, order: list[int], photos: dict, threads: int) -> list[dict]:
    """Restore the sequence under ``budget`` from a cold Restorer, split round-robin over ``threads`` threads."""
    from rar_edge.runtime import Restorer

    restorer = Restorer.load(bundle)
    rows: list[dict] = []
    lock = threading.Lock()

    def worker(part: list[int]) -> None:
        for k in part:
            res = restorer.restore(photos[k], budget_ms=budget)
            with lock:
                rows.append({"size": list(SIZES[k]), "total_ms": res.ms["total"], "wait_ms": res.ms["wait"],
                             "steps": res.steps_run, "skipped": res.model_skipped, "cost_unknown": res.cost_unknown})

    parts = [order[i::threads] for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(part,)) for part in parts]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return rows


def summarise(rows: list[dict], budget: float) -> dict:
    over = np.array([r["total_ms"] - budget for r in rows])
    return {"calls": len(rows), "within": float(np.mean(over <= 0)),
            "p99_over_ms": float(max(0.0, np.percentile(over, 99))),
            "max_over_ms": float(max(0.0, over.max())), "mean_steps": float(np.mean([r["steps"] for r in rows])),
            "skipped": int(sum(r["skipped"] for r in rows))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", help="bundle folder (default: the shipped one)")
    p.add_argument("--budgets", default="150,500,2000", help="budget levels in ms, comma-separated")
    p.add_argument("--calls", type=int, default=24, help="photos per sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every call's row here")
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    order = [int(k) for k in rng.integers(0, len(SIZES), a.calls)]
    photos = {k: noisy_photo(*SIZES[k], seed=k) for k in sorted(set(order))}
    from rar_edge.runtime.profiler import machine_name

    print(f"machine: {machine_name()}; {date.today()}; "
          f"{a.calls} calls, sizes {sorted({f'{SIZES[k][0]}x{SIZES[k][1]}' for k in order})}")
    print("| budget ms | threads | calls | within budget | p99 overrun ms | largest overrun ms | mean steps "
          "| model skipped |")
    print("|---|---|---|---|---|---|---|---|")
    out = {}
    for budget in (float(b) for b in a.budgets.split(",")):
        for threads in (1, 2):
            rows = run_level(a.bundle, budget, order, photos, threads)
            s = summarise(rows, budget)
            out[f"{budget:g}ms/{threads}t"] = {**s, "rows": rows}
            print(f"| {budget:g} | {threads} | {s['calls']} | {s['within']:.0%} | {s['p99_over_ms']:.1f} | "
                  f"{s['max_over_ms']:.1f} | {s['mean_steps']:.2f} | {s['skipped']} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
