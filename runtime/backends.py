"""Backends: run one entry point of a bundle on a device. Each takes and returns float32 numpy arrays.

onnxruntime is torch-free. ExecuTorch's Python runtime imports torch on desktop Python (on phones the
same .pte runs under ExecuTorch's native runtimes), so it is imported only when chosen. Core ML runs
only on macOS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from rar_edge.errors import RarEdgeError, debug_requested, quiet_import_notices, quiet_native_chatter

ENTRY_POINTS = ("encode", "assess", "restore", "decode")
#: Backend per bundle target, and aliases accepted by --backend.
BACKEND_OF_TARGET = {"onnx": "onnx", "executorch": "executorch", "coreml": "coreml"}
ALIASES = {"ort": "onnx", "onnxruntime": "onnx", "et": "executorch", "pte": "executorch", "mlpackage": "coreml"}


#: Short names for onnxruntime's execution providers (``--providers cuda,cpu``).
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "coreml": "CoreMLExecutionProvider", "openvino": "OpenVINOExecutionProvider",
                    "directml": "DmlExecutionProvider", "qnn": "QNNExecutionProvider"}


def resolve_providers(text: str) -> list[str]:
    """``"tensorrt,cuda"`` -> full provider names in that order, with the CPU provider last as the fallback
    for whatever the others do not take (onnxruntime assigns each node to the first provider that runs it)."""
    names = [PROVIDER_ALIASES.get(n.strip().lower(), n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise RarEdgeError("--providers needs at least one name, e.g. cuda or CUDAExecutionProvider")
    return names + ([] if "CPUExecutionProvider" in names else ["CPUExecutionProvider"])


class Backend(Protocol):
    name: str

    def run(self, entry: str, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


class OnnxBackend:
    """One onnxruntime session per entry point. ``providers``: e.g. ["CUDAExecutionProvider",
    "CPUExecutionProvider"]; the default is the CPU provider (always installed).

    ``spin=False`` (the default) stops onnxruntime's worker threads from busy-waiting between calls: the
    loop does array work between calls, and spinning threads compete with it for cores. On a 2-core
    machine this halved the time of a 2-step restore of a 512 tile (134 -> 69 ms; BENCHMARKS.md).
    """

    name = "onnx"

    def __init__(self, bundle: Path, manifest: dict, providers: list[str] | None = None, threads: int | None = None,
                 spin: bool = False):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if isinstance(providers, str):  # "cuda" or "cuda,cpu": one name is not a list of one-letter names
            providers = resolve_providers(providers)
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(missing)
            raise RarEdgeError(f"onnxruntime here has no {', '.join(missing)}; available: {', '.join(available)}"
                               + (" (CUDA and TensorRT come with onnxruntime-gpu: pip uninstall onnxruntime, then "
                                  "pip install onnxruntime-gpu of the same version)" if gpu else ""))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        # fp32 manifests hold "quantization": null; only the CPU provider runs onnxruntime's U8S8 kernels
        weight_bits = (manifest.get("quantization") or {}).get("onnx_weight_bits")
        if weight_bits == 8 and providers[0] == "CPUExecutionProvider" and x86_without_vnni():
            print("warning: this int8 ONNX bundle has full 8-bit weights, which onnxruntime's int8 kernels can "
                  "saturate on this CPU (x86 without VNNI); re-export it with --reduce-range (an export on such a CPU "
                  "makes 7-bit weights unasked), or use an fp32 bundle",
                  file=sys.stderr)
        self.sessions = {}
        for entry in ENTRY_POINTS:
            path = bundle / f"{entry}.onnx"
            self.sessions[entry] = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_names = {e: [i.name for i in s.get_inputs()] for e, s in self.sessions.items()}
        #: The providers the sessions run on, in order (as onnxruntime reports them: a profile records them).
        self.providers = list(self.sessions["restore"].get_providers())

    def run(self, entry: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = dict(zip(self.input_names[entry], (np.ascontiguousarray(x, dtype=np.float32) for x in inputs)))
        return self.sessions[entry].run(None, feed)


def x86_without_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True on an x86 CPU that has AVX2 but no VNNI (Linux: /proc/cpuinfo's flags): there onnxruntime's uint8 x
    int8 kernels add int16 pairs that saturate on full-range weights (export/onnx_int8.py). False where it
    cannot tell (other systems, ARM)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return False
    return flags is not None and "avx2" in flags and not any(f in flags for f in ("avx512_vnni", "avx_vnni"))


class ExecuTorchBackend:
    """The bundle's multi-method .pte through ``executorch.runtime`` (pulls torch in on desktop Python)."""

    name = "executorch"

    def __init__(self, bundle: Path, manifest: dict, torch_threads: int | None = 1, **_):
        """``torch_threads``: torch's intra-op threads in this process (None: leave them as they are).

        Why 1: torch computes nothing here, but its thread pool, once started, competes for the cores with
        XNNPACK's own; on a 2-core CPU the int8 loop ran 1.5x slower with torch at 2 threads
        (BENCHMARKS.md, "ExecuTorch per operator"). This sets a process-wide torch setting: pass None when
        the process also runs torch work of its own.
        """
        if not debug_requested():  # torchao's "Failed to load" lines on import: nothing an app can act on
            quiet_import_notices()
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as e:
            raise RarEdgeError(f"the executorch backend needs the executorch package ({e.name} is missing); "
                               "use --backend onnx with an ONNX bundle") from None
        if torch_threads is not None:
            if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
                raise RarEdgeError(f"torch_threads must be a whole number of at least 1 (or None to leave torch alone), "
                                   f"got {torch_threads!r}")
            torch.set_num_threads(torch_threads)
        self._torch = torch
        with quiet_native_chatter():  # XNNPACK's CPU probing prints to stderr as the program loads
            program = Runtime.get().load_program(str(bundle / "rar.pte"))
            self.methods = {entry: program.load_method(entry) for entry in ENTRY_POINTS}

    def run(self, entry: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs]
        return [o.numpy() for o in self.methods[entry].execute(tensors)]


