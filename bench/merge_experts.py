"""Merge per-type experts into one model by task arithmetic: base + scale * sum of (expert - base).

    python bench/merge_experts.py --base checkpoints/rar-edge-s-v5 --expert runs/ex_noise/last ... \\
        --scale 1.0 [--parts restorer] --out runs/merged

Why: experts fine-tuned briefly from one base each beat the mixed model on their own type, but routing
them needs a detector that transfers (BENCHMARKS.md, "Per-type experts"). Fine-tunes that stay close to
their base (2-7 % relative weight change here) often add up: the summed changes may carry every
specialist's skill into one restorer with no router at all (Ilharco et al., "Editing models with task
arithmetic", 2023). ``--parts`` are merged with ``--scale`` x the sum; every other part (by default the
encoder, decoder and assessor, trained on the same objective by every expert) takes the experts' mean.
Writes ``OUT/last`` (config.json + model.safetensors), which bench/learning_curve.py ``--run OUT`` evaluates.
A measurement tool, not a training recipe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def merge(base: dict[str, np.ndarray], experts: list[dict[str, np.ndarray]], scale: float,
          parts: set[str]) -> dict[str, np.ndarray]:
    """base + scale * sum(expert - base) for tensors of ``parts`` (by their first name component), base +
    mean(expert - base) for the rest; integer tensors (counters) are the base's."""
    out = {}
    for name, w in base.items():
        if not np.issubdtype(w.dtype, np.floating):
            out[name] = w
            continue
        deltas = [e[name].astype(np.float64) - w for e in experts]
        factor = scale if name.split(".")[0] in parts else 1.0 / len(experts)
        out[name] = (w + factor * np.sum(deltas, axis=0)).astype(w.dtype)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="checkpoint folder the experts were fine-tuned from")
    ap.add_argument("--expert", type=Path, action="append", required=True, help="an expert's checkpoint (repeatable)")
    ap.add_argument("--scale", type=float, default=1.0, help="factor on the summed changes of --parts")
    ap.add_argument("--parts", default="restorer", help="comma-separated model parts merged by the sum")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base = load_file(str(args.base / "model.safetensors"))
    experts = [load_file(str(e / "model.safetensors")) for e in args.expert]
    for e, path in zip(experts, args.expert):
        if e.keys() != base.keys() or any(e[k].shape != base[k].shape for k in base):
            raise SystemExit(f"{path} is not a fine-tune of {args.base}: its tensors differ")
    merged = merge(base, experts, args.scale, set(args.parts.split(",")))
    config = json.loads((args.base / "config.json").read_text())
    config["merged"] = {"base": args.base.name, "experts": [str(e) for e in args.expert], "scale": args.scale,
                        "parts": args.parts}
    out = args.out / "last"
    out.mkdir(parents=True, exist_ok=True)
    save_file(merged, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"wrote {out}: {len(experts)} experts, {args.parts} x {args.scale}, the rest averaged")


if __name__ == "__main__":
    main()
