"""Assessing a sample of tiles (``Restorer.load(..., assess_tiles=M)``) against assessing all of them.

    python bench/assess_tiles.py --bundle DYNAMIC_BUNDLE --photos photos/train --tile 256 --sample 4 8
    python bench/assess_tiles.py --bundle FIXED_512_BUNDLE --big --sample 16

Photos: each photo at its own size (tiled), under six cases (noise, rain, haze, low light, blur+noise,
clean; severity 0.5, one seed per photo and case): how often the sampled loop takes the same number of
steps, the mean PSNR against the clean photo with each, the largest loss, the PSNR between the two
outputs, and the total time. ``--big``: one 12 MP photo (scikit-image's astronaut, resized), 1 fixed
step, wall time with and without the sample (median of 3).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

CASES = (("noise",), ("rain",), ("haze",), ("low_light",), ("blur", "noise"), ())


def degraded_photos(folder: str, every: int):
    """(clean, degraded, case name) for every ``every``-th photo of ``folder`` and each case (uses torch)."""
    import torch

    from rar_edge.data.degrade import DEGRADATIONS, apply_degradations
    from rar_edge.data.folder import PhotoFolder

    for pi, img in enumerate(PhotoFolder(folder).images[::every]):
        clean = img.astype(np.float32) / 255.0
        x = torch.from_numpy(clean.transpose(2, 0, 1)[None].copy())
        for ci, case in enumerate(CASES):
            labels = torch.zeros(1, len(DEGRADATIONS))
            for name in case:
                labels[0, DEGRADATIONS.index(name)] = 1
            deg = apply_degradations(x, labels, labels * 0.5, torch.Generator().manual_seed(pi * 10 + ci)).degraded
            yield clean, np.ascontiguousarray(deg[0].numpy().transpose(1, 2, 0)), "+".join(case) or "clean"


def compare_on_photos(bundle: str, photos: str, tile: int, sample: int, every: int) -> dict:
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer

    full, part = Restorer.load(bundle, tile=tile), Restorer.load(bundle, tile=tile, assess_tiles=sample)
    rows = []
    for clean, deg, case in degraded_photos(photos, every):
        t0 = time.perf_counter()
        a = full.restore(deg)
        t1 = time.perf_counter()
        b = part.restore(deg)
        t2 = time.perf_counter()
        rows.append({"case": case, "tiles": a.tiles, "same_steps": a.steps == b.steps,
                     "psnr_all": min(psnr(a.image, clean), 60.0), "psnr_sample": min(psnr(b.image, clean), 60.0),
                     "psnr_between": min(psnr(a.image, b.image), 60.0), "s_all": t1 - t0, "s_sample": t2 - t1})
    def col(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    return {"tile": tile, "sample": sample, "images": len(rows), "mean_tiles": float(col("tiles").mean()),
            "same_steps": float(col("same_steps").mean()), "psnr_all": float(col("psnr_all").mean()),
            "psnr_sample": float(col("psnr_sample").mean()),
            "worst_loss_db": float((col("psnr_sample") - col("psnr_all")).min()),
            "median_psnr_between": float(np.median(col("psnr_between"))),
            "s_all": float(col("s_all").sum()), "s_sample": float(col("s_sample").sum())}


def big_photo(bundle: str, sample: int) -> dict:
    from runtime_bench import FIXED, photo_u8

    from rar_edge.runtime import Restorer

    image = photo_u8(3000, 4000)
    runners = {"all": Restorer.load(bundle), "sample": Restorer.load(bundle, assess_tiles=sample)}
    times: dict[str, list[float]] = {k: [] for k in runners}
    assess: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(3):  # interleaved, so drifts hit both alike
        for label, r in runners.items():
            t0 = time.perf_counter()
            res = r.restore(image, max_steps=1, **FIXED)
            times[label].append(time.perf_counter() - t0)
            assess[label].append(res.ms["assess"])
    return {"assess_tiles": sample, "tiles": res.tiles,
            **{f"s_{k}": float(np.median(v)) for k, v in times.items()},
            **{f"assess_ms_{k}": float(np.median(v)) for k, v in assess.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--photos")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--every", type=int, default=4, help="use every N-th photo")
    p.add_argument("--sample", type=int, nargs="+", default=[8])
    p.add_argument("--big", action="store_true", help="time a 12 MP photo instead")
    a = p.parse_args()
    if not a.big and not a.photos:
        p.error("pass --photos (or --big)")
    for m in a.sample:
        row = big_photo(a.bundle, m) if a.big else compare_on_photos(a.bundle, a.photos, a.tile, m, a.every)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
