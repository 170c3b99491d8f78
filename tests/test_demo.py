"""make demo: bundles exported once per version of the shipped weights (again when they change); its restore and
report path."""

from __future__ import annotations

import rar_edge.export
import rar_edge.export.__main__ as export_entry
import rar_edge.manifest
import rar_edge.runtime.restorer  # noqa: F401  imported before any test patches verify_bundle: it binds the real one
from rar_edge import demo


def test_demo_reexports_when_the_shipped_weights_or_the_int8_graph_change(tmp_path, monkeypatch):
    calls = []

    def fake_export(argv):
        calls.append(argv[argv.index("--target") + 1])
        return 0

    monkeypatch.setattr(export_entry, "main", fake_export)
    monkeypatch.setattr(rar_edge.manifest, "verify_bundle", lambda bundle: {})  # every bundle "verifies"
    out = tmp_path / "bundles"
    out.mkdir()

    demo.export_bundles(out, ("onnx", "executorch"))
    assert calls == ["onnx", "executorch"]  # no stamp yet: exported
    assert (out / f"{demo.PRESET}-int8-onnx.weights-sha256").read_text().strip() == demo.weights_digest()

    demo.export_bundles(out, ("onnx", "executorch"))
    assert calls == ["onnx", "executorch"]  # same weights: reused

    before = demo.weights_digest()
    monkeypatch.setattr(rar_edge.export, "INT8_GRAPHS", ("qat", "ort"))  # the export's default graph changed
    assert demo.weights_digest() != before
    demo.export_bundles(out, ("onnx",))
    assert calls == ["onnx", "executorch", "onnx"]

    monkeypatch.setattr(demo, "weights_digest", lambda: "0" * 64)  # the shipped weights changed
    demo.export_bundles(out, ("onnx",))
    assert calls == ["onnx", "executorch", "onnx", "onnx"]
    assert (out / f"{demo.PRESET}-int8-onnx.weights-sha256").read_text().strip() == "0" * 64


def test_demo_restores_every_sample_and_reports_what_the_runtime_did(tmp_path, capsys):
    """The demo's own path after the export, on the shipped bundle: its rows are the runtime's results and true
    PSNRs, its restored files are what the Restorer returned, and its table and pictures are written."""
    import json

    import numpy as np

    from rar_edge.runtime import DEFAULT_BUNDLE, Restorer
    from rar_edge.runtime.images import load_image, unit_float

    samples = demo.REPO / "samples"
    index = json.loads((samples / "samples.json").read_text())
    rows = demo.restore_samples(DEFAULT_BUNDLE, samples, tmp_path / "restored", budget_ms=1e6)
    assert [r["name"] for r in rows] == list(index) and any(r["steps"] > 0 for r in rows)
    restorer = Restorer.load()
    for row in rows[:3]:
        degraded = unit_float(load_image(samples / "degraded" / row["name"]).rgb)
        clean = unit_float(load_image(samples / index[row["name"]]["clean"]).rgb)
        psnr_in = 10 * np.log10(1 / np.mean((degraded.astype(np.float64) - clean) ** 2))
        assert abs(row["psnr_in"] - psnr_in) < 1e-3 and row["true"] == index[row["name"]]["degradations"]
        again = restorer.restore(degraded, budget_ms=1e6)
        assert (row["steps"], row["stop"]) == (again.steps, again.stop_reason)
        written = load_image(tmp_path / "restored" / row["name"]).rgb.astype(int)
        assert np.abs(written - np.round(again.image * 255).astype(int)).max() <= 1
    # Beside the default bundle's result, each int8 bundle's PSNR out and ms on the same image ("-" where it has none).
    edge = [{**r, "psnr_out": r["psnr_out"] - 1.25, "ms": 7.5 + i, "budget_bound": i == 0}
            for i, r in enumerate(rows[1:])]
    demo.print_table(rows, {"int8 onnx": edge}, 1e6)
    table = capsys.readouterr().out.splitlines()
    assert "int8 onnx dB / ms" in table[3]
    first = next(line for line in table if line.startswith(rows[0]["name"]))
    assert first.split()[-1] == "-" and f"{rows[0]['psnr_out']:.2f}" in first
    for i, r in enumerate(rows[1:]):
        line = next(line for line in table if line.startswith(r["name"]))
        assert line.split()[-3:] == [f"{r['psnr_out'] - 1.25:.2f}", "/", f"{7.5 + i:.1f}"], line
    gain = np.mean([r["psnr_out"] - r["psnr_in"] for r in rows])
    assert f"default bundle: mean PSNR change {gain:+.2f} dB over {len(rows)} images" in "\n".join(table)
    edge_gain = np.mean([r["psnr_out"] - r["psnr_in"] for r in edge])
    assert table[-1] == (f"int8 onnx: mean PSNR change {edge_gain:+.2f} dB over {len(edge)} images; budget 1000000 "
                         "ms per image (the loops it cut short: 1)")
    demo.write_pictures(rows, tmp_path)
    assert (tmp_path / "before_after.png").stat().st_size > 10_000 and (tmp_path / "quality_per_step.png").is_file()
    # --tone: only the under-exposed sample changes, for the better; the others are the rows without it
    toned = demo.restore_samples(DEFAULT_BUNDLE, samples, tmp_path / "toned", budget_ms=1e6, tone=True)
    assert [t["name"] for t in toned if t["toned"]] == ["05_coffee_low_light.png"]
    for t, r in zip(toned, rows):
        assert t["psnr_out"] > r["psnr_out"] + 3 if t["toned"] else t["psnr_out"] == r["psnr_out"]
    demo.print_toned(rows, toned)
    lines = capsys.readouterr().out.splitlines()
    assert "finds 1 of 9 samples under-exposed" in lines[1] and lines[2].startswith("  05_coffee_low_light.png: PSNR")
    from PIL import Image

    demo.write_pictures(rows, tmp_path / "with_tone", toned)
    with Image.open(tmp_path / "with_tone" / "tone.png") as picture:  # one row of four: the changed sample
        assert picture.width > 3 * picture.height


