"""Core ML target: one multifunction .mlpackage (functions encode, assess, restore, decode).

Each entry point is converted alone (``ct.convert`` of the decomposed ExportedProgram), then the four
are joined with ``save_multifunction``: functions share nothing at run time but one file ships and loads.
Core ML can predict only on macOS, so on Linux the package is verified by its spec (functions, names,
shapes, types, op list against coremltools' iOS 18 op registry) and the parity figures come from the
torch graph that was converted (fp16 emulated in half precision); on macOS the package itself runs.
"""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

import numpy as np

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import flat_metadata, signatures
from rar_edge.model import ENTRY_POINTS

MLPACKAGE = "rar.mlpackage"
#: Multifunction packages need iOS 18 / macOS 15; so does int8 activation quantization in an mlprogram.
DEPLOYMENT_TARGET = "iOS18"
#: Ops that hold int8: activation (quantize/dequantize) and weight (constexpr_*) quantization.
INT8_OPS = ("quantize", "dequantize", "constexpr_blockwise_shift_scale", "constexpr_affine_dequantize")
MAX_SIDE = 4096  # upper bound of --dynamic image sides


def _ct():
    import warnings

    warnings.filterwarnings("ignore", module="coremltools")  # torch/scikit-learn version notices
    import coremltools as ct

    return ct


