"""The exposure stage in every bundle: the tone head's files for the Python runtime, and a graph for apps.

``rar-edge restore --tone`` runs a global tone curve before the loop (rar_edge/runtime/tone.py). A bundle
carries the head it uses (``tone/``: the files ``rar-edge train-tone`` wrote, read in numpy by the runtime)
and the same head as a graph of the bundle's own format (``tone.onnx``, ``tone.pte`` or ``tone.mlpackage``),
so that an app runs the stage on its device without porting the runtime's numpy:

- input ``thumbnail`` (1,3,64,64): the photo's RGB in [0, 1] averaged over 64 x 64 bins (bin i of a side of
  n pixels spans [floor(i n / 64), ceil((i + 1) n / 64)): torch's ``adaptive_avg_pool2d``; the runtime's
  ``ToneCurve.thumbnail``);
- outputs ``table`` (1,3,256): each channel's curve at 0, 1/255, ..., 1, and ``logit`` (1,): "under-exposed";
- the rule: where ``logit >= manifest["tone"]["gate"]``, replace each 8-bit value v of channel c by
  ``table[c][v]`` (then restore as usual); elsewhere leave the photo as it is.

The graph is float32 in every bundle, int8 ones included: 11 k weights, nothing to gain from int8. Its parity
check holds it to the runtime's numpy on thumbnails of real photos, as taken and darkened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from rar_edge.errors import RarEdgeError

#: The head's folder inside a bundle, and the graph's file per target.
HEAD_DIR = "tone"
GRAPH = {"onnx": "tone.onnx", "executorch": "tone.pte", "coreml": "tone.mlpackage"}
LEVELS = 256
INPUTS, OUTPUTS = ("thumbnail",), ("table", "logit")
#: Largest differences allowed between the graph and the runtime's numpy (both float32 arithmetic).
BOUNDS = {"table": 1e-4, "logit": 1e-3}


def tone_graph(head_dir: Path):
    """The head of ``head_dir`` as a module: thumbnail (1,3,T,T) -> (table (1,3,LEVELS), logit (1,))."""
    import torch
    from torch import nn

    from rar_edge.model.tone import apply_curve, thumbnail_features
    from rar_edge.train.tone import load_tone

    class ToneGraph(nn.Module):
        def __init__(self, head) -> None:
            super().__init__()
            self.head = head
            self.register_buffer("levels", torch.linspace(0, 1, LEVELS).expand(1, 3, 1, LEVELS).contiguous())

        def forward(self, thumbnail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = self.head.mlp(thumbnail_features(thumbnail))
            return apply_curve(self.levels, p[:, :-1]).flatten(2), p[:, -1]

    return ToneGraph(load_tone(head_dir)).eval()


def export_tone(target: str, head_dir: str | Path, bundle: Path) -> tuple[list[str], dict]:
    """Copy the head into ``bundle/tone/`` and write its graph for ``target``; returns (files, manifest entry)."""
    import torch

    from rar_edge.model.tone import THUMB
    from rar_edge.runtime.tone import ToneCurve
    from rar_edge.train.tone import CONFIG, WEIGHTS

    head_dir = Path(head_dir)
    curve = ToneCurve.load(head_dir)  # a broken head fails here, in one line, before anything is written
    if curve.thumb != THUMB:
        raise RarEdgeError(f"the tone head in {head_dir} reads {curve.thumb}² thumbnails; this rar_edge exports "
                           f"{THUMB}² ones: retrain it with rar-edge train-tone")
    (bundle / HEAD_DIR).mkdir()
    head_files = [f"{HEAD_DIR}/{name}" for name in (CONFIG, WEIGHTS)]  # the head alone: not what else is beside it
    for name in (CONFIG, WEIGHTS):
        shutil.copyfile(head_dir / name, bundle / HEAD_DIR / name)
    path = bundle / GRAPH[target]
    entry = {"graph": path.name, "head": HEAD_DIR, "gate": curve.gate,
             "inputs": {"thumbnail": [1, 3, THUMB, THUMB]}, "outputs": {"table": [1, 3, LEVELS], "logit": [1]},
             "thumbnail": f"RGB in [0, 1], each channel's mean over {THUMB} x {THUMB} bins (adaptive average pooling)",
             "rule": "where logit >= gate, each 8-bit value v of channel c becomes table[c][v]"}
    write = {"onnx": _onnx, "executorch": _executorch, "coreml": _coreml}[target]
    run = write(tone_graph(head_dir), (torch.rand(1, 3, THUMB, THUMB),), path, entry)
    entry["parity"] = tone_parity(curve, run) if run is not None else {
        "status": "not run on this platform (Core ML predicts only on macOS); spec and op list verified"}
    if run is not None and not entry["parity"]["passed"]:
        raise RarEdgeError(f"parity check failed for the tone graph {path.name}: {'; '.join(entry['parity']['failures'])}")
    return [path.name, *head_files], entry


def tone_parity(curve, run) -> dict:
    """The graph (``run``: thumbnail -> (table, logit)) against ``curve``'s numpy on real photos' thumbnails,
    as taken and at a fifth of their brightness (where the head brightens)."""
    from .parity import photo_crops

    photos = photo_crops(256, 256, count=2).transpose(0, 2, 3, 1)
    table_err = logit_err = 0.0
    for rgb in [*photos, *(photos * 0.2)]:
        params, logit = curve.estimate(rgb)
        thumb = np.ascontiguousarray(curve.thumbnail(rgb).transpose(2, 0, 1)[None], dtype=np.float32)
        table, got = run(thumb)
        table_err = max(table_err, float(np.abs(table[0] - curve.curve_table(params, LEVELS - 1)).max()))
        logit_err = max(logit_err, abs(float(np.asarray(got).reshape(-1)[0]) - logit))
    failures = [f"{k} max abs {v:.2e} > {BOUNDS[k]:.0e}" for k, v in (("table", table_err), ("logit", logit_err))
                if not v <= BOUNDS[k]]
    return {"status": "measured", "images": 4, "table_max_abs": table_err, "logit_max_abs": logit_err,
            "passed": not failures, "failures": failures}


def _onnx(graph, args, path: Path, entry: dict):
    import json

    import onnx
    import onnxruntime as ort
    import torch

    from .onnx import OPSET, quiet_exporter, slim

    with quiet_exporter() as quiet:
        torch.onnx.export(graph, args, dynamo=True, opset_version=OPSET, input_names=list(INPUTS),
                          output_names=list(OUTPUTS), verbose=not quiet).save(str(path))
    slim(path.parent, [path.name])  # the exporter's stack traces and shape notes: half the file
    model = onnx.load(str(path))  # the gate and the rule travel in the file, for apps that read only it
    model.metadata_props.add(key="tone", value=json.dumps(entry))
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda thumb: session.run(None, {INPUTS[0]: thumb})


def _executorch(graph, args, path: Path, entry: dict):  # a .pte has no metadata: the manifest beside it
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from rar_edge.errors import quiet_native_chatter

    edge = to_edge_transform_and_lower({"tone": torch.export.export(graph, args)}, partitioner=[XnnpackPartitioner()])
    with open(path, "wb") as f:
        edge.to_executorch().write_to_file(f)
    with quiet_native_chatter():
        method = Runtime.get().load_program(str(path)).load_method("tone")
    return lambda thumb: [o.numpy() for o in method.execute([torch.from_numpy(thumb)])]


def _coreml(graph, args, path: Path, entry: dict):
    import json

    import torch

    from . import coreml

    ct = coreml._ct()
    ep = torch.export.export(graph, args).run_decompositions({})
    ml = ct.convert(ep, inputs=[ct.TensorType(name=INPUTS[0], shape=tuple(args[0].shape), dtype=np.float32)],
                    outputs=[ct.TensorType(name=n, dtype=np.float32) for n in OUTPUTS], convert_to="mlprogram",
                    minimum_deployment_target=getattr(ct.target, coreml.DEPLOYMENT_TARGET),
                    compute_precision=ct.precision.FLOAT32)
    ml.user_defined_metadata["tone"] = json.dumps(entry)
    ml.short_description = "RAR's exposure stage: a thumbnail's tone curve table and its under-exposed logit"
    ml.save(str(path))
    spec = ct.utils.load_spec(str(path))
    ops = {op for fn in coreml.package_ops(spec).values() for op in fn}
    bad = coreml.unsupported_ops(ops)
    if bad:
        raise RarEdgeError(f"Core ML export: the tone graph uses ops outside iOS 18's registry: {', '.join(bad)}")
    if not coreml.can_predict():
        return None
    model = ct.models.MLModel(str(path))
    return lambda thumb: [np.asarray(v, np.float32) for v in
                          (lambda out: (out["table"], out["logit"]))(model.predict({INPUTS[0]: thumb}))]
