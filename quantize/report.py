"""The distillation report: teacher fp32, student fp32, student int8 (fake-quant and converted), per-part sensitivity."""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from rar_edge.eval.evaluate import evaluate
from rar_edge.model import ENTRY_POINTS, RAR, count_complexity

from .qat import QuantRAR, export_graph, export_program

#: Targets of the distillation issue (checked and reported, never asserted in tests).
TARGETS = {"max_drop_vs_student_fp32_db": 0.3, "max_drop_vs_teacher_db": 1.0, "max_srcc_drop": 0.03,
           "max_int8_size_ratio": 1 / 3}


def program_bytes(model: RAR | QuantRAR) -> dict[str, int]:
    """Bytes of the four entry points: ``file`` as saved by ``torch.export.save`` (graph included),
    ``weights`` the tensors they hold (what quantization shrinks; small models' files are mostly graph)."""
    files = weights = 0
    for name in ENTRY_POINTS:
        ep = export_program(model, name)
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        files += buf.getbuffer().nbytes
        tensors = list(ep.state_dict.values()) + [t for t in ep.constants.values() if isinstance(t, torch.Tensor)]
        weights += sum(t.numel() * t.element_size() for t in tensors)
    return {"file": files, "weights": weights}


def summarize(report: dict) -> dict:
    degraded = {k: v for k, v in report["cases"].items() if k != "clean"}
    aucs = [v for v in report["degradation_auc"].values() if not math.isnan(v)]
    return {
        "psnr_in": float(np.mean([v["psnr_in"] for v in degraded.values()])),
        "psnr_out": float(np.mean([v["psnr_out"] for v in degraded.values()])),
        "ssim_out": float(np.mean([v["ssim_out"] for v in degraded.values()])),
        "steps": float(np.mean([v["steps"] for v in report["cases"].values()])),
        "srcc": report["assessor_srcc"],
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
    }


def build_report(teacher: RAR, quant: QuantRAR, converted: QuantRAR, data: str, crop: int = 128,
                 max_images: int = 8) -> dict:
    """Evaluate every variant on the same fixed cases; sizes, parameters, MACs; targets met or missed."""
    student = quant.to_float()
    variants = {"teacher_fp32": teacher, "student_fp32": student, "student_int8_fakequant": quant.eval(),
                "student_int8": converted}
    rows, details = {}, {}
    for name, model in variants.items():
        rep = evaluate(model, data, model.stop_rule(), crop=crop, max_images=max_images)
        details[name] = rep
        rows[name] = summarize(rep)
    teacher_c, student_c = count_complexity(teacher), count_complexity(student)
    sizes = {"teacher_fp32": program_bytes(teacher), "student_fp32": program_bytes(student),
             "student_int8": program_bytes(converted)}
    sizes["student_int8_fakequant"] = sizes["student_int8"]
    for name, row in rows.items():
        c = teacher_c if name == "teacher_fp32" else student_c
        row.update(bytes=sizes[name]["file"], weight_bytes=sizes[name]["weights"], params=int(c["total"]["params"]), gmac_per_mp=c["total"]["gmac_per_mp"])

    # Each part int8 alone: its converted graph among float graphs of the rest (reused, not converted
    # and exported again per part: that made the report most of a short distillation's time).
    floats = {name: export_graph(student, name) for name in ENTRY_POINTS}
    sensitivity = {}
    for part in converted.quantized:  # the post-training parts too (float in the fake-quant model)
        mixed = QuantRAR(quant.config, {**floats, part: converted.parts[part]}, (part,)).eval()
        rep = evaluate(mixed, data, student.stop_rule(), crop=crop, max_images=max_images)
        sensitivity[part] = rows["student_fp32"]["psnr_out"] - summarize(rep)["psnr_out"]

    int8, fp32, t = rows["student_int8"], rows["student_fp32"], rows["teacher_fp32"]
    checks = {
        "drop_vs_student_fp32_db": (fp32["psnr_out"] - int8["psnr_out"], TARGETS["max_drop_vs_student_fp32_db"]),
        "drop_vs_teacher_db": (t["psnr_out"] - int8["psnr_out"], TARGETS["max_drop_vs_teacher_db"]),
        "srcc_drop": (t["srcc"] - int8["srcc"], TARGETS["max_srcc_drop"]),
        "int8_size_ratio": (int8["weight_bytes"] / fp32["weight_bytes"], TARGETS["max_int8_size_ratio"]),
    }
    # A constant prediction (e.g. an untrained assessor) has no rank correlation: nan, "not measurable".
    targets = {k: {"value": v, "limit": lim, "met": bool(v <= lim),
                   "missed_by": None if math.isnan(v) else max(0.0, v - lim)}
               for k, (v, lim) in checks.items()}
    return {"variants": rows, "per_case_psnr": {n: {c: r["psnr_out"] for c, r in d["cases"].items()}
                                                for n, d in details.items()},
            "sensitivity_db": sensitivity, "targets": targets, "images": max_images, "crop": crop}


def format_report(report: dict) -> str:
    lines = [f"{'variant':<24} {'PSNR in':>8} {'PSNR out':>9} {'SSIM':>6} {'steps':>6} {'SRCC':>6} {'AUC':>6} "
             f"{'file B':>10} {'weight B':>9} {'params':>9} {'GMAC/MP':>8}"]
    for name, r in report["variants"].items():
        lines.append(f"{name:<24} {r['psnr_in']:>8.2f} {r['psnr_out']:>9.2f} {r['ssim_out']:>6.3f} {r['steps']:>6.2f} "
                     f"{r['srcc']:>6.3f} {r['auc']:>6.3f} {r['bytes']:>10d} {r['weight_bytes']:>9d} {r['params']:>9d} "
                     f"{r['gmac_per_mp']:>8.2f}")
    lines.append("per-part sensitivity (PSNR drop when only that part is int8): "
                 + ", ".join(f"{k} {v:+.3f} dB" for k, v in report["sensitivity_db"].items()))
    for name, t in report["targets"].items():
        if t["missed_by"] is None:
            verdict = "not measurable (constant predictions)"
        else:
            verdict = "met" if t["met"] else f"MISSED by {t['missed_by']:.3f}"
        lines.append(f"target {name}: {t['value']:.3f} (limit {t['limit']:.3f}) {verdict}")
    return "\n".join(lines)
