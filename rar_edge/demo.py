"""``make demo`` / ``python -m rar_edge.demo``: the default model restores the samples, then the int8 student's bundles.

1. restores every photo in samples/degraded through the torch-free runtime under a latency budget with the
   shipped default bundle (what ``rar-edge restore`` runs when no model is named);
2. exports the shipped int8 student (rar_edge/weights/SHIPPED_STUDENT) to ExecuTorch and ONNX bundles, and to
   Core ML (verified by its spec on Linux, where Core ML cannot predict), and restores the photos again with
   the ONNX and the ExecuTorch bundle;
3. writes before/after grids and a plot of the assessed quality per step (the default bundle's), and prints per
   image: the degradations found, the steps, PSNR input -> output against the clean original and milliseconds,
   and each int8 bundle's PSNR out and milliseconds; then the samples the exposure stage (``--tone``) changes
   (and tone.png: those samples without and with it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from rar_edge import SHIPPED_STUDENT as PRESET
from rar_edge.errors import RarEdgeError, debug_requested, quiet_import_notices

REPO = Path(__file__).resolve().parents[1]
TILE = 256  # the samples' size: one tile each


def weights_digest() -> str:
    """SHA-256 over the shipped student's files and the int8 ONNX export's default graph kind and weight width:
    names what a demo bundle was made from (a bundle exported before a default changed is exported again)."""
    import hashlib

    from rar_edge import export

    root = Path(__file__).parent / "weights" / PRESET
    digest = hashlib.sha256(f"int8-graph={export.INT8_GRAPHS[0]}\nweight-bits={export.default_weight_bits()}\n".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def export_bundles(out: Path, targets: tuple[str, ...]) -> dict[str, Path]:
    """Export the shipped student per target, unless a bundle of these very weights already verifies.

    A stamp beside each bundle records the digest of the weights it came from: after the shipped
    weights change (a new release, a re-distillation), the next demo exports again instead of running
    the old model.
    """
    from rar_edge.atomic import atomic_path
    from rar_edge.export.__main__ import main as export_main
    from rar_edge.manifest import verify_bundle

    digest = weights_digest()
    bundles = {}
    for target in targets:
        bundle = out / f"{PRESET}-int8-{target}"
        stamp = out / f"{bundle.name}.weights-sha256"
        try:
            verify_bundle(bundle)
            if not stamp.is_file() or stamp.read_text().strip() != digest:
                raise ValueError("exported from other weights")
        except ValueError:
            print(f"exporting {PRESET} int8 -> {target} ...", flush=True)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = export_main(["--target", target, "--preset", PRESET, "--precision", "int8",
                                    "--imgsz", str(TILE), "-o", str(out)])
            if code != 0:
                raise RarEdgeError(f"export to {target} failed: {err.getvalue().strip().splitlines()[-1]}")
            with atomic_path(stamp) as tmp:
                tmp.write_text(digest + "\n")
        bundles[target] = bundle
    return bundles


def restore_samples(bundle: Path, samples: Path, out: Path, budget_ms: float, tone: bool = False,
                    denoise: bool = True) -> list[dict]:
    """Every sample through the runtime; one row per image with PSNR against its clean original. ``tone``: with
    the exposure stage first (``rar-edge restore --tone``; the row's "toned" says where its head applied it);
    ``denoise=False``: without the noise stage (the loop alone)."""
    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import Restorer
    from rar_edge.runtime.images import load_image, save_image, unit_float

    index = json.loads((samples / "samples.json").read_text())
    restorer = Restorer.load(bundle)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, meta in index.items():
        degraded = unit_float(load_image(samples / "degraded" / name).rgb)
        clean = unit_float(load_image(samples / meta["clean"]).rgb)
        res = restorer.restore(degraded, budget_ms=budget_ms, tone=tone, denoise=denoise)
        save_image(out / name, res.image)
        rows.append({"name": name, "true": meta["degradations"], "found": res.degradations,
                     "jpeg_grid": res.jpeg_grid, "steps": res.steps,
                     "steps_run": res.steps_run, "stop": res.stop_reason, "quality": res.quality,
                     "psnr_in": psnr(degraded, clean), "psnr_out": psnr(res.image, clean),
                     "ms": res.ms["total"], "budget_bound": res.budget_bound,
                     "toned": bool(res.tone and res.tone.applied), "denoised": res.denoised,
                     "images": (degraded, res.image, clean)})
    return rows


def steps_cell(row: dict) -> str:
    """A sample's steps as the demo's table and the model card's print them: kept (run, stop reason), and "+n"
    where the noise stage ran after the loop (tests/test_shipped.py reads the card's)."""
    return f"{row['steps']} ({row['steps_run']}, {row['stop']}){' +n' if row.get('denoised') else ''}"


def print_table(rows: list[dict], edge: dict[str, list[dict]], budget_ms: float) -> None:
    """One line per image: ``rows``' result (the default bundle's), then each of ``edge``'s bundles' PSNR out
    and milliseconds on the same image (``edge``: a label per bundle, e.g. "int8 onnx", and its rows)."""
    from rar_edge.loop import STOP_REASONS
    from rar_edge.runtime.restorer import FOUND_AT, present

    by_name = {label: {r["name"]: r for r in other} for label, other in edge.items()}
    width = {label: len(label) + 13 for label in edge}  # "<label> dB / ms" and a gap before it
    print("\nper image: the default bundle's result, then each int8 bundle's PSNR out / ms (PSNR against the clean "
          f"original);\nsteps: kept (run, why the loop stopped; 'clean': {STOP_REASONS['clean']}, returned as it "
          "came but for +n); +n: the noise stage ran after the loop (noise found)")
    print(f"{'image':<28} {'true':<12} {f'found (p>={FOUND_AT:g})':<20} {'steps (run, stop)':<18} {'PSNR in -> out':>16} "
          f"{'ms':>6}" + "".join(f"{label + ' dB / ms':>{width[label]}}" for label in edge))
    found_in = {r["name"]: present(r["found"], jpeg_grid=r.get("jpeg_grid")) for r in rows}
    for r in rows:
        found = ",".join(found_in[r["name"]]) or "-"
        steps = steps_cell(r)
        cells = "".join(f"{o['psnr_out']:>{width[label] - 9}.2f} / {o['ms']:>6.1f}"
                        if (o := by_name[label].get(r["name"])) else f"{'-':>{width[label]}}" for label in edge)
        print(f"{r['name']:<28} {'+'.join(r['true']):<12} {found:<20} {steps:<18} "
              f"{r['psnr_in']:>7.2f} -> {r['psnr_out']:<6.2f} {r['ms']:>6.1f}{cells}")
    if any("jpeg" in found_in[r["name"]] and r["stop"] == "clean" for r in rows):  # found, yet "clean" to the loop
        print("(jpeg found and left as it came: the loop does not undo JPEG blocking yet)")
    for label, which in (("default bundle", rows), *edge.items()):
        gain = np.mean([r["psnr_out"] - r["psnr_in"] for r in which])
        bound = sum(r["budget_bound"] for r in which)
        print(f"{label}: mean PSNR change {gain:+.2f} dB over {len(which)} images; budget {budget_ms:.0f} ms per "
              f"image (the loops it cut short: {bound})")


def print_toned(rows: list[dict], toned: list[dict]) -> None:
    """The samples the exposure stage changes (``toned``: restore_samples(..., tone=True)) against ``rows``."""
    plain = {r["name"]: r for r in rows}
    changed = [t for t in toned if t["toned"]]
    print(f"\nwith the exposure stage first (rar-edge restore --tone: opt-in, it brightens dark scenes too), its "
          f"head finds {len(changed)} of {len(toned)} samples under-exposed:")
    for t in changed:
        print(f"  {t['name']}: PSNR {t['psnr_in']:.2f} -> {t['psnr_out']:.2f} dB, {t['steps']} steps "
              f"(without: -> {plain[t['name']]['psnr_out']:.2f} dB)")


def write_pictures(rows: list[dict], work: Path, toned: list[dict] | None = None) -> None:
    """before_after.png and quality_per_step.png (``rows``: the default bundle's); with ``toned``
    (restore_samples(..., tone=True)) also tone.png: the samples the exposure stage changed, without and with it."""
    from rar_edge.viz import comparison_grid, line_plot

    comparison_grid([list(r["images"]) for r in rows],
                    [f"{r['name']}: {r['psnr_in']:.1f} -> {r['psnr_out']:.1f} dB, {r['steps']} steps" for r in rows],
                    ["degraded", "restored (default bundle, runtime)", "clean original"], work / "before_after.png")
    line_plot({r["name"].split(".")[0]: r["quality"] for r in rows}, work / "quality_per_step.png",
              "assessed quality per step (default bundle, runtime)", "step", "quality (dB)")
    plain = {r["name"]: r for r in rows}
    changed = [t for t in toned or [] if t["toned"]]
    if changed:
        comparison_grid([[t["images"][0], plain[t["name"]]["images"][1], t["images"][1], t["images"][2]] for t in changed],
                        [f"{t['name']}: {t['psnr_in']:.1f} -> {plain[t['name']]['psnr_out']:.1f} dB, with --tone "
                         f"{t['psnr_out']:.1f} dB" for t in changed],
                        ["degraded", "restored", "restored with --tone", "clean original"], work / "tone.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rar_edge.demo", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", default=str(REPO / "samples"), help="folder with samples.json, degraded/ and clean/")
    p.add_argument("--work", default="runs/demo", help="bundles, restored images and pictures go here")
    p.add_argument("--budget-ms", type=float, default=250.0, help="latency budget per image")
    p.add_argument("--no-coreml", action="store_true", help="skip the Core ML export")
    a = p.parse_args(argv)
    if not debug_requested():  # as every CLI: third parties' import notices only with RAR_EDGE_DEBUG=1
        quiet_import_notices()
    work, samples = Path(a.work), Path(a.samples)
    try:
        targets = ("onnx", "executorch") + (() if a.no_coreml else ("coreml",))
        from rar_edge.runtime import DEFAULT_BUNDLE

        rows = restore_samples(DEFAULT_BUNDLE, samples, work / "restored", a.budget_ms)
        toned = restore_samples(DEFAULT_BUNDLE, samples, work / "restored_tone", a.budget_ms, tone=True)
        bundles = export_bundles(work / "bundles", targets)
        edge = {f"int8 {target}": restore_samples(bundles[target], samples, work / f"restored_int8_{target}",
                                                   a.budget_ms) for target in ("onnx", "executorch")}
    except RarEdgeError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    print_table(rows, edge, a.budget_ms)
    print_toned(rows, toned)
    write_pictures(rows, work, toned)
    print(f"default bundle: {DEFAULT_BUNDLE.name}; int8 bundles: {work / 'bundles'}; restored: {work / 'restored'} "
          f"(int8: {work / 'restored_int8_onnx'}, {work / 'restored_int8_executorch'}); pictures: "
          f"{work / 'before_after.png'}, {work / 'quality_per_step.png'}; with --tone: {work / 'restored_tone'}, "
          f"{work / 'tone.png'}")
    print(f"next: rar-edge restore YOUR_PHOTOS -o out --budget-ms {a.budget_ms:.0f}   (the default bundle; on a "
          f"device: --bundle {bundles['executorch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
