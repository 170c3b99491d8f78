"""Per sample of samples/: what a bundle does through the runtime (the model card's table; a test checks it).

    python bench/samples_table.py [--bundle BUNDLE] [--budget-ms MS] [--no-denoise]

Default: the shipped default bundle, no budget (the loop's own stop rule decides). Prints one Markdown row
per sample: its degradations, the steps kept (run, stop reason; "+n": the noise stage ran after the loop), PSNR in
-> out against the clean original
and the gain, then the mean gain. tests/test_shipped.py restores the same samples and compares with the
model card's copy of this table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rar_edge.demo import REPO, restore_samples, steps_cell


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, help="exported bundle (default: the shipped default bundle)")
    p.add_argument("--budget-ms", type=float, help="latency budget per image (default: none)")
    p.add_argument("--no-denoise", action="store_true", help="the loop alone, without the noise stage")
    a = p.parse_args()
    from rar_edge.runtime import DEFAULT_BUNDLE

    with tempfile.TemporaryDirectory() as tmp:
        rows = restore_samples(a.bundle or DEFAULT_BUNDLE, REPO / "samples", Path(tmp), a.budget_ms,
                               denoise=not a.no_denoise)
    print("| sample | degradations | steps (run, stop) | PSNR in → out | gain dB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {'+'.join(r['true'])} | {steps_cell(r)} | "
              f"{r['psnr_in']:.2f} → {r['psnr_out']:.2f} | {r['psnr_out'] - r['psnr_in']:+.2f} |")
    mean = sum(r["psnr_out"] - r["psnr_in"] for r in rows) / len(rows)
    print(f"\nmean gain {mean:+.2f} dB over {len(rows)} samples")


if __name__ == "__main__":
    main()
