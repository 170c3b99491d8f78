"""ONNX target: one .onnx per entry point (opset 20, torch.onnx dynamo exporter), manifest in metadata_props."""

from __future__ import annotations

import logging
from collections.abc import Collection
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rar_edge.manifest import flat_metadata, signatures
from rar_edge.model import ENTRY_POINTS

from . import WEIGHT_BITS

OPSET = 20


def export_onnx(programs: dict, model, bundle: Path, height: int, width: int, dynamic: bool) -> list[str]:
    """Write ``<entry>.onnx`` for each entry point into ``bundle``; returns the file names.

    fp32 programs are the float entry points; int8 ones the converted QDQ graphs of a distilled student
    (which only the dynamo exporter handles). ``dynamic`` gives dynamic batch and H x W.
    """
    import torch

    from rar_edge.quantize.qat import trace_inputs

    sigs = signatures(model.config)
    files = []
    with quiet_exporter() as quiet:
        for name in ENTRY_POINTS:
            args, shapes = trace_inputs(model, name, programs[name], height, width, dynamic)
            program = torch.onnx.export(programs[name], args, dynamo=True, opset_version=OPSET, dynamic_shapes=shapes,
                                        input_names=list(sigs[name]["inputs"]),
                                        output_names=list(sigs[name]["outputs"]), verbose=not quiet)
            path = bundle / f"{name}.onnx"
            program.save(str(path))
            files.append(path.name)
    return files


@contextmanager
def quiet_exporter():
    """Silence torch.onnx within (yields True) unless --debug: it narrates every stage (~9 lines per graph)
    and warns about torchvision ops no graph here uses, nothing a user can act on. --debug (the "rar_edge"
    logger at DEBUG) shows them again (yields False)."""
    quiet = not logging.getLogger("rar_edge").isEnabledFor(logging.DEBUG)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    if quiet:
        exporter_log.setLevel(logging.ERROR)
    try:
        yield quiet
    finally:
        exporter_log.setLevel(level)


