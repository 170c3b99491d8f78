"""The exposure stage in every bundle: the tone head's files for the Python runtime, and a graph for apps.

``rar-edge restore --tone`` runs a global tone curve before the loop (rar_edge/runtime/tone.py). A bundle
carries the head it uses (``tone/``: the files ``rar-edge train-tone`` wrote, read in numpy by the runtime)
and the same head as a graph of the bundle's own format (``tone.onnx``, ``tone.pte`` or ``tone.mlpackage``),
so that an app runs the stage on its device without porting the runtime's numpy:

- input ``thumbnail`` (1,3,64,64), NCHW, R G B: the whole photo's (not a tile's) encoded values divided by
  255 (65535 for 16-bit), alpha dropped, averaged over 64 x 64 bins: bin i of a side of n pixels spans
  [floor(i n / 64), ceil((i + 1) n / 64)) (torch's ``adaptive_avg_pool2d``; the runtime's ``ToneCurve.thumbnail``);
- outputs ``table`` (1,3,256): each channel's curve at 0, 1/255, ..., 1 (floats in [0, 1]), and ``logit`` (1,);
- the rule: where ``logit >= manifest["tone"]["gate"]``, each 8-bit value v of channel c becomes
  ``table[0][c][v]`` (16-bit and float values: interpolate between entries), then restore as usual; elsewhere
  the photo stays as it is.

The graph is built from the numpy head's own weights and sizes (whatever the runtime reads, exports), float32
in every bundle, int8 ones included (11 k weights: nothing for int8 to save). Its parity check holds it to the
runtime's numpy on thumbnails of real photos, as taken and darkened.
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


def tone_graph(curve):
    """``curve`` (a runtime ToneCurve) as a torch module: thumbnail (1,3,T,T) -> (table (1,3,LEVELS), logit (1,)),
    built from its own weights and sizes, so that any head the runtime reads exports."""
    import torch
    from torch import nn

    from rar_edge.model.tone import apply_curve, thumbnail_features

    class ToneGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = {k: torch.from_numpy(np.array(curve.w[k], dtype=np.float32)) for k in ("w1", "b1", "w2", "b2")}
            self.first, self.last = nn.Linear(*w["w1"].shape[::-1]), nn.Linear(*w["w2"].shape[::-1])
            with torch.no_grad():
                self.first.weight.copy_(w["w1"]), self.first.bias.copy_(w["b1"])
                self.last.weight.copy_(w["w2"]), self.last.bias.copy_(w["b2"])
            self.register_buffer("levels", torch.linspace(0, 1, LEVELS).expand(1, 3, 1, LEVELS).contiguous())

        def forward(self, thumbnail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = self.last(torch.relu(self.first(thumbnail_features(thumbnail, curve.bins))))
            return apply_curve(self.levels, p[:, :-1], curve.iters).flatten(2), p[:, -1]

    return ToneGraph().eval()


def export_tone(target: str, head_dir: str | Path, bundle: Path) -> tuple[list[str], dict]:
    """Copy the head into ``bundle/tone/`` and write its graph for ``target``; returns (files, manifest entry).
    Raises a one-line RarEdgeError where the graph misses its parity bound (the caller's bundle is then not
    written)."""
    import torch

    from rar_edge.runtime.tone import CONFIG, WEIGHTS, ToneCurve

    from .bundle import NOT_RUN

    head_dir = Path(head_dir)
    ToneCurve.load(head_dir)  # a broken head fails in one line before anything is copied
    (bundle / HEAD_DIR).mkdir()
    for name in (CONFIG, WEIGHTS):  # the head alone, not what else lies beside it
        shutil.copyfile(head_dir / name, bundle / HEAD_DIR / name)
    curve = ToneCurve.load(bundle / HEAD_DIR)  # what ships is what the graph is built from and checked against
    path = bundle / GRAPH[target]
    side = curve.thumb
    entry = {"graph": path.name, "head": HEAD_DIR, "gate": curve.gate,
             "inputs": {"thumbnail": [1, 3, side, side]}, "outputs": {"table": [1, 3, LEVELS], "logit": [1]},
             **({"method": "tone"} if target == "executorch" else {}),
             "thumbnail": f"NCHW, R G B, the whole photo's encoded values / 255 (65535 for 16-bit), alpha dropped, "
                          f"each averaged over {side} x {side} bins: bin i of a side of n pixels spans "
                          f"[floor(i n / {side}), ceil((i + 1) n / {side}))",
             "rule": "where logit >= gate, each 8-bit value v of channel c becomes table[0][c][v] (16-bit and float "
                     "values: interpolate between entries); floats in [0, 1]; elsewhere the photo stays as it is"}
    graph = tone_graph(curve)
    write = {"onnx": _onnx, "executorch": _executorch, "coreml": _coreml}[target]
    run, entry["ops"] = write(graph, (torch.rand(1, 3, side, side),), path, entry)
    if run is not None:
        entry["parity"] = tone_parity(curve, run)
    else:  # Core ML off macOS: the torch graph it was converted from, against the runtime's numpy
        entry["parity"] = {"status": NOT_RUN, "reason": "Core ML predicts only on macOS: the package was verified "
                           "by its spec (input and output names, shapes and types) and op list",
                           "emulation": {"compared": "the torch graph it was converted from",
                                         **tone_parity(curve, torch_runner(graph))}}
    checked = entry["parity"] if run is not None else entry["parity"]["emulation"]
    if not checked["passed"]:
        raise RarEdgeError(f"parity check failed for the tone graph {path.name}: {'; '.join(checked['failures'])}; "
                           "nothing written; --no-tone exports the bundle without the exposure stage")
    return [path.name, *(f"{HEAD_DIR}/{name}" for name in (CONFIG, WEIGHTS))], entry


def summary_line(entry: dict, size: int) -> str:
    """The line an export (and ``--add-tone``) prints for the stage: its graph, size, gate and parity."""
    from .bundle import NOT_RUN

    parity = entry["parity"]
    if parity["status"] == NOT_RUN:
        emulated = parity["emulation"]
        checked = (f"parity: {NOT_RUN} (Core ML predicts only on macOS), spec and op list verified; emulation, "
                   f"{emulated['compared']}: table within {emulated['table_max_abs']:.1e}")
    else:
        checked = (f"parity with the runtime: table within {parity['table_max_abs']:.1e}, logit within "
                   f"{parity['logit_max_abs']:.1e}")
    return (f"  tone: {entry['graph']} {size / 1e6:.2f} MB (the exposure stage's head for apps, float32: "
            f"thumbnail -> table, logit; gate {entry['gate']:g}), {checked}")


def torch_runner(graph):
    """``graph`` as a parity runner: thumbnail -> (table, logit) as numpy."""
    import torch

    def run(thumb: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [o.numpy() for o in graph(torch.from_numpy(thumb))]

    return run


def tone_parity(curve, run) -> dict:
    """The graph (``run``: thumbnail -> (table, logit)) against ``curve``'s numpy on real photos' thumbnails,
    as taken and at a fifth of their brightness (where the head brightens)."""
    from .parity import photo_crops

    photos = photo_crops(256, 256, count=2).transpose(0, 2, 3, 1)  # float in [0, 1], as the runtime reads them
    table_err = logit_err = 0.0
    images = [*photos, *(photos * 0.2)]
    for rgb in images:
        params, logit = curve.estimate(rgb)
        thumb = np.ascontiguousarray(curve.thumbnail(rgb).transpose(2, 0, 1)[None], dtype=np.float32)
        table, got = run(thumb)
        table_err = max(table_err, float(np.abs(table[0] - curve.curve_table(params, LEVELS - 1)).max()))
        logit_err = max(logit_err, abs(float(np.asarray(got).reshape(-1)[0]) - logit))
    failures = [f"{k} max abs {v:.2e} > {BOUNDS[k]:.0e}" for k, v in (("table", table_err), ("logit", logit_err))
                if not v <= BOUNDS[k]]
    return {"status": "measured", "images": len(images), "table_max_abs": table_err, "logit_max_abs": logit_err,
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
    ops = sorted({n.op_type for n in model.graph.node})  # for reduced-operator onnxruntime builds
    return (lambda thumb: session.run(None, {INPUTS[0]: thumb})), ops


def _executorch(graph, args, path: Path, entry: dict):  # a .pte has no metadata: the manifest beside it
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from rar_edge.errors import quiet_native_chatter

    edge = to_edge_transform_and_lower({"tone": torch.export.export(graph, args)}, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program("tone").graph_module)
    ops = {"delegated_ops": int(info.num_delegated_nodes),  # for selective builds: the portable kernels it needs
           "outside_delegate": {op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated}}
    with open(path, "wb") as f:
        edge.to_executorch().write_to_file(f)
    with quiet_native_chatter():
        method = Runtime.get().load_program(str(path)).load_method("tone")
    return (lambda thumb: [o.numpy() for o in method.execute([torch.from_numpy(thumb)])]), ops


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
    ops = sorted({op for fn in coreml.package_ops(spec).values() for op in fn})
    problems = [f"ops outside iOS 18's registry: {', '.join(bad)}"] if (bad := coreml.unsupported_ops(set(ops))) else []
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for kind, feats, want in (("inputs", spec.description.input, entry["inputs"]),
                              ("outputs", spec.description.output, entry["outputs"])):
        if [f.name for f in feats] != list(want):
            problems.append(f"{kind} {[f.name for f in feats]} are not {list(want)}")
        problems += [f"{f.name} is not float32" for f in feats if f.type.multiArrayType.dataType != float32]
    if list(spec.description.input[0].type.multiArrayType.shape) != entry["inputs"]["thumbnail"]:
        problems.append(f"thumbnail shape {list(spec.description.input[0].type.multiArrayType.shape)} is not "
                        f"{entry['inputs']['thumbnail']}")
    if problems:
        raise RarEdgeError(f"Core ML package {path.name} failed verification: {'; '.join(problems)}; nothing written; "
                           "--no-tone exports the bundle without the exposure stage")
    if not coreml.can_predict():
        return None, ops
    model = ct.models.MLModel(str(path))
    return (lambda thumb: [np.asarray(v, np.float32) for v in
                           (lambda out: (out["table"], out["logit"]))(model.predict({INPUTS[0]: thumb}))]), ops


#: Why ``add_tone`` does not rewrite a Core ML bundle.
COREML_ADD = ("{bundle} is a Core ML bundle: export it again (every export carries the exposure stage; --tone-head "
              "DIR puts another head in)")


def add_tone(bundle: str | Path, head_dir: str | Path | None = None) -> dict:
    """Put the exposure stage (the head in ``head_dir``; None: the shipped one) into an exported ONNX or
    ExecuTorch bundle without exporting its graphs again: for bundles exported before bundles carried it (the
    shipped default bundle) or to change the head. A stage the bundle carries is replaced. Returns the new
    manifest (``python -m rar_edge.export --add-tone BUNDLE [--tone-head DIR]``)."""
    from rar_edge.runtime.tone import DEFAULT_TONE

    from .rewrite import rewrite_bundle

    def change(copy: Path, manifest: dict) -> dict:
        old = manifest.get("tone")
        artifacts = dict(manifest["artifacts"])
        if old:  # its graph and its head's files go; the new ones come in under the same names
            (copy / old["graph"]).unlink()
            shutil.rmtree(copy / old["head"])
            artifacts = {f: d for f, d in artifacts.items() if f != old["graph"] and not f.startswith(f"{old['head']}/")}
        files, entry = export_tone(manifest["target"], DEFAULT_TONE if head_dir is None else head_dir, copy)
        return {**manifest, "tone": entry, "artifacts": {**artifacts, **dict.fromkeys(files, "")}}

    return rewrite_bundle(bundle, change, "the exposure stage", COREML_ADD)
