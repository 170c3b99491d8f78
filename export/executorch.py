"""ExecuTorch target: one multi-method .pte (encode, assess, restore, decode) delegated to XNNPACK."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rar_edge.errors import RarEdgeError, quiet_native_chatter
from rar_edge.model import ENTRY_POINTS

PTE = "rar.pte"
#: Ops that must run inside the XNNPACK delegate: a convolution or matmul outside it is a slow CPU fallback.
MUST_DELEGATE = ("convolution", "conv2d", "mm", "addmm", "bmm", "linear", "matmul")


def export_executorch(programs: dict, model, bundle: Path, height: int, width: int, dynamic: bool) -> tuple[list[str], dict]:
    """Lower the four entry points into ``bundle/rar.pte``; returns (files, delegation summary).

    Fails when a convolution or matmul stays outside the XNNPACK delegate.
    """
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    from rar_edge.quantize.qat import trace_inputs

    eps = {}
    for name in ENTRY_POINTS:
        args, shapes = trace_inputs(model, name, programs[name], height, width, dynamic)
        eps[name] = torch.export.export(programs[name], args, dynamic_shapes=shapes)
    edge = to_edge_transform_and_lower(eps, partitioner=[XnnpackPartitioner()])
    summary: dict = {}
    for name in ENTRY_POINTS:
        info = get_delegation_info(edge.exported_program(name).graph_module)
        outside = {op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated > 0}
        summary[name] = {"delegated_ops": int(info.num_delegated_nodes), "non_delegated_ops": int(info.num_non_delegated_nodes),
                         "outside_delegate": outside}
        bad = [op for op in outside if any(k in op.lower() for k in MUST_DELEGATE)]
        if bad:
            raise RarEdgeError(f"ExecuTorch export: {name} keeps {', '.join(bad)} outside the XNNPACK delegate; "
                               "this model would run them on the slow portable CPU kernels")
    program = edge.to_executorch()
    with open(bundle / PTE, "wb") as f:
        program.write_to_file(f)
    return [PTE], summary


def et_runner(bundle: Path):
    """A parity Runner over ExecuTorch's Python runtime (imports torch on desktop Python)."""
    import torch
    from executorch.runtime import Runtime

    with quiet_native_chatter():  # XNNPACK's CPU probing prints to stderr as the program loads
        program = Runtime.get().load_program(str(bundle / PTE))
        methods = {name: program.load_method(name) for name in ENTRY_POINTS}

    def run(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = methods[name].execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs])
        return [o.numpy() for o in out]

    return run
