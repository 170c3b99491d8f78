"""What does decoding the input's own latent cost? The measurement behind the loop's pass-through.

    python bench/round_trip.py --checkpoint rar_edge/weights/rar-edge-s --data photos/train [--images 16] [--crop 256]

Per evaluation case (rar_edge.eval.cases, the fit-stop's cases): PSNR of the degraded input and of
decode(encode(input)) against the clean original, both capped at 40 dB, and how often the round trip is
better. Where it is worse, a loop that keeps step 0 should return the input rather than its decode
(rar_edge/loop.py, pass-through; docs/model.md). A student's int8 programs are measured when the folder
has them (``--precision`` as in ``rar-edge fit-stop``).
"""

from __future__ import annotations

import argparse

import numpy as np

from rar_edge.data.folder import PhotoFolder
from rar_edge.eval.fit_stop import PSNR_CAP_DB, load_fit_model, record_trajectories


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="clean photos (training or calibration photos)")
    ap.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    args = ap.parse_args()

    model, _, precision, _ = load_fit_model(args.checkpoint, args.precision)
    clean = PhotoFolder(args.data).center_crops(args.crop)[: args.images]
    traj = record_trajectories(model, clean, cap=1)  # step 0, the round trip, is all this needs
    print(f"{args.checkpoint} ({precision}), {len(clean)} photos, {args.crop}² centre crops, PSNR capped at "
          f"{PSNR_CAP_DB:.0f} dB")
    print(f"{'case':<16} {'input':>7} {'round trip':>11} {'difference':>11} {'round trip better':>18}")
    cases = np.array(traj.cases)
    for case in dict.fromkeys(traj.cases):
        m = cases == case
        inp, rt = traj.psnr_in[m], traj.psnr[m, 0]
        print(f"{case:<16} {inp.mean():>7.2f} {rt.mean():>11.2f} {np.mean(rt - inp):>+11.2f} {np.mean(rt > inp):>18.0%}")


if __name__ == "__main__":
    main()
