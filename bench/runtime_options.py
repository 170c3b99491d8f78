"""The runtime's speed/memory options against its defaults: ``assess_tiles=M`` (assess a sample of tiles)
and ``half_latents=1`` (float16 latents between calls), as ``Restorer.load`` keyword arguments.

    python bench/runtime_options.py --bundle DYNAMIC_BUNDLE --photos photos/train --tile 256 \
        --options assess_tiles=4 assess_tiles=8 half_latents=1
    python bench/runtime_options.py --bundle FIXED_512_BUNDLE --big --options assess_tiles=16 half_latents=1

Photos: each photo at its own size (tiled), under six cases (noise, rain, haze, low light, blur+noise,
clean; severity 0.5, one seed per photo and case): how often the loop with the option takes the same
number of steps as the default one, the mean PSNR against the clean photo with each, the largest loss,
the PSNR between the two outputs, and the total time. ``--big``: one 12 MP photo (scikit-image's
astronaut, resized), 1 fixed step, wall time with and without the option (median of 3, interleaved).
Memory: ``python bench/runtime_bench.py --task big BUNDLE half_latents=1``.
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


def compare_on_photos(bundle: str, photos: str, tile: int, option: dict, every: int) -> dict:
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer

    full, part = Restorer.load(bundle, tile=tile), Restorer.load(bundle, tile=tile, **option)
    rows = []
    for clean, deg, case in degraded_photos(photos, every):
        t0 = time.perf_counter()
        a = full.restore(deg)
        t1 = time.perf_counter()
        b = part.restore(deg)
        t2 = time.perf_counter()
        rows.append({"case": case, "tiles": a.tiles, "same_steps": a.steps == b.steps,
                     "psnr_default": min(psnr(a.image, clean), 60.0), "psnr_option": min(psnr(b.image, clean), 60.0),
                     "psnr_between": min(psnr(a.image, b.image), 60.0), "s_default": t1 - t0, "s_option": t2 - t1})
    def col(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    return {"tile": tile, "option": option, "images": len(rows), "mean_tiles": float(col("tiles").mean()),
            "same_steps": float(col("same_steps").mean()), "psnr_default": float(col("psnr_default").mean()),
            "psnr_option": float(col("psnr_option").mean()),
            "worst_loss_db": float((col("psnr_option") - col("psnr_default")).min()),
            "median_psnr_between": float(np.median(col("psnr_between"))),
            "s_default": float(col("s_default").sum()), "s_option": float(col("s_option").sum())}


def big_photo(bundle: str, option: dict) -> dict:
    from runtime_bench import FIXED, photo_u8

    from rar_edge.runtime import Restorer

    image = photo_u8(3000, 4000)
    runners = {"default": Restorer.load(bundle), "option": Restorer.load(bundle, **option)}
    times: dict[str, list[float]] = {k: [] for k in runners}
    assess: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(3):  # interleaved, so drifts hit both alike
        for label, r in runners.items():
            t0 = time.perf_counter()
            res = r.restore(image, max_steps=1, **FIXED)
            times[label].append(time.perf_counter() - t0)
            assess[label].append(res.ms["assess"])
    return {"option": option, "tiles": res.tiles,
            **{f"s_{k}": float(np.median(v)) for k, v in times.items()},
            **{f"assess_ms_{k}": float(np.median(v)) for k, v in assess.items()}}


def main() -> None:
    from runtime_bench import parse_options

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--photos")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--every", type=int, default=4, help="use every N-th photo")
    p.add_argument("--options", nargs="+", required=True, help="KEY=INT Restorer.load options, one run each")
    p.add_argument("--big", action="store_true", help="time a 12 MP photo instead")
    a = p.parse_args()
    if not a.big and not a.photos:
        p.error("pass --photos (or --big)")
    for text in a.options:
        option = parse_options([text])
        row = big_photo(a.bundle, option) if a.big else compare_on_photos(a.bundle, a.photos, a.tile, option, a.every)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