def test_found_means_one_rule_in_the_demo_the_cli_and_the_runtime(capsys):
    """A degradation at probability exactly FOUND_AT is found everywhere (the demo once said p > 0.5, the CLI
    p >= 0.5); just below it, nowhere."""
    import numpy as np

    from rar_edge.cli import _print_record
    from rar_edge.runtime.restorer import FOUND_AT, present

    probs = {"noise": FOUND_AT, "blur": np.nextafter(FOUND_AT, 0.0), "rain": 0.9}
    assert present(probs) == ["noise", "rain"] and present(probs, 0.95) == []
    row = {"name": "x.png", "true": ["noise"], "found": probs, "steps": 1, "steps_run": 2, "stop": "worse",
           "psnr_in": 20.0, "psnr_out": 24.0, "ms": 5.0, "budget_bound": False}
    demo.print_table([row], {}, 1e6)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("x.png"))
    assert line.split()[2] == "noise,rain" and "block grid" not in out
    # The JPEG grid's probability counts by the same rule: at FOUND_AT it is found; a row it left says why.
    demo.print_table([{**row, "jpeg_grid": FOUND_AT, "steps": 0, "stop": "clean"}], {}, 1e6)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("x.png"))
    assert line.split()[2] == "noise,rain,jpeg" and "the loop does not undo JPEG blocking yet" in out
    demo.print_table([{**row, "jpeg_grid": FOUND_AT}], {}, 1e6)  # stepped: no note
    assert "JPEG blocking" not in capsys.readouterr().out
    assert present(probs, jpeg_grid=np.nextafter(FOUND_AT, 0.0)) == ["noise", "rain"]
    _print_record({"input": "in.png", "output": "out.png", "quality": [20.0, 24.0], "degradations": probs,
                   "steps": 1, "stop_reason": "worse", "ms": {"total": 5.0}}, as_json=False)
    assert "found noise,rain;" in capsys.readouterr().out
    _print_record({"input": "in.png", "output": "out.png", "quality": [20.0], "degradations": probs,
                   "jpeg_grid": FOUND_AT, "steps": 0, "stop_reason": "clean", "ms": {"total": 5.0}}, as_json=False)
    assert "found noise,rain,jpeg; 0 steps (clean: no degradation reached the clean gate's threshold)" in \
        (out := capsys.readouterr().out) and "does not undo it" in out


def test_a_restore_line_shows_the_written_images_quality_and_why_the_loop_stopped(capsys):
    from rar_edge.cli import _print_record

    # Step 2 was judged worse and undone: the line shows step 1's quality (the image written), not the best seen.
    record = {"input": "in.png", "output": "out.png", "quality": [15.9, 18.7, 19.1],
              "degradations": {"noise": 0.9, "rain": 0.1}, "steps": 1, "steps_run": 2, "stop_reason": "worse",
              "ms": {"total": 5.0}}
    _print_record(record, as_json=False)
    out = capsys.readouterr().out
    assert "found noise; 1 step (worse: the next step was judged worse and undone)" in out
    assert "assessed quality 15.9 -> 18.7 dB" in out and "19.1" not in out
    # Kept steps whose assessment fell are shown falling (keep="last").
    _print_record({**record, "quality": [16.3, 16.2, 16.1], "steps": 2, "stop_reason": "max_steps"}, False)
    assert "2 steps (max_steps: the step cap), assessed quality 16.3 -> 16.1 dB" in capsys.readouterr().out
    # The clean gate opened below FOUND_AT: the line says on what, not "no degradation" alone.
    _print_record({**record, "degradations": {"noise": 0.48, "rain": 0.49}}, False)
    assert "found no degradation at p >= 0.5 (the most probable: rain 0.49); 1 step" in capsys.readouterr().out
    # After a tone curve the loop assessed the brightened photo; at 0 steps one figure.
    _print_record({**record, "tone": {"applied": True, "under_exposed_logit": 2.9, "gate": 0.0}}, False)
    assert "tone curve applied (under-exposed); found noise; 1 step" in (out := capsys.readouterr().out)
    assert "assessed quality of the brightened photo 15.9 -> 18.7 dB" in out
    # The budget could not pay for the model: the line says what would.
    _print_record({**record, "quality": [], "steps": 0, "steps_run": 0, "stop_reason": "budget", "needed_ms": 956.4,
                   "cost_unknown": False}, False)
    assert "returned unchanged (budget below encode + decode: this photo needs a budget of about 956 ms)" in \
        capsys.readouterr().out
    _print_record({**record, "quality": [34.9], "steps": 0, "steps_run": 0, "stop_reason": "target"}, False)
    assert "0 steps (target: the assessed quality reached the target), assessed quality 34.9 dB," in \
        capsys.readouterr().out
