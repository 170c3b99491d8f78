"""Per-type expert restorers routed by the assessor: does a mixture beat one mixed restorer? (issue 20)

Each expert is a checkpoint fine-tuned from the base model with its type drawn far more often
(``rar-edge train --init BASE --type-weights noise=15 ...``). At every step the base model's assessor
detects the degradations; ``hard`` routing runs the expert of the most probable type (the deployable form:
one restore per step, as now; the type is re-detected after every step), ``first`` the same with the type
detected on the input kept for every step (a denoised image can look blurred), ``hard@P`` / ``first@P``
only where that type's probability is at least P (the base restorer elsewhere), ``soft`` averages all
experts' steps weighted by the probabilities (six restores per step: an upper-bound probe), ``best`` runs the
base's and every expert's step and keeps, per image, the one the base's assessor scores highest (routing by
assessed quality instead of detected type: seven restores and assessments per step). Each expert
reads its own assessor's embedding. Reported like bench/learning_curve.py (fixed steps, held-out photos,
each test synthesis), with the base alone first and its detection AUC per type:

    python bench/routed_experts.py --base checkpoints/rar-edge-s-v5 --expert noise=runs/ex_noise/last \\
        ... --photos photos/heldout --json routed.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from learning_curve import fixed_steps, publish, summarise  # noqa: E402

from rar_edge import DEGRADATIONS  # noqa: E402
from rar_edge.eval.evaluate import evaluate  # noqa: E402
from rar_edge.train.checkpoint import load_model  # noqa: E402


def route(base, experts: list, mode: str, threshold: float = 0.0) -> None:
    """Replace ``base``'s assess/restore by the routed pair; the base's cond travels behind the probabilities."""
    d, e = len(DEGRADATIONS), base.config.cond_dim
    base_encode, base_assess, base_restore = base.encode, base.assess, base.restore
    first: list[torch.Tensor] = []  # the input's probabilities, for "first": set by the assessment after encode

    def encode(image):
        first.clear()
        return base_encode(image)

    def assess(z):
        q, probs, cond = base_assess(z)
        if not first:
            first.append(probs)
        routing = first[0] if mode == "first" else probs
        return q, probs, torch.cat([routing, cond, *[x.assess(z)[2] for x in experts]], 1)

    def restore(z, packed):
        probs, cond = packed[:, :d], packed[:, d:d + e]
        conds = [packed[:, d + e * (k + 1):d + e * (k + 2)] for k in range(d)]
        if mode == "soft":
            total = probs.sum(1, keepdim=True)
            w = probs / total.clamp_min(1e-6)
            mixed = sum(w[:, k, None, None, None] * x.restore(z, conds[k]) for k, x in enumerate(experts))
            return torch.where(total[:, :, None, None] > 0, mixed, base_restore(z, cond))  # nothing detected: base
        if mode == "best":  # every candidate's step, kept where the base's assessor scores it highest
            cands = [base_restore(z, cond), *[x.restore(z, conds[k]) for k, x in enumerate(experts)]]
            scores = torch.stack([base_assess(c)[0] for c in cands], 1)  # (N, 1 + experts)
            pick = scores.argmax(1)
            return torch.stack(cands, 1)[torch.arange(z.shape[0]), pick]
        top, pick = probs.max(1)
        out = base_restore(z, cond)
        for k, x in enumerate(experts):
            sel = (pick == k) & (top >= threshold)
            if sel.any():
                out[sel] = x.restore(z[sel], conds[k][sel])
        return out

    base.encode, base.assess, base.restore = encode, assess, restore


def parse_mode(mode: str) -> tuple[str, float]:
    """``hard``, ``first``, ``soft``, ``best`` or ``hard@P`` / ``first@P`` -> (kind, threshold); ValueError otherwise."""
    kind, at, value = mode.partition("@")
    if kind not in ("hard", "first", "soft", "best") or (at and kind in ("soft", "best")):
        raise ValueError(f"unknown routing mode {mode!r}: use hard, first, soft, best, hard@P or first@P")
    try:
        threshold = float(value) if at else 0.0
    except ValueError:
        threshold = -1.0  # refused below with the same message
    if not 0 <= threshold <= 1:
        raise ValueError(f"routing mode {mode!r}: the threshold after @ must be a probability in [0, 1]")
    return kind, threshold


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the mixed model: its assessor routes, its codec encodes/decodes")
    p.add_argument("--expert", action="append", default=[], help="TYPE=CHECKPOINT, one per degradation type")
    p.add_argument("--modes", default="hard,first,hard@0.8,soft",
                   help="hard, first, soft, best, hard@P / first@P (route where p >= P)")
    p.add_argument("--photos", required=True, help="held-out photos")
    p.add_argument("--syntheses", default="v2,albumentations")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--max-images", type=int, default=24)
    p.add_argument("--json")
    a = p.parse_args(argv)
    given = dict(x.split("=", 1) for x in a.expert)
    if sorted(given) != sorted(DEGRADATIONS):
        p.error(f"give one --expert TYPE=CHECKPOINT for each of {', '.join(DEGRADATIONS)}")
    try:
        modes = {m: parse_mode(m) for m in a.modes.split(",")}
    except ValueError as e:
        p.error(str(e))
    experts = [load_model(given[t])[0].eval() for t in DEGRADATIONS]  # in the detector's column order
    with torch.no_grad():  # not set_grad_enabled: main() may run inside another program (the tests)
        rows = []
        for mode in ["base", *modes]:
            base = load_model(a.base)[0].eval()  # afresh per mode: route() rebinds its methods
            if tuple(base.config.degradations) != DEGRADATIONS:
                p.error(f"{a.base} detects {base.config.degradations}; routing needs {DEGRADATIONS} in that order")
            if any(x.config.cond_dim != base.config.cond_dim for x in experts):
                p.error("every expert must have the base model's embedding size (cond_dim)")
            if mode != "base":
                route(base, experts, *modes[mode])
            for synthesis in a.syntheses.split(","):
                report = evaluate(base, a.photos, fixed_steps(a.steps), crop=a.crop, max_images=a.max_images,
                                  synthesis=synthesis)
                rows.append({"run": Path(a.base).name, "snapshot": mode, "step": 0, "synthesis": synthesis,
                             "summary": summarise(report), "degradation_auc": report["degradation_auc"]})
                s = rows[-1]["summary"]
                print(f"{mode} {synthesis}: single {s['single']:+.2f} dB, composite {s['composite']:+.2f} dB",
                      flush=True)
                if mode == "base":  # what routes: the base's detection of the input's types
                    auc = report["degradation_auc"]
                    print("  detection AUC: " + ", ".join(f"{k} {v:.2f}" for k, v in auc.items()))
    publish(rows, "routed_experts.py", argv, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
