"""An experiment for issue 23: the float assessor of an int8 ONNX bundle quantized by onnxruntime too.

    python bench/onnx_assess_trunk.py --out A [--checkpoint STUDENT] [--imgsz 512] [--whole]
    python bench/onnx_int8.py FP32_BUNDLE A/<name>-int8-onnx

rar-edge-s keeps its assessor float (its score steers the loop). This exports the int8 ONNX bundle as
`python -m rar_edge.export --target onnx --precision int8 --int8-graph ort` does, except that onnxruntime's
quantizer also takes the assessor: its learned trunk only (stem, stages, downsamplings), while the fixed
detail statistics (logs of small deviations, which 8-bit MinMax ranges of the latent flatten), the MLP and
the heads stay float (``--whole``: all of it quantized). The export's own parity check holds the result to
the int8 programs as for any bundle; time it with bench/onnx_int8.py. A measurement, not an export option
(BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rar_edge.errors import RarEdgeError
from rar_edge.export import bundle, onnx_static
from rar_edge.model import ENTRY_POINTS


def downstream(graph, seeds: list) -> set[str]:
    """Names of ``seeds`` and every node that reads, directly or not, one of their outputs."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    seen, todo = set(), list(seeds)
    while todo:
        node = todo.pop()
        if node.name not in seen:
            seen.add(node.name)
            todo.extend(r for out in node.output for r in readers.get(out, []))
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", help="a distilled student (default: the shipped one)")
    p.add_argument("--imgsz", type=int, default=512)
    p.add_argument("--whole", action="store_true", help="quantize the whole assessor, statistics and heads too")
    a = p.parse_args()
    float_tail = onnx_static.float_tail

    def trunk_only(graph) -> list[str]:
        detail = [n for n in graph.node if n.op_type == "Conv" and any(".detail." in i for i in n.input)]
        if not detail or a.whole:  # not the assessor (or all of it): as the export does
            return float_tail(graph)
        heads = [n for n in graph.node if n.op_type == "Gemm"]
        return sorted(set(float_tail(graph)) | downstream(graph, detail + heads))

    onnx_static.float_tail = trunk_only
    bundle.ORT_QUANTIZED = (*onnx_static.ORT_QUANTIZED, "assess")
    bundle.quantized_entries = lambda quantization: ENTRY_POINTS
    try:
        print(bundle.export_bundle("onnx", "int8", a.checkpoint, None, (a.imgsz, a.imgsz), False, Path(a.out),
                                   int8_graph="ort"))
    except RarEdgeError as e:  # a parity miss is this experiment's result too
        raise SystemExit(f"onnx_assess_trunk: {e}") from None


if __name__ == "__main__":
    main()