def _tensor_types(ct, config, name: str, args: tuple, dynamic: bool) -> tuple[list, list]:
    """Named float32 inputs/outputs in the manifest's signature order; ranged N, H, W with --dynamic."""
    sig = signatures(config)[name]
    inputs = []
    for (arg_name, dims), arg in zip(sig["inputs"].items(), args):
        shape = tuple(arg.shape)
        if dynamic:
            div = 1 if dims[-1] == "W" else config.stride  # latent sides are image sides / stride
            side = ct.RangeDim(lower_bound=config.size_multiple // div, upper_bound=MAX_SIDE // div)
            shape = ct.Shape([ct.RangeDim(lower_bound=1, upper_bound=8)] + [
                side if d in ("H", "W", "h", "w") else d for d in dims[1:]])
        inputs.append(ct.TensorType(name=arg_name, shape=shape, dtype=np.float32))
    outputs = [ct.TensorType(name=n, dtype=np.float32) for n in sig["outputs"]]
    return inputs, outputs


def convert_part(programs: dict, model, name: str, height: int, width: int, dynamic: bool, precision: str,
                 weight_only: bool):
    """One entry point as a Core ML mlprogram (fp16 compute unless fp32; int8 weights if ``weight_only``)."""
    import torch

    from rar_edge.quantize.qat import trace_inputs

    ct = _ct()
    args, shapes = trace_inputs(model, name, programs[name], height, width, dynamic)
    ep = torch.export.export(programs[name], args, dynamic_shapes=shapes).run_decompositions({})
    inputs, outputs = _tensor_types(ct, model.config, name, args, dynamic)
    ml = ct.convert(ep, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                    minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                    compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
    if weight_only:
        from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

        op = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        ml = linear_quantize_weights(ml, OptimizationConfig(global_config=op))
    return ml


def export_coreml(programs: dict, model, bundle: Path, height: int, width: int, dynamic: bool, precision: str,
                  weight_only: bool = False) -> tuple[list[str], dict]:
    """Write ``bundle/rar.mlpackage``; returns (files, structural summary from its spec)."""
    ct = _ct()
    work = bundle / ".parts"
    work.mkdir()
    try:
        desc = ct.utils.MultiFunctionDescriptor()
        for name in ENTRY_POINTS:
            path = work / f"{name}.mlpackage"
            convert_part(programs, model, name, height, width, dynamic, precision, weight_only).save(str(path))
            desc.add_function(str(path), src_function_name="main", target_function_name=name)
        desc.default_function_name = ENTRY_POINTS[0]
        ct.utils.save_multifunction(desc, str(bundle / MLPACKAGE))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [MLPACKAGE], verify_package(bundle / MLPACKAGE, model.config, None if dynamic else (height, width), precision)


def embed_metadata(bundle: Path, manifest: dict) -> None:
    """Put the manifest into the package's user-defined metadata (Xcode shows it; MLModel reads it)."""
    ct = _ct()
    path = bundle / MLPACKAGE
    spec = ct.utils.load_spec(str(path))
    spec.description.metadata.userDefined.update(flat_metadata(manifest))
    spec.description.metadata.shortDescription = (
        f"RAR restore-assess-repeat ({manifest['preset']}, {manifest['precision']}): functions {', '.join(ENTRY_POINTS)}")
    spec.description.metadata.versionString = manifest["package_version"]
    tmp = bundle / ".with-metadata.mlpackage"
    ct.utils.save_spec(spec, str(tmp), weights_dir=str(path / "Data" / "com.apple.CoreML" / "weights"))
    shutil.rmtree(path)
    tmp.rename(path)


def package_ops(spec) -> dict[str, list[str]]:
    """Op types per function of an mlprogram spec."""
    out = {}
    for name, fn in spec.mlProgram.functions.items():
        out[name] = sorted({op.type for op in fn.block_specializations[fn.opset].operations})
    return out


def unsupported_ops(ops: set[str]) -> list[str]:
    """Ops that coremltools' registry has no iOS 18 (or earlier) definition for."""
    ct = _ct()
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    target = getattr(ct.target, DEPLOYMENT_TARGET)
    return sorted(op for op in ops if op != "const"
                  and not any(v <= target for v in SSAOpRegistry.core_ops.get(op, {})))


def verify_package(path: Path, config, shape: tuple[int, int] | None, precision: str) -> dict:
    """Check the spec: four functions with the manifest's I/O names, float32 types, fixed shapes when not
    dynamic, supported ops, and int8 ops in an int8 package. Raises RarEdgeError; returns op lists."""
    ct = _ct()
    spec = ct.utils.load_spec(str(path))
    sig = signatures(config)
    functions = {f.name: f for f in spec.description.functions}
    problems = []
    if sorted(functions) != sorted(ENTRY_POINTS):
        problems.append(f"functions {sorted(functions)} are not {list(ENTRY_POINTS)}")
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for name in set(functions) & set(ENTRY_POINTS):
        for kind in ("inputs", "outputs"):
            feats = functions[name].input if kind == "inputs" else functions[name].output
            if [f.name for f in feats] != list(sig[name][kind]):
                problems.append(f"{name} {kind} {[f.name for f in feats]} are not {list(sig[name][kind])}")
            for f in feats:
                if f.type.multiArrayType.dataType != float32:
                    problems.append(f"{name}.{f.name} is not float32")
        if shape is not None:
            image = list(functions[name].input)[0] if name == "encode" else None
            if image is not None and list(image.type.multiArrayType.shape) != [1, 3, *shape]:
                problems.append(f"encode input shape {list(image.type.multiArrayType.shape)} is not {[1, 3, *shape]}")
    ops = package_ops(spec)
    bad = unsupported_ops(set().union(*ops.values()))
    if bad:
        problems.append(f"ops without an {DEPLOYMENT_TARGET} definition: {', '.join(bad)}")
    if precision == "int8" and not any(op in INT8_OPS for op in set().union(*ops.values())):
        problems.append("an int8 package holds no quantized ops")
    if problems:
        raise RarEdgeError(f"Core ML package {path.name} failed verification: {'; '.join(problems)}")
    return {"deployment_target": DEPLOYMENT_TARGET, "functions": list(functions),
            "ops": ops, "int8_ops": sorted(set().union(*ops.values()) & set(INT8_OPS))}


def can_predict() -> bool:
    """Core ML runs models only on macOS."""
    return sys.platform == "darwin"


def parity_runner(bundle: Path, programs: dict, model, precision: str, weight_only: bool):
    """(Runner, what it runs): the package on macOS; elsewhere the torch graph it was converted from."""
    if can_predict():
        return coreml_runner(bundle), "the Core ML package"
    print("export: Core ML predicts only on macOS: the package is verified by its spec, and parity figures are "
          "from the torch graph it was converted from", file=sys.stderr)
    if weight_only:  # emulate linear_quantize_weights with the same int8 rounding of the float weights
        from rar_edge.model.entry_points import EntryPoint

        rounded = fake_quant_weights(model)
        programs = {name: EntryPoint(rounded, name).eval() for name in ENTRY_POINTS}
    half = precision == "fp16" or weight_only
    return source_runner(programs, half), ("the converted torch graph" + (" in half precision" if half else "")
                                           + " (Core ML predicts only on macOS)")


def coreml_runner(bundle: Path):
    """A parity Runner over the package itself (macOS only)."""
    ct = _ct()
    sig = None
    models = {name: ct.models.MLModel(str(bundle / MLPACKAGE), function_name=name) for name in ENTRY_POINTS}

    def run(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        nonlocal sig
        if sig is None:
            sig = {n: models[n].get_spec().description for n in ENTRY_POINTS}
        feed = {f.name: np.ascontiguousarray(x, dtype=np.float32) for f, x in zip(sig[name].input, inputs)}
        out = models[name].predict(feed)
        return [np.asarray(out[f.name], dtype=np.float32) for f in sig[name].output]

    return run


def fake_quant_weights(model):
    """A copy of ``model`` whose conv/linear weights went through symmetric per-channel int8 and back:
    what ``linear_quantize_weights`` does to them, for the Linux parity estimate of a weight-only package."""
    import torch

    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w = m.weight
                scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127
                w.copy_((w / scale).round().clamp(-127, 127) * scale)
    return model


def source_runner(programs: dict, half: bool):
    """The Linux stand-in: the torch graphs that were converted, in half precision where Core ML computes
    in fp16. int8 (QDQ) graphs run in float32: their quantize/dequantize ops have no CPU half kernels."""
    import torch

    dtype = torch.float16 if half else torch.float32
    mods = {name: copy.deepcopy(programs[name]).to(dtype) for name in ENTRY_POINTS}

    def run(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = mods[name](*[torch.from_numpy(np.ascontiguousarray(x)).to(dtype) for x in inputs])
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().numpy() for o in out]

    return run
