"""Quantization-aware RAR: each entry point as a PT2E graph with fake-quant, then converted to int8.

``QuantRAR`` duck-types ``RAR`` (encode / assess / restore / decode, the loop, and
``encoder`` / ``decoder`` / ``restorer`` / ``assessor`` for the training objective), so the trainer,
the objective and the evaluation run unchanged on it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from rar_edge.model import ENTRY_POINTS, RAR
from rar_edge.model.entry_points import EntryPoint, example_inputs

_PREFIX = "model."  # EntryPoint wraps the RAR model as .model: graph parameters keep these names


def dynamic_shapes(model: RAR, name: str, args: tuple[torch.Tensor, ...]):
    """Dynamic batch and H x W (multiples of the size step) for ``torch.export`` of one entry point."""
    c = model.config
    unit = c.size_multiple // c.stride
    batch = torch.export.Dim("batch", min=1, max=1024)
    hq = torch.export.Dim("hq", min=1, max=1024)
    wq = torch.export.Dim("wq", min=1, max=1024)
    scale = c.stride if name == "encode" else 1
    return (tuple({0: batch, 2: unit * scale * hq, 3: unit * scale * wq} if a.dim() == 4 else {0: batch}
                  for a in args),)


def trace_inputs(model, name: str, module: nn.Module, height: int, width: int, dynamic: bool):
    """(example args, dynamic_shapes) to export ``module`` (entry point ``name`` of ``model``) at a size.

    Dynamic exports trace with batch 2 (batch 1 would specialise the batch dimension). An exported
    graph takes its inputs positionally, so its shape specs are not wrapped like an EntryPoint's *args.
    """
    args = example_inputs(model, name, height, width, batch=2 if dynamic else 1)
    if not dynamic:
        return args, None
    shapes = dynamic_shapes(model, name, args)
    return args, shapes[0] if isinstance(module, torch.fx.GraphModule) else shapes


def export_graph(model: RAR, name: str, size: int = 64) -> torch.fx.GraphModule:
    """One entry point as a trainable exported graph (dynamic batch and size), holding only its own weights."""
    args = example_inputs(model, name, size, size, batch=2)
    graph = torch.export.export(EntryPoint(model, name), args, dynamic_shapes=dynamic_shapes(model, name, args)).module()
    return drop_unused_weights(graph)


def drop_unused_weights(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove the weights a graph does not use. An exported entry point carries every weight of the model
    (the encoder's graph the decoder's too); left in, they would be saved with each program and counted
    in its size."""
    graph.graph.eliminate_dead_code()  # get_attr nodes without users
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for key, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if key not in used:
            owner, _, attr = key.rpartition(".")
            delattr(graph.get_submodule(owner) if owner else graph, attr)
    graph.recompile()
    return graph


def _has_mode_dependent_ops(graph: nn.Module) -> bool:
    """Whether an exported graph holds dropout or batch norm, the ops whose exported form differs between
    training and evaluation (what torchao's move_exported_model_to_train/eval rewrite). RAR's graphs hold
    neither, and the rewrite's pattern matching cost 1-2 s per graph per switch: most of a short QAT run."""
    if not isinstance(graph, torch.fx.GraphModule):
        return False
    return any(n.op == "call_function" and ("dropout" in str(n.target) or "batch_norm" in str(n.target))
               for n in graph.graph.nodes)


