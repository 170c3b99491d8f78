"""ExecuTorch bundles, method by method, timed interleaved; and where each method's time goes per XNNPACK operator.

    python bench/et_profile.py BUNDLE_A [BUNDLE_B ...] [--methods encode,assess,restore,decode]
        [--rounds 4] [--runs 20] [--profile assess] [--top 12]

Every bundle's ``rar.pte`` is loaded in this one process (torch at one thread: its pool would compete with
XNNPACK's, runtime/backends.py) and fed random inputs of each method's own signature (costs do not depend on
values). Interleaved: each round times every method of every bundle (median of ``--runs`` calls after 3
warm-ups); the figure is the median over rounds, so this host's drift falls on all bundles alike; ratios are
against the first bundle. ``--profile METHOD`` adds ExecuTorch's own per-operator times of that method in
each bundle (ETDump + Inspector, ExecuTorch's devtools; the XNNPACK delegate reports each of its operators:
ms per operator kind, summed over its instances, each instance's median over 9 runs after a first). A measurement for BENCHMARKS.md, not a
test.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from onnx_int8 import median_ms  # noqa: E402  (the same timing as the ONNX benchmarks)

PTE = "rar.pte"


def random_inputs(method) -> list:
    """Random float tensors of a loaded method's input shapes."""
    import torch

    meta = method.metadata
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(tuple(meta.input_tensor_meta(i).sizes()), generator=gen) for i in range(meta.num_inputs())]


def op_profile(pte: Path, method_name: str, runs: int = 10) -> tuple[float, dict[str, tuple[float, int]]]:
    """(ms of one call, {operator kind: (ms per call summed over its instances, instances)}) from an ETDump.

    An instance's time is its median over the runs after the first; kinds are the delegate's operator names
    without their ``#n`` index (e.g. ``Convolution (NHWC, F32) IGEMM``), or the portable kernel's name.
    """
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(pte), enable_etdump=True)
    method = program.load_method(method_name)
    inputs = random_inputs(method)
    for _ in range(runs):
        method.execute(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(dump), str(Path(tmp) / "debug.bin"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor debug data was asked for
            frame = Inspector(etdump_path=str(dump)).to_dataframe()
    frame = frame[frame.event_block_name == "Execute"]
    total, kinds = 0.0, collections.defaultdict(lambda: [0.0, 0])
    for name, raw in zip(frame.event_name, frame.raw):
        ms = float(np.median(raw[1:] if len(raw) > 1 else raw))
        if name == "Method::execute":
            total = ms
        elif name != "DELEGATE_CALL":  # the delegate's call holds its operators: count them, not it
            kind = kinds[re.sub(r" #\d+$", "", name)]
            kind[0] += ms
            kind[1] += 1
    return total, {k: (v[0], v[1]) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundles", nargs="+", type=Path, help="ExecuTorch bundle folders; the first is the ratios' baseline")
    ap.add_argument("--methods", default="encode,assess,restore,decode")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", help="also profile this method per operator")
    ap.add_argument("--top", type=int, default=12, help="operator kinds listed per profile")
    args = ap.parse_args()
    missing = [str(b) for b in args.bundles if not (b / PTE).is_file()]
    if missing:
        sys.exit(f"error: no {PTE} in {', '.join(missing)}; pass ExecuTorch bundle folders "
                 "(python -m rar_edge.export --target executorch)")
    if min(args.rounds, args.runs, args.top) < 1:
        sys.exit("error: --rounds, --runs and --top must be at least 1")
    import torch
    from executorch.runtime import Runtime

    torch.set_num_threads(1)
    methods = args.methods.split(",")
    try:
        programs = [Runtime.get().load_program(str(b / PTE)) for b in args.bundles]
        for b, program in zip(args.bundles, programs):
            unknown = [m for m in methods + ([args.profile] if args.profile else []) if m not in program.method_names]
            if unknown:
                sys.exit(f"error: {b / PTE} has no method {', '.join(unknown)}; it has {', '.join(sorted(program.method_names))}")
        loaded = {(i, m): programs[i].load_method(m) for i in range(len(programs)) for m in methods}
    except RuntimeError as e:  # a damaged program: ExecuTorch's own message, on one line
        sys.exit(f"error: ExecuTorch could not load a bundle: {' '.join(str(e).split())}")
    inputs = {key: random_inputs(method) for key, method in loaded.items()}
    times: dict = collections.defaultdict(list)
    for _ in range(args.rounds):
        for key, method in loaded.items():
            times[key].append(median_ms(lambda: method.execute(inputs[key]), args.runs))
    names = [f"{b.parent.name}/{b.name}" for b in args.bundles]
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for m in methods:
        base = float(np.median(times[(0, m)]))
        cells = [f"{np.median(times[(i, m)]):.2f} ({np.median(times[(i, m)]) / base:.2f})" for i in range(len(names))]
        print(f"| {m} | " + " | ".join(cells) + " |")
    if args.profile:
        for b, name in zip(args.bundles, names):
            total, kinds = op_profile(b / PTE, args.profile)
            print(f"\n{name} {args.profile}: {total:.2f} ms per call (ETDump)")
            for kind, (ms, n) in list(kinds.items())[: args.top]:
                print(f"  {ms:7.3f} ms  {100 * ms / total:5.1f} %  x{n:<3d} {kind}")


if __name__ == "__main__":
    main()
