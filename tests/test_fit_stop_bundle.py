"""``rar-edge fit-stop --bundle``: the rule fitted on an exported bundle's own graphs and stored in that bundle."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rar_edge.errors import RarEdgeError
from rar_edge.eval.fit_stop import record_trajectories
from rar_edge.loop import StopRule
from rar_edge.manifest import verify_bundle
from rar_edge.train.checkpoint import load_model

from conftest import cli


def _files(bundle: Path) -> dict[str, bytes]:
    """Every file of a bundle (its tone/ folder's too) by its path inside it."""
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def test_a_bundle_records_the_trajectories_its_checkpoint_does(bundles, tiny_checkpoint, photo_dir):
    """An fp32 ONNX bundle computes what its checkpoint computes: recorded through the runtime's backend, every
    assessment, step size and decode's PSNR matches the torch model's (the adapter feeds and stacks per image)."""
    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.bundle_model import BundleModel

    model, _ = load_model(tiny_checkpoint)
    clean = PhotoFolder(str(photo_dir)).center_crops(64)[:2]
    ours = record_trajectories(BundleModel(bundles["onnx"]), clean, cap=2, seed=3, batch_size=3)
    ref = record_trajectories(model, clean, cap=2, seed=3)
    assert ours.cases == ref.cases and ours.quality.shape == ref.quality.shape == (22, 3)
    np.testing.assert_allclose(ours.quality, ref.quality, atol=1e-3)
    np.testing.assert_allclose(ours.change, ref.change, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(ours.vectors, ref.vectors, atol=1e-3)
    np.testing.assert_allclose(ours.psnr, ref.psnr, atol=0.05)
    np.testing.assert_array_equal(ours.psnr_in, ref.psnr_in)


def test_fit_stop_writes_the_rule_into_the_bundle(bundles, photo_dir, tmp_path):
    """--write stores the fitted rule as the bundle's loop defaults (manifest and every graph's metadata), the
    bundle still verifies and the runtime loads that rule; without --write nothing changes."""
    import onnx

    from rar_edge.runtime import Restorer

    bundle = tmp_path / "b"
    shutil.copytree(bundles["onnx"], bundle)
    before = _files(bundle)
    args = ("fit-stop", "--bundle", bundle, "--data", photo_dir, "--crop", 64, "--max-images", 2, "--max-steps", 2)
    status, out, err = cli(*args)
    assert status == 0, err
    assert out.startswith("fp32 model, 36 images") and "--write" in out
    assert _files(bundle) == before

    status, out, err = cli(*args, "--write")
    assert status == 0, err
    assert f"wrote the fitted rule into {bundle / 'manifest.json'}" in out and "--bundle" in out
    manifest = verify_bundle(bundle)  # every checksum taken again
    record = manifest["stop_rule_fit"]
    fitted = StopRule.from_dict(record["after"]["rule"])
    assert record["how"]["graphs"] == "onnx" and record["how"]["cap"] == 2 and 1 <= fitted.max_steps <= 2
    assert {k: v for k, v in fitted.to_dict().items() if k != "gate"} == manifest["quality"]["defaults"]
    assert ("judge" in manifest["quality"]) == (fitted.min_better > 0)
    assert Restorer.load(bundle, warmup=False).rule == fitted
    graphs = [n for n in manifest["artifacts"] if n.endswith(".onnx") and n != "tone.onnx"]
    assert len(graphs) == 4
    for name in graphs:
        meta = {p.key: p.value for p in onnx.load(str(bundle / name)).metadata_props}
        assert json.loads(meta["quality"]) == manifest["quality"], name
        assert json.loads(meta["stop_rule_fit"]) == record
    # the exposure stage's graph carries its own entry, not the manifest: the rule leaves it as it was
    assert (bundle / "tone.onnx").read_bytes() == before["tone.onnx"]
    assert sorted(_files(bundle)) == sorted(before)


def test_a_failed_store_leaves_the_bundle_as_it_was(bundles, tmp_path, monkeypatch):
    from rar_edge.export import onnx as onnx_target
    from rar_edge.export.stop_rule import store_stop_rule

    bundle = tmp_path / "b"
    shutil.copytree(bundles["onnx"], bundle)
    before = _files(bundle)

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(onnx_target, "embed_metadata", broken)
    with pytest.raises(OSError, match="disk full"):
        store_stop_rule(bundle, StopRule(2, 30.0, 0.0), None, {})
    assert _files(bundle) == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left


def test_store_stop_rule_keeps_only_what_the_rule_asks(bundles, tmp_path):
    """An ExecuTorch bundle (no metadata field: the manifest alone) takes the rule; a judge the rule does not ask
    (min_better 0) is not stored, nor a gate it lacks; a Core ML bundle is refused (not re-embedded here)."""
    from rar_edge.export.stop_rule import store_stop_rule
    from rar_edge.loop import Gate, Judge

    bundle = tmp_path / "et"
    shutil.copytree(bundles["executorch"], bundle)
    pte = (bundle / "rar.pte").read_bytes()
    manifest = verify_bundle(bundle)
    judge = Judge(tuple([0.1] * (len(manifest["quality"]["judge"]["weights"]) if "judge" in manifest["quality"]
                                 else 2 * (1 + 6 + manifest["cond_dim"]) + 1)), -0.5)
    gate = Gate(tuple([1.0] * 6), -2.0)
    store_stop_rule(bundle, StopRule(3, 31.0, -10.0, keep="last", min_better=0.6, min_detect=0.5, gate=gate), judge, {})
    q = verify_bundle(bundle)["quality"]
    assert q["defaults"]["min_better"] == 0.6 and q["judge"] == judge.to_dict() and q["gate"] == gate.to_dict()
    assert (bundle / "rar.pte").read_bytes() == pte
    store_stop_rule(bundle, StopRule(2, 30.0, 0.1), judge, {})
    q = verify_bundle(bundle)["quality"]
    assert "judge" not in q and "gate" not in q and q["defaults"]["max_steps"] == 2

    coreml = tmp_path / "cm"
    shutil.copytree(bundles["onnx"], coreml)
    m = json.loads((coreml / "manifest.json").read_text())
    (coreml / "manifest.json").write_text(json.dumps({**m, "target": "coreml"}))
    with pytest.raises(RarEdgeError, match="Core ML bundle: fit its checkpoint"):
        store_stop_rule(coreml, StopRule(2, 30.0, 0.1), None, {})


def test_fit_stop_on_a_bundle_refuses_bad_arguments(bundles, tiny_checkpoint, photo_dir, tmp_path):
    coreml = tmp_path / "cm"  # a bundle whose manifest says Core ML: its backend cannot open off macOS
    shutil.copytree(bundles["onnx"], coreml)
    m = json.loads((coreml / "manifest.json").read_text())
    (coreml / "manifest.json").write_text(json.dumps({**m, "target": "coreml"}))
    off_macos = [(("--bundle", coreml), "runs only on macOS")] if sys.platform != "darwin" else []
    for args, message in [*off_macos,(("--bundle", bundles["onnx"], "--checkpoint", tiny_checkpoint), "one of the two"),
                          ((), "one of the two"),
                          (("--bundle", bundles["onnx"], "--precision", "fp32"), "fitted at its own precision"),
                          (("--bundle", bundles["onnx"], "--crop", 32), "takes 64x64 tiles only: fit it with --crop 64"),
                          (("--bundle", tmp_path / "missing"), "missing does not exist; pass a bundle folder"),
                          (("--bundle", photo_dir), "is not a bundle: manifest.json is missing")]:
        status, out, err = cli("fit-stop", "--data", photo_dir, *args)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_rule_the_runtime_would_refuse_never_replaces_the_bundle(bundles, tmp_path, monkeypatch):
    """The new manifest is verified before the swap (a judge of the wrong size: refused, the bundle as it was); a
    bundle named as "." is written beside itself, not into itself."""
    from rar_edge.export.stop_rule import store_stop_rule
    from rar_edge.loop import Judge

    bundle = tmp_path / "b"
    shutil.copytree(bundles["onnx"], bundle)
    before = _files(bundle)
    with pytest.raises(RarEdgeError, match="does not make a valid bundle .*judge.weights.*left as it was"):
        store_stop_rule(bundle, StopRule(2, 30.0, -10.0, min_better=0.5), Judge((0.1, 0.2), 0.0), {})
    assert _files(bundle) == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]

    monkeypatch.chdir(bundle)
    store_stop_rule(".", StopRule(2, 30.0, 0.1), None, {"how": "here"})
    assert verify_bundle(bundle)["stop_rule_fit"] == {"how": "here"}
    assert sorted(_files(bundle)) == sorted(before)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_an_executorch_bundle_leaves_torchs_threads_alone(bundles):
    """ExecuTorch's backend sets torch's thread count for the process unless told not to: the fit's own torch work
    (the synthesis, the replay's set-up) keeps its threads."""
    import torch

    from rar_edge.eval.bundle_model import BundleModel

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = BundleModel(bundles["executorch"])
        assert torch.get_num_threads() == 2
        z = model.encode(torch.rand(2, 3, 64, 64))
        q, p, cond = model.assess(z)
        assert z.shape[0] == 2 and q.shape == (2,) and p.shape == (2, 6) and cond.shape[0] == 2
        assert model.decode(model.restore(z, cond)).shape == (2, 3, 64, 64)
    finally:
        torch.set_num_threads(threads)