class QuantRAR(nn.Module):
    """RAR with its entry points as exported graphs: fake-quant (QAT), converted int8, or float."""

    def __init__(self, config, parts: dict[str, nn.Module], quantized: tuple[str, ...]) -> None:
        super().__init__()
        self.config = config
        self.parts = nn.ModuleDict(parts)
        self.quantized = tuple(quantized)

    @classmethod
    def prepare(cls, model: RAR, quantizer, keep_float: tuple[str, ...] = ()) -> "QuantRAR":
        """Export each entry point and insert fake-quant (``prepare_qat_pt2e``), except ``keep_float`` ones."""
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

        unknown = set(keep_float) - set(ENTRY_POINTS)
        if unknown:
            raise ValueError(f"unknown entry points {sorted(unknown)} in keep_float; choose from {ENTRY_POINTS}")
        model = copy.deepcopy(model).cpu().train()
        parts = {}
        for name in ENTRY_POINTS:
            gm = export_graph(model, name)
            parts[name] = gm if name in keep_float else prepare_qat_pt2e(gm, quantizer)
        quant = cls(model.config, parts, tuple(n for n in ENTRY_POINTS if n not in keep_float))
        return quant.train()

    # --- RAR's interface ---
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.parts["encode"](image)

    def assess(self, z: torch.Tensor):
        return self.parts["assess"](z)

    def restore(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.parts["restore"](z, cond)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.parts["decode"](z)

    encoder = property(lambda self: self.parts["encode"])
    decoder = property(lambda self: self.parts["decode"])
    restorer = property(lambda self: self.parts["restore"])
    assessor = property(lambda self: self.parts["assess"])  # an entry point, not an Assessor
    restore_loop = RAR.restore_loop
    stop_rule = RAR.stop_rule

    def train(self, mode: bool = True) -> "QuantRAR":
        """Exported graphs cannot use ``Module.train``; switch their fake-quant/observers the PT2E way."""
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        for part in self.parts.values():
            if _has_mode_dependent_ops(part):
                (move_exported_model_to_train if mode else move_exported_model_to_eval)(part)
        self.training = mode
        return self

    def eval(self) -> "QuantRAR":
        return self.train(False)

    def disable_observers(self) -> None:
        """Freeze the quantization ranges (the last part of QAT trains the weights against fixed ranges)."""
        from torchao.quantization.pt2e import disable_observer

        for name in self.quantized:
            self.parts[name].apply(disable_observer)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s, but ignores weights that no graph here uses. QAT checkpoints written before
        the graphs dropped their unused weights (2026-11-29) hold, in each kept-float part, a copy of every
        weight of the model; they resume with this."""
        own = self.state_dict()
        kept = type(state_dict)((k, v) for k, v in state_dict.items() if k in own or f".{_PREFIX}" not in k)
        kept._metadata = getattr(state_dict, "_metadata", None)  # observers' format versions (train/task.py)
        return super().load_state_dict(kept, strict=strict, assign=assign)

    def float_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in RAR's naming (what a float checkpoint of the student stores)."""
        out = {}
        for part in self.parts.values():
            for key, value in part.named_parameters():
                if key.startswith(_PREFIX):
                    out[key[len(_PREFIX):]] = value.detach()
        return out

    def to_float(self) -> RAR:
        """A float RAR with the (QAT-trained) weights."""
        model = RAR(self.config)
        model.load_state_dict(self.float_state_dict())
        return model.eval()

    def convert(self) -> "QuantRAR":
        """A copy whose quantized parts are converted to int8 (``convert_pt2e``); the float parts are
        float graphs with the same weights (fake-quant removed)."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        src = copy.deepcopy(self).eval()
        float_model = self.to_float()
        # convert_pt2e leaves the float weights it folded into int8 constants on the graph: drop them.
        parts = {name: drop_unused_weights(convert_pt2e(src.parts[name])) if name in self.quantized
                 else export_graph(float_model, name) for name in ENTRY_POINTS}
        return QuantRAR(self.config, parts, self.quantized).eval()

    def save_programs(self, folder: str | Path, size: int = 64) -> dict[str, int]:
        """``torch.export.save`` each (converted) entry point as ``folder/<name>.pt2``; returns sizes in bytes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sizes = {}
        for name in ENTRY_POINTS:
            path = folder / f"{name}.pt2"
            torch.export.save(without_stack_traces(export_program(self, name, size)), path)
            sizes[name] = path.stat().st_size
        return sizes


def without_stack_traces(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with its nodes' source stack traces dropped: they name files on the machine that traced it
    (its checkout, its venv), and the programs ship inside the package."""
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    return program


def export_program(model: RAR | QuantRAR, name: str, size: int = 64) -> torch.export.ExportedProgram:
    """Entry point ``name`` of a float RAR or of a QuantRAR's graphs as one ExportedProgram (dynamic
    batch and size): what ``save_programs`` writes."""
    module = model.parts[name] if isinstance(model, QuantRAR) else export_graph(model, name, size)
    args, shapes = trace_inputs(model, name, module, size, size, dynamic=True)
    return torch.export.export(module, args, dynamic_shapes=shapes)


def load_programs(folder: str | Path, model: RAR, kept_float: tuple[str, ...] | None = None) -> QuantRAR:
    """The converted entry points saved by ``save_programs``, as a runnable QuantRAR.

    ``model`` holds the student's float weights (its checkpoint's model.safetensors). The entry points
    in ``kept_float`` (default: the student's ``quantization.kept_float``, read from the config.json beside
    ``folder``, as ``rar-edge distill`` writes OUT/student/int8) are exported from it afresh rather than
    loaded: ``rar-edge distill`` writes those weights and those programs from one model, so the numbers
    are the same, and a fresh export follows the current code's graph (e.g. the assessor's delegable
    means), where a saved float program would keep the graph of the version that wrote it.
    """
    # The converted graphs call quantized_decomposed ops: register them before deserialising.
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    folder = Path(folder)
    if kept_float is None:
        config = folder.parent / "config.json"
        quantization = json.loads(config.read_text()).get("quantization", {}) if config.is_file() else {}
        kept_float = tuple(quantization.get("kept_float", ()))
    # Unused weights dropped: programs saved before export_graph and convert dropped them carry float copies.
    parts = {name: export_graph(model, name) if name in kept_float
             else drop_unused_weights(torch.export.load(folder / f"{name}.pt2").module()) for name in ENTRY_POINTS}
    return QuantRAR(model.config, parts, tuple(n for n in ENTRY_POINTS if n not in kept_float)).eval()


def count_qdq(graph: torch.fx.GraphModule) -> int:
    """Quantize/dequantize nodes in a graph (a converted int8 graph holds many; a float one none)."""
    return sum(1 for n in graph.graph.nodes if n.op == "call_function" and "quantize_per" in str(n.target))
