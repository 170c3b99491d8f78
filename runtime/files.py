"""Restore image files through a Restorer: the runtime side of ``rar-edge restore --bundle``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from rar_edge.errors import RarEdgeError

from .images import load_image, output_format, save_image
from .restorer import Restorer


def plan_outputs(inputs: list[str], out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Output paths (same names in ``out_dir``); refuses name clashes and writing over an input."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RarEdgeError(f"output {out_dir} exists and is not a folder; pass a folder with -o")
    names = [Path(p).name for p in inputs]
    if len(set(names)) != len(names):
        raise RarEdgeError("two inputs share a file name and would overwrite each other in the output folder")
    outputs = [out_dir / n for n in names]
    for src, dst in zip(inputs, outputs):
        output_format(dst)
        if not overwrite and dst.exists() and dst.resolve() == Path(src).resolve():
            raise RarEdgeError(f"output {dst} is the input itself; choose another -o (or pass --overwrite)")
    return outputs


def restore_files(restorer: Restorer, inputs: list[str], out_dir: str | Path, overwrite: bool = False,
                  **restore_args) -> Iterator[dict]:
    """One record per input: the JSON contract (input, output, steps, quality, degradations, ms, ...) or,
    for an input that failed, {"input", "error"}; later inputs still run."""
    outputs = plan_outputs(inputs, out_dir, overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for src, dst in zip(inputs, outputs):
        try:
            loaded = load_image(src)
            res = restorer.restore(loaded.rgb, **restore_args)
            save_image(dst, res.image, loaded.alpha, loaded.icc_profile)
        except RarEdgeError as e:
            yield {"input": str(src), "error": str(e)}
            continue
        except OSError as e:
            yield {"input": str(src), "error": f"cannot write {dst} ({e.strerror or e})"}
            continue
        yield {"input": str(src), "output": str(dst), **res.to_json()}