def global_pools(graph) -> int:
    """Rewrite every ReduceMean over H and W (kept dims) as GlobalAveragePool, the same mean; returns how many.

    Why: the NAF blocks' channel attention pools with ``x.mean((2, 3))``, which the exporter writes as
    ReduceMean. onnxruntime's quantizer has no integer ReduceMean, so each one ran as dequantize, a float
    mean and quantize (about 4 of the 21.6 ms of kernel time of rar-edge-s's int8 restore step at 512², one
    thread); GlobalAveragePool becomes QLinearGlobalAveragePool (0.1 ms): restore 0.74x -> 0.64x fp32 at 2
    threads (BENCHMARKS.md, "int8 ONNX: the channel attention's mean in integer").
    """
    from onnx import helper, numpy_helper

    wanted = {n.input[1] for n in graph.node if n.op_type == "ReduceMean" and len(n.input) > 1}  # axes inputs
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in wanted}
    known.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                  if n.op_type == "Constant" and n.output[0] in wanted and n.attribute[0].name == "value"})
    done = 0
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")  # an attribute up to opset 17, an input from 18
        if axes is None and len(node.input) > 1 and node.input[1] in known:
            axes = known[node.input[1]].tolist()
        if axes is None or sorted(int(a) for a in axes) not in ([2, 3], [-2, -1]) or not attrs.get("keepdims", 1):
            continue
        graph.node.remove(node)
        graph.node.insert(i, helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name))
        done += 1
    used = {x for n in graph.node for x in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:  # the axes the rewrite left unread
        graph.initializer.remove(t)
    return done


def slim(bundle: Path, files: list[str], retype: Collection[str] = (),
         weight_bits: int = WEIGHT_BITS[0], half: Collection[str] = ()) -> None:
    """Drop the exporter's per-node metadata (torch stack traces: over half of an int8 file's bytes) and its
    shape annotations (value_info: onnxruntime infers shapes when it loads a graph; 0.07 MB of rar-edge-s's
    fp32 bundle), pool with GlobalAveragePool (global_pools), re-type the int8 programs' graphs among them named in
    ``retype`` (entry points) for onnxruntime's fast integer kernels, with ``weight_bits``-bit weights
    (export/onnx_int8.py), and store the float weights of those named in ``half`` as float16 (half_weights)."""
    import onnx

    from .onnx_int8 import retype_for_onnxruntime

    for name in files:
        model = onnx.load(str(bundle / name))
        for node in model.graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
        del model.graph.value_info[:]
        global_pools(model.graph)
        if Path(name).stem in retype:
            retype_for_onnxruntime(model, weight_bits)
        if Path(name).stem in half:
            half_weights(model)
        onnx.save(model, str(bundle / name))


#: Float weights of at least this many elements are stored as float16 by ``half_weights``; smaller ones (biases
#: of narrow layers, scalars) stay float32: they would save next to nothing.
HALF_MIN_ELEMENTS = 64


def _names(graph) -> set[str]:
    """Every tensor name a graph uses: initializers, inputs, outputs, annotations, node inputs and outputs, and
    those of its nodes' subgraphs (ONNX forbids a subgraph name that shadows an outer one)."""
    names = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    names |= {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    for node in graph.node:
        names |= {*node.input, *node.output}
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                names |= _names(sub)
    return names


def half_weights(model) -> int:
    """Store the graph's float32 weights as float16, each read through a Cast back to float32; returns the
    bytes saved. The graph still computes in float32: onnxruntime folds the Casts into float32 weights when
    it opens the session (no Cast runs per call), so only the weights' rounding to 11 significant bits
    changes, which the export's parity check then measures.

    Why: an int8 ONNX bundle of rar-edge-s keeps its assessor float (its score steers the loop: export/
    onnx_static.py), and that one graph was a third of the bundle's bytes (0.44 of 1.27 MB)."""
    from onnx import TensorProto, helper, numpy_helper

    graph, saved, casts = model.graph, 0, []
    taken = _names(graph)
    numbers = iter(range(1 << 62))

    def fresh() -> str:
        """The next short name that no tensor of the graph or its subgraphs has (a graph may hold a ``half0``)."""
        while (name := f"half{next(numbers):x}") in taken:
            pass
        taken.add(name)
        return name

    for t in list(graph.initializer):
        if t.data_type != TensorProto.FLOAT or int(np.prod(t.dims)) < HALF_MIN_ELEMENTS:
            continue
        weight = numpy_helper.to_array(t)
        # a short name: the weight's own (often 40 characters) stays on the Cast's output, which its readers use
        half = numpy_helper.from_array(weight.astype(np.float16), fresh())
        graph.initializer.remove(t)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [t.name], to=TensorProto.FLOAT))
        saved += weight.nbytes // 2
    for i, cast in enumerate(casts):  # first: a node's inputs must be made before it (topological order)
        graph.node.insert(i, cast)
    return saved


def kernel_report(bundle: Path, files: list[str]) -> dict:
    """The manifest's ``onnxruntime`` entry of an int8 bundle: per graph, the quantized convolutions and
    linears that run as integer kernels (export/onnx_int8.py's fusion_report)."""
    from .onnx_int8 import fusion_report

    return {"onnxruntime": {"integer_kernels": {Path(name).stem: fusion_report(bundle / name) for name in files}}}


def unfused(report: dict) -> list[str]:
    """``entry n of m`` for every int8 graph with convolutions or linears left in float (kernel_report's)."""
    kernels = report.get("onnxruntime", {}).get("integer_kernels", {})
    return [f"{name} {r['float']} of {r['fusable']}" for name, r in kernels.items() if r["float"]]


def embed_metadata(bundle: Path, files: list[str], manifest: dict) -> None:
    """Put the manifest's key/values into every .onnx file's metadata_props, then check the models."""
    import onnx

    meta = flat_metadata(manifest)
    for name in files:
        model = onnx.load(str(bundle / name))
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(model)
        onnx.save(model, str(bundle / name))


def ort_runner(bundle: Path, files: list[str]):
    """A parity Runner over onnxruntime sessions (CPU)."""
    import onnxruntime as ort

    sessions = {Path(f).stem: ort.InferenceSession(str(bundle / f), providers=["CPUExecutionProvider"]) for f in files}

    def run(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        sess = sessions[name]
        feed = {i.name: x.astype(np.float32) for i, x in zip(sess.get_inputs(), inputs)}
        return sess.run(None, feed)

    return run
