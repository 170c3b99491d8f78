"""Parameters and GMAC per megapixel of each preset and entry point (a Markdown table for BENCHMARKS.md).

    python bench/complexity.py [--size 512]
"""

from __future__ import annotations

import argparse

from rar_edge.model import ENTRY_POINTS, PRESETS, count_complexity, create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="square input the MACs are counted at")
    a = p.parse_args()
    cols = list(ENTRY_POINTS) + ["step", "codec", "total"]
    print(f"GMAC per megapixel at {a.size}x{a.size} (conv + linear MACs); params in millions")
    print("| preset | params (M) | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in PRESETS:
        c = count_complexity(create_model(name), a.size)
        print(f"| {name} | {c['total']['params'] / 1e6:.3f} | " + " | ".join(f"{c[k]['gmac_per_mp']:.2f}" for k in cols) + " |")
    print("step = assess + restore (one loop iteration); codec = encode + decode")


if __name__ == "__main__":
    main()
