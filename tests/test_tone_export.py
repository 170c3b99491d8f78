"""The exposure stage in bundles: the tone head's files and its graph (tone.onnx, tone.pte, tone.mlpackage)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import cli, export_here
from rar_edge.manifest import verify_bundle
from rar_edge.runtime.tone import DEFAULT_TONE, ToneCurve

HEAD_FILES = ["tone/config.json", "tone/tone.safetensors"]


def _dark_photos(photo_array: np.ndarray) -> list[np.ndarray]:
    """8-bit photos as an app holds them: one as taken, one under-exposed (where the shipped head applies)."""
    photo = photo_array[:96, :128]
    return [np.round(photo * 255).astype(np.uint8), np.round(photo * 0.15 * 255).astype(np.uint8)]


def _check_graph(bundle, run, photos) -> None:
    """The bundle's graph (``run``: thumbnail -> (table, logit)) on each photo's thumbnail, applied by the
    manifest's rule, gives what the runtime's stage gives."""
    entry = verify_bundle(bundle)["tone"]
    curve = ToneCurve.load(bundle / entry["head"])
    applied = []
    for rgb in photos:
        thumb = np.ascontiguousarray(curve.thumbnail(rgb).transpose(2, 0, 1)[None], dtype=np.float32)
        assert list(thumb.shape) == entry["inputs"]["thumbnail"]
        table, logit = (np.asarray(o) for o in run(thumb))
        assert list(table.shape) == entry["outputs"]["table"] and table.size == 3 * 256
        params, want_logit = curve.estimate(rgb)
        assert abs(float(logit.reshape(-1)[0]) - want_logit) < 1e-3
        assert np.abs(table[0] - curve.curve_table(params)).max() < 1e-4
        if float(logit.reshape(-1)[0]) >= entry["gate"]:  # the rule an app follows: a lookup per 8-bit value
            by_app = np.stack([table[0, c][rgb[..., c]] for c in range(3)], axis=-1)
            want, decision = curve(rgb)
            assert decision.applied and np.abs(by_app - want).max() < 1e-4
        applied.append(float(logit.reshape(-1)[0]) >= entry["gate"])
    assert applied == [False, True]  # the shipped head: the photo as taken is left, the dark one brightened


def test_onnx_bundle_carries_the_tone_head_and_its_graph(bundles, photo_array):
    import onnx
    import onnxruntime as ort

    bundle = bundles["onnx"]
    manifest = verify_bundle(bundle)
    entry = manifest["tone"]
    assert entry["graph"] == "tone.onnx" and entry["head"] == "tone" and entry["gate"] == 0.0
    assert set(manifest["artifacts"]) >= {"tone.onnx", *HEAD_FILES}
    for name in ("config.json", "tone.safetensors"):  # the shipped head, as it ships
        assert (bundle / "tone" / name).read_bytes() == (DEFAULT_TONE / name).read_bytes()
    assert entry["parity"]["passed"] and entry["parity"]["table_max_abs"] < 1e-4
    model = onnx.load(str(bundle / "tone.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["thumbnail"]
    assert [o.name for o in model.graph.output] == ["table", "logit"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["tone"])["gate"] == 0.0 and "QuantizeLinear" not in {n.op_type for n in model.graph.node}
    assert not any(n.metadata_props for n in model.graph.node)  # slimmed like the entry points' graphs
    session = ort.InferenceSession(str(bundle / "tone.onnx"), providers=["CPUExecutionProvider"])
    _check_graph(bundle, lambda t: session.run(None, {"thumbnail": t}), _dark_photos(photo_array))


def test_executorch_bundle_carries_the_tone_graph(bundles, photo_array):
    import torch
    from executorch.runtime import Runtime

    bundle = bundles["executorch"]
    manifest = verify_bundle(bundle)
    assert manifest["tone"]["graph"] == "tone.pte" and set(manifest["artifacts"]) >= {"tone.pte", *HEAD_FILES}
    assert manifest["tone"]["method"] == "tone" and manifest["tone"]["ops"]["delegated_ops"] > 0  # the MLP in XNNPACK
    assert not any("linear" in op or "mm" in op for op in manifest["tone"]["ops"]["outside_delegate"])
    method = Runtime.get().load_program(str(bundle / "tone.pte")).load_method("tone")
    _check_graph(bundle, lambda t: [o.numpy() for o in method.execute([torch.from_numpy(t)])],
                 _dark_photos(photo_array))


def test_a_dynamic_bundle_carries_the_fixed_size_graph(bundles):
    import onnx

    manifest = verify_bundle(bundles["dynamic"])
    assert manifest["tone"]["inputs"]["thumbnail"] == [1, 3, 64, 64] and manifest["tone"]["parity"]["passed"]
    graph = onnx.load(str(bundles["dynamic"] / "tone.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]


def test_no_tone_leaves_it_out_and_a_named_head_is_the_bundle_s(tiny_checkpoint, tmp_path, photo_array):
    from rar_edge.runtime import Restorer

    plain = export_here("--target", "onnx", "--checkpoint", tiny_checkpoint, "--imgsz", "64", "--no-tone",
                        "-o", tmp_path / "plain")
    bundle = tmp_path / "plain" / "rar-tiny-fp32-onnx"
    manifest = verify_bundle(bundle)
    assert "tone" not in manifest and not (bundle / "tone").exists() and not (bundle / "tone.onnx").exists()
    assert "tone:" not in plain
    # a bundle without a head tones with the shipped one
    used, shipped = Restorer.load(bundle, warmup=False).tone_curve(), ToneCurve.load(DEFAULT_TONE)
    assert all(np.array_equal(used.w[k], shipped.w[k]) for k in shipped.w)
    head = tmp_path / "always"  # the shipped head with its gate moved: every photo toned
    shutil.copytree(DEFAULT_TONE, head)
    config = json.loads((head / "config.json").read_text())
    (head / "config.json").write_text(json.dumps({**config, "gate_logit": -1000.0}))
    log = export_here("--target", "onnx", "--checkpoint", tiny_checkpoint, "--imgsz", "64", "--tone-head", head,
                      "-o", tmp_path / "named")
    bundle = tmp_path / "named" / "rar-tiny-fp32-onnx"
    assert verify_bundle(bundle)["tone"]["gate"] == -1000.0 and "tone: tone.onnx" in log and "gate -1000" in log
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(bundle / "tone.onnx")).metadata_props}
    assert json.loads(meta["tone"])["gate"] == -1000.0  # the graph says its gate too
    restorer = Restorer.load(bundle, warmup=False)  # the bundle's head, unless told another
    assert restorer.assess(photo_array[:64, :64], tone=True).tone.applied
    assert not Restorer.load(bundle, warmup=False, tone_head=DEFAULT_TONE).assess(
        photo_array[:64, :64], tone=True).tone.applied


def test_any_head_the_runtime_reads_exports_at_its_own_sizes(tiny_checkpoint, tmp_path, photo_array):
    """A head of other sizes than the shipped one (4 curve steps, 8 bins, 32² thumbnails, no "hidden" in its
    config: the runtime needs none) exports, and its graph computes what the runtime does."""
    import onnxruntime as ort
    from safetensors.numpy import save_file

    head, rng = tmp_path / "small", np.random.default_rng(0)
    head.mkdir()
    iters, bins, hidden = 4, 8, 24
    save_file({"w1": rng.normal(0, 0.3, (hidden, 6 + 3 * bins)).astype(np.float32),
               "b1": rng.normal(0, 0.1, hidden).astype(np.float32),
               "w2": rng.normal(0, 0.3, (3 * iters + 7, hidden)).astype(np.float32),
               "b2": rng.normal(0, 0.1, 3 * iters + 7).astype(np.float32)}, str(head / "tone.safetensors"))
    (head / "config.json").write_text(json.dumps({"kind": "rar-edge tone head", "iters": iters, "thumb": 32,
                                                  "bins": bins, "gate_logit": 0.25}))
    export_here("--target", "onnx", "--checkpoint", tiny_checkpoint, "--imgsz", "64", "--tone-head", head,
                "-o", tmp_path / "out")
    bundle = tmp_path / "out" / "rar-tiny-fp32-onnx"
    entry = verify_bundle(bundle)["tone"]
    assert entry["inputs"]["thumbnail"] == [1, 3, 32, 32] and entry["gate"] == 0.25 and entry["parity"]["passed"]
    curve, session = ToneCurve.load(bundle / "tone"), ort.InferenceSession(str(bundle / "tone.onnx"))
    for rgb in _dark_photos(photo_array):
        thumb = np.ascontiguousarray(curve.thumbnail(rgb).transpose(2, 0, 1)[None], dtype=np.float32)
        table, logit = session.run(None, {"thumbnail": thumb})
        params, want = curve.estimate(rgb)
        assert np.abs(table[0] - curve.curve_table(params)).max() < 1e-4 and abs(float(logit[0]) - want) < 1e-3


def test_a_tone_graph_that_misses_parity_fails_the_export_and_writes_nothing(tiny_checkpoint, tmp_path,
                                                                              monkeypatch, capsys):
    from rar_edge.export import tone
    from rar_edge.export.__main__ import main

    monkeypatch.setattr(tone, "BOUNDS", {"table": 0.0, "logit": 0.0})  # no float graph meets these
    code = main(["--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--imgsz", "64", "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "parity check failed for the tone graph tone.onnx" in err[0], err
    assert "--no-tone" in err[0] and list(tmp_path.iterdir()) == []  # no bundle, no temporary folder


def test_a_bad_tone_head_fails_the_export_in_one_line_and_writes_nothing(tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    for head, message in ((tmp_path / "missing", "no tone head in"), (tmp_path / "empty", "config.json missing")):
        code, out, err = cli("export", "--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--imgsz", "64",
                             "--tone-head", str(head), "-o", str(tmp_path / "out"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out" / "rar-tiny-fp32-onnx").exists()
    code, _, err = cli("export", "--target", "onnx", "--checkpoint", str(tiny_checkpoint), "--no-tone",
                       "--tone-head", str(DEFAULT_TONE), "-o", str(tmp_path / "out"))
    assert code == 2 and "--no-tone" in err


def test_a_manifest_whose_tone_entry_leaves_the_bundle_or_its_checksums_is_refused(bundles):
    from rar_edge.manifest import check_manifest

    manifest = verify_bundle(bundles["onnx"])
    tone = manifest["tone"]
    outside = {k: v for k, v in manifest["artifacts"].items() if not k.startswith("tone/")}
    for bad, field in [({**tone, "head": h}, "tone.head") for h in ("../elsewhere", "/abs/path", 3, ".", None)] + [
            ({**tone, "graph": g}, "tone.graph") for g in ("../tone.onnx", "other.onnx", None)] + [
            ({**tone, "gate": g}, "tone.gate") for g in ("0", None, float("nan"))] + [("tone", "tone")]:
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            check_manifest({**manifest, "tone": bad})
    with pytest.raises(ValueError, match=r"tone\.head"):  # the head's files under no checksum
        check_manifest({**manifest, "artifacts": outside})


def test_the_app_side_example_in_docs_export_runs_as_written(bundles, tmp_path):
    """docs/export.md's app-side block (numpy, onnxruntime, Pillow: no rar_edge) on a test bundle tones the
    low-light sample as the runtime's stage does, to the 8-bit value."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    repo = Path(__file__).parents[1]
    doc = (repo / "docs" / "export.md").read_text()
    section = doc[doc.index("### The exposure stage in every bundle"):]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    assert "import rar_edge" not in block and "from rar_edge" not in block
    code = block.replace('"exports/rar-edge-s-int8-onnx"', repr(str(bundles["onnx"])))
    assert code != block
    (tmp_path / "samples").symlink_to(repo / "samples")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    photo = np.asarray(Image.open(repo / "samples" / "degraded" / "05_coffee_low_light.png").convert("RGB"))
    want, decision = ToneCurve.load(bundles["onnx"] / "tone")(photo)
    assert decision.applied  # the shipped head finds this sample under-exposed (tests/test_tone.py)
    got = np.asarray(Image.open(tmp_path / "toned.png")).astype(int)
    assert np.abs(got - np.round(want * 255)).max() <= 1 and got.mean() > 2 * photo.mean()


