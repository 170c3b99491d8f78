"""An exported bundle seen as a model: what ``rar-edge fit-stop --bundle`` records trajectories through.

Why fit on the bundle and not on the checkpoint it came from: the stop rule and its judge read the assessor's
outputs and the restorer's steps, and an exported graph does not reproduce those exactly. onnxruntime's int8
quantizer graphs restore the low-light sample with a first step the judge fitted on the int8 programs calls
worse (0 dB where the programs' graphs gain +4.3: BENCHMARKS.md, "int8 ONNX on a CPU without VNNI ...;
`fit-stop --bundle`"). Fitted on the
graphs that ship, the rule answers for what the runtime runs. It is also faster for int8: onnxruntime's integer
kernels recorded about 3 times faster than torch's eager int8 programs (BENCHMARKS.md).

The bundle runs on the torch-free runtime's backends (one image per call, as the runtime's loop calls them);
this wrapper only turns its numpy arrays into the tensors rar_edge.eval.fit_stop records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rar_edge.errors import RarEdgeError
from rar_edge.loop import Gate, Judge, StopRule


@dataclass(frozen=True)
class BundleConfig:
    """The fields of a model config that fitting the stop rule reads, taken from a bundle's manifest."""

    degradations: tuple[str, ...]
    size_multiple: int
    max_steps: int
    judge_head: Judge | None
    gate_head: Gate | None
    input_shape: tuple[int, int] | None  # a fixed-shape bundle's tile (None: dynamic)


class BundleModel:
    """encode / assess / restore / decode of a bundle's backend, on torch tensors, one image per call."""

    def __init__(self, bundle: str | Path, backend: str | None = None):
        from rar_edge.manifest import verify_bundle
        from rar_edge.runtime import Restorer
        from rar_edge.runtime.backends import open_backend

        bundle = Path(bundle)
        try:  # the manifest and every artifact's checksum, read once (Restorer.load would read them again)
            m = verify_bundle(bundle)
        except ValueError as e:
            raise RarEdgeError(str(e)) from None
        # ExecuTorch's backend sets torch's threads for the process (1 by default): None leaves the fit's own
        # torch work its threads. Opening the backend refuses what cannot run here (Core ML off macOS).
        options = {"torch_threads": None} if m["target"] == "executorch" else {}
        self.restorer = Restorer(bundle, m, open_backend(bundle, m, backend, **options))
        self.bundle, self.manifest = bundle, m
        rule = self.restorer.rule
        shape = tuple(m["input_shape"]) if m["input_shape"] else None
        self.config = BundleConfig(tuple(m["degradations"]), int(m["size_multiple"]), rule.max_steps,
                                   self.restorer.judge, rule.gate, shape)

    def stop_rule(self, **overrides) -> StopRule:
        """The bundle's own stop rule, with any non-None override applied."""
        return replace(self.restorer.rule, **{k: v for k, v in overrides.items() if v is not None})

    def check_crop(self, crop: int) -> None:
        """Refuse a crop a fixed-shape bundle cannot take (its graphs are traced at one size)."""
        shape = self.config.input_shape
        if shape is not None and (crop, crop) != shape:
            raise RarEdgeError(f"{self.bundle} takes {shape[0]}x{shape[1]} tiles only: fit it with --crop {shape[0]} "
                               "(or export a --dynamic bundle to fit at other sizes)")

    def _each(self, entry: str, *batches: torch.Tensor) -> list[torch.Tensor]:
        """Run ``entry`` on each image of the batch; outputs stacked back into batches."""
        outs = [self.restorer.backend.run(entry, [np.ascontiguousarray(b[i : i + 1].cpu().numpy(), np.float32)
                                                  for b in batches])
                for i in range(len(batches[0]))]
        return [torch.from_numpy(np.concatenate([np.asarray(o[j], np.float32).reshape(1, *np.shape(o[j])[1:])
                                                 for o in outs]))
                for j in range(len(outs[0]))]

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self._each("encode", image)[0]

    def assess(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, p, cond = self._each("assess", z)
        return q.reshape(-1), p.reshape(len(z), -1), cond.reshape(len(z), -1)

    def restore(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self._each("restore", z, cond)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._each("decode", z)[0]