class CoreMLBackend:
    """The bundle's multifunction .mlpackage through coremltools (macOS only)."""

    name = "coreml"

    def __init__(self, bundle: Path, manifest: dict, compute_units: str = "ALL", **_):
        if sys.platform != "darwin":
            raise RarEdgeError("the coreml backend runs only on macOS (Core ML cannot predict elsewhere); "
                               "use an ONNX or ExecuTorch bundle here")
        import coremltools as ct

        units = getattr(ct.ComputeUnit, compute_units)
        self.models = {e: ct.models.MLModel(str(bundle / "rar.mlpackage"), function_name=e, compute_units=units)
                       for e in ENTRY_POINTS}
        sig = manifest["entry_points"]
        self.inputs = {e: list(sig[e]["inputs"]) for e in ENTRY_POINTS}
        self.outputs = {e: list(sig[e]["outputs"]) for e in ENTRY_POINTS}

    def run(self, entry: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.models[entry].predict(dict(zip(self.inputs[entry], inputs)))
        return [np.asarray(out[n], dtype=np.float32) for n in self.outputs[entry]]


BACKENDS = {"onnx": OnnxBackend, "executorch": ExecuTorchBackend, "coreml": CoreMLBackend}


def open_backend(bundle: Path, manifest: dict, backend: str | None = None, **options) -> Backend:
    """The backend for a bundle: ``backend`` (name or alias) or the one its target needs."""
    target = manifest["target"]
    name = ALIASES.get(backend, backend) if backend else BACKEND_OF_TARGET[target]
    if name not in BACKENDS:
        raise RarEdgeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if BACKEND_OF_TARGET[target] != name:
        raise RarEdgeError(f"{bundle} is a {target} bundle; the {name} backend runs {name} bundles "
                           f"(python -m rar_edge.export --target {name})")
    if options.get("providers") and name != "onnx":
        raise RarEdgeError(f"providers choose onnxruntime's execution providers: {bundle} is a {target} bundle; "
                           "pass an ONNX bundle (python -m rar_edge.export --target onnx)")
    if "torch_threads" in options and name != "executorch":
        raise RarEdgeError(f"torch_threads sets torch's threads for the executorch backend; {bundle} runs on {name} "
                           "(for onnxruntime's own threads pass threads=N)")
    import inspect

    params = inspect.signature(BACKENDS[name].__init__).parameters
    known = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"self", "bundle", "manifest"}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())  # options meant for other backends
    unknown = [] if takes_any else sorted(set(options) - known)
    if unknown:
        raise RarEdgeError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for the {name} "
                           f"backend; it takes {', '.join(sorted(known))}")
    return BACKENDS[name](bundle, manifest, **options)