def _graph_bytes(path) -> bytes:
    """An ONNX file's graph without its metadata: what computes."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    return model.SerializeToString()


def test_add_tone_puts_the_stage_into_a_bundle_exported_without_it(tiny_checkpoint, tmp_path, photo_array):
    import onnx

    from rar_edge.runtime import Restorer

    export_here("--target", "onnx", "--checkpoint", tiny_checkpoint, "--imgsz", "64", "--no-tone", "-o", tmp_path)
    bundle = tmp_path / "rar-tiny-fp32-onnx"
    entry_graphs = [f"{n}.onnx" for n in ("encode", "assess", "restore", "decode")]
    before = {name: _graph_bytes(bundle / name) for name in entry_graphs}
    log = export_here("--add-tone", bundle)
    manifest = verify_bundle(bundle)  # every checksum taken again
    assert manifest["tone"]["parity"]["passed"] and set(manifest["artifacts"]) == {*entry_graphs, "tone.onnx", *HEAD_FILES}
    assert {name: _graph_bytes(bundle / name) for name in entry_graphs} == before  # not exported again
    meta = {p.key: p.value for p in onnx.load(str(bundle / "encode.onnx")).metadata_props}
    assert json.loads(meta["tone"])["graph"] == "tone.onnx"  # the graphs carry the new manifest
    assert "added the exposure stage" in log and "tone.onnx" in log and f"--bundle {bundle}" in log
    head = tmp_path / "always"  # again with another head: the stage is replaced, not added
    shutil.copytree(DEFAULT_TONE, head)
    config = json.loads((head / "config.json").read_text())
    (head / "config.json").write_text(json.dumps({**config, "gate_logit": -1000.0}))
    export_here("--add-tone", bundle, "--tone-head", head)
    again = verify_bundle(bundle)
    assert again["tone"]["gate"] == -1000.0 and set(again["artifacts"]) == set(manifest["artifacts"])
    assert Restorer.load(bundle, warmup=False).assess(photo_array[:64, :64], tone=True).tone.applied
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_add_tone_refuses_core_ml_and_export_arguments_and_leaves_the_bundle(bundles, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["onnx"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "target": "coreml"}))
    before = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    code, _, err = cli("export", "--add-tone", str(bundle))
    assert code == 2 and "is a Core ML bundle: export it again" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", "--add-tone", str(bundle), "--target", "onnx")
    assert code == 2 and "--add-tone" in err and "--target" in err
    code, _, err = cli("export", "--checkpoint", "x")
    assert code == 2 and "--target" in err
    assert {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
