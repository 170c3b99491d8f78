"""The default model inside the package: present, small, loadable, and the headline command needs nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import rar_edge
from rar_edge.manifest import verify_bundle

from conftest import run_cli

WEIGHTS = Path(rar_edge.__file__).parent / "weights"


def test_shipped_weights_are_small_and_complete():
    files = [p for p in WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 15e6
    student = WEIGHTS / "rar-edge-s"
    config = json.loads((student / "config.json").read_text())
    assert config["preset"] == "rar-edge-s" and config["quantization"]
    assert sorted(p.name for p in (student / "int8").glob("*.pt2")) == [
        "assess.pt2", "decode.pt2", "encode.pt2", "restore.pt2"]
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in files)  # no pickles


def test_headline_export_needs_no_other_argument(tmp_path):
    res = run_cli("export", "--target", "coreml", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = verify_bundle(tmp_path / "rar-edge-s-fp16-coreml")
    assert manifest["source"].endswith("weights/rar-edge-s") and manifest["input_shape"] == [512, 512]
    assert "next:" in res.stdout
