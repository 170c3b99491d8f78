"""A sample app on the runtime API: what a photo app does with an exported rar_edge bundle.

    python samples/app.py runs/demo/bundles/rar-edge-s-int8-onnx samples/degraded/*.png -o runs/app

No torch and no CLI: the bundle, onnxruntime (or ExecuTorch / Core ML) and Pillow. For each photo it
restores under a latency budget, tells the user what was found and how long it took, and saves the
result as a PNG in the output folder. `make demo` exports the bundle used above.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageOps

from rar_edge.atomic import atomic_path
from rar_edge.errors import RarEdgeError
from rar_edge.runtime import Restorer
from rar_edge.runtime.jpeg_grid import with_grid
from rar_edge.runtime.restorer import FOUND_AT, present

#: A degradation is reported to the user when the assessor (or, for JPEG, the block grid) gives it at least this
#: probability: the runtime's own rule (``present``), at the runtime's threshold.
SHOW_ABOVE = FOUND_AT


def describe(res) -> str:
    """One line for the user: what was found, what was done, how long it took."""
    probs = with_grid(res.degradations, res.jpeg_grid or 0.0)  # JPEG also where its 8×8 block grid shows
    found = sorted(present(res.degradations, SHOW_ABOVE, res.jpeg_grid), key=lambda name: -probs[name])
    did = "kept as is" if res.steps == 0 else f"{res.steps} restore step{'s' * (res.steps > 1)}"
    if res.tone is not None and res.tone.applied:  # --tone: the exposure stage brightened it first
        did = "exposure corrected" + ("" if res.steps == 0 else f", then {did}")
    why = "time ran out" if res.budget_bound else res.stop_reason.replace("_", " ")
    return (f"found {', '.join(found) or 'nothing certain'}; {did} (stopped: {why}); "
            f"assessed quality {res.quality[0]:.1f} -> {res.quality[res.steps]:.1f} dB; {res.ms['total']:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", help="an exported bundle folder (python -m rar_edge.export ...)")
    p.add_argument("photos", nargs="+", help="image files")
    p.add_argument("-o", "--out", default="restored", help="folder for the results (created)")
    p.add_argument("--budget-ms", type=float, default=250.0, help="latency budget per photo")
    p.add_argument("--profile", help="a device profile (rar-edge profile) to plan the budget from")
    p.add_argument("--tone", action="store_true", help="the photos are under-exposed: correct their exposure first")
    a = p.parse_args(argv)
    try:
        # Load once: it verifies the bundle's checksums, opens the backend and warms it up.
        restorer = Restorer.load(a.bundle, profile=a.profile)
    except RarEdgeError as e:
        print(f"app: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for photo in a.photos:
        try:
            with Image.open(photo) as im:
                # upright first: the runtime restores an image's pixels as they are, and the PNG written carries
                # no EXIF orientation
                upright = ImageOps.exif_transpose(im)
                res = restorer.restore(upright, budget_ms=a.budget_ms, tone=a.tone)  # a PIL image in, one out
        except (OSError, RarEdgeError) as e:  # an unreadable photo: tell the user, go on with the others
            print(f"{photo}: cannot restore ({e})", file=sys.stderr)
            failed += 1
            continue
        target = out / (Path(photo).stem + ".png")
        with atomic_path(target) as tmp:  # a temporary name, renamed once written: never half a file
            res.image.save(tmp, format="PNG")
        print(f"{Path(photo).name}: {describe(res)} -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
