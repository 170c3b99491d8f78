"""Time to prepare each entry point for QAT with XNNPACKQuantizer vs CoreMLQuantizer (the Core ML decision).

    python bench/quantizer_prepare.py [--preset rar-edge-s]

Prints a Markdown table for BENCHMARKS.md: seconds of ``prepare_qat_pt2e`` per entry point and the number of
fake-quant modules each quantizer inserted.
"""

from __future__ import annotations

import argparse
import time

import torch

from rar_edge.model import ENTRY_POINTS, create_model
from rar_edge.quantize.qat import export_graph
from rar_edge.quantize.quantizers import make_quantizer


def coreml_quantizer():
    import coremltools as ct
    from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

    config = ct.optimize.torch.quantization.LinearQuantizerConfig.from_dict({
        "global_config": {"quantization_scheme": "symmetric", "milestones": [0, 0, 10, 10],
                          "activation_dtype": torch.quint8, "weight_dtype": torch.qint8,
                          "weight_per_channel": True}})
    return CoreMLQuantizer(config)


def main() -> None:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="rar-edge-s")
    a = p.parse_args()
    model = create_model(a.preset)
    quantizers = {"XNNPACKQuantizer": lambda: make_quantizer("xnnpack"), "CoreMLQuantizer": coreml_quantizer}
    print(f"| quantizer | {' | '.join(ENTRY_POINTS)} | total s |")
    print("|---|" + "---|" * (len(ENTRY_POINTS) + 1))
    for qname, make in quantizers.items():
        cells, total = [], 0.0
        for name in ENTRY_POINTS:
            gm = export_graph(model, name)
            t0 = time.perf_counter()
            prepared = prepare_qat_pt2e(gm, make())
            dt = time.perf_counter() - t0
            total += dt
            fq = sum(1 for n, _ in prepared.named_modules() if "activation_post_process" in n and n.count(".") == 0)
            cells.append(f"{dt:.1f} s ({fq} fq)")
        print(f"| {qname} | {' | '.join(cells)} | {total:.1f} |")


if __name__ == "__main__":
    main()
