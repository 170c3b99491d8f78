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
    student = WEIGHTS / rar_edge.SHIPPED_STUDENT
    config = json.loads((student / "config.json").read_text())
    assert config["preset"] == rar_edge.SHIPPED_STUDENT and config["quantization"]
    assert sorted(p.name for p in (student / "int8").glob("*.pt2")) == [
        "assess.pt2", "decode.pt2", "encode.pt2", "restore.pt2"]
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in files)  # no pickles


def test_shipped_files_name_no_machine_path():
    """Nothing that ships names a file of the machine that made it: configs, manifests, and the int8 programs'
    graphs (torch.export records each node's source stack trace unless it is dropped)."""
    import re
    import zipfile

    machine = re.compile(rb"(/home/|/root/|/Users/|/work/|/tmp/|site-packages|[A-Z]:\\\\)")
    for path in (p for p in WEIGHTS.rglob("*") if p.is_file()):
        blobs = ([zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist()]
                 if zipfile.is_zipfile(path) else [path.read_bytes()])
        for blob in blobs:
            found = machine.search(blob)
            assert found is None, f"{path.relative_to(WEIGHTS)} names {found.group(0)!r}"


def test_headline_export_needs_no_other_argument(tmp_path):
    res = run_cli("export", "--target", "coreml", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = verify_bundle(tmp_path / f"{rar_edge.SHIPPED_STUDENT}-fp16-coreml")
    assert manifest["source"].endswith(f"weights/{rar_edge.SHIPPED_STUDENT}") and manifest["input_shape"] == [512, 512]
    assert "next:" in res.stdout


def test_the_shipped_default_bundle_matches_its_weights():
    """Restorer.load() with no argument runs the shipped bundle, and it is the export of the committed weights its
    manifest names: the runtime and the torch loop over the same photos take the same steps, stop for the same
    reason and agree to >= 40 dB. After those weights change, re-export it (docs/runtime.md) or this fails."""
    import numpy as np
    import torch

    from rar_edge.eval.metrics import psnr
    from rar_edge.runtime import DEFAULT_BUNDLE, Restorer
    from rar_edge.runtime.images import load_image
    from rar_edge.train.checkpoint import load_model

    manifest = verify_bundle(DEFAULT_BUNDLE)  # checksums of every artifact
    source = Path(__file__).parents[1] / manifest["source"]  # a folder of the repository, never a machine path
    assert DEFAULT_BUNDLE.is_relative_to(WEIGHTS) and not Path(manifest["source"]).is_absolute() and source.is_dir()
    assert manifest["precision"] == "fp32" and manifest["dynamic"]
    restorer = Restorer.load()
    assert restorer.bundle == DEFAULT_BUNDLE
    model, config = load_model(source)
    for field in ("min_better", "min_detect", "target_quality"):  # its loop rule too
        assert manifest["quality"]["defaults"][field] == config["model"][field], field
    for name in ("00_brushes_noise.png", "03_mountains_rain.png"):  # two samples its loop steps on
        rgb = load_image(Path(__file__).parents[1] / "samples" / "degraded" / name).rgb
        ours = restorer.restore(rgb, denoise=False)  # the model's loop alone: the noise stage is numpy after it
        ref = model.restore_loop(torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float()[None] / 255)[0]
        assert (ours.steps, ours.stop_reason) == (ref.steps, ref.stop_reason) and ours.steps > 0
        assert psnr(ours.image.astype(np.float32) / 255, ref.image.numpy().transpose(1, 2, 0)) >= 40.0


def test_restore_and_assess_need_no_model_argument(tmp_path):
    """`rar-edge restore photo -o out` and `rar-edge assess photo` run the shipped bundle (nothing exported first)."""
    from conftest import cli

    sample = Path(__file__).parents[1] / "samples" / "degraded" / "00_brushes_noise.png"
    status, out, err = cli("restore", sample, "-o", tmp_path)
    assert status == 0, err
    assert (tmp_path / sample.name).is_file() and "steps" in out
    status, out, err = cli("assess", sample, "--json")
    assert status == 0, err
    row = json.loads(out)
    probs = row["degradations"]
    assert "noise" in row["present"] and max(probs, key=probs.get) == "noise"  # its most likely fault
    assert row["tiles"] == 1 and 10 < row["quality"] < 30


def test_the_readmes_python_example_runs_as_written(tmp_path):
    """README.md's Python block, executed as is (in a scratch folder that sees the repository's samples/)."""
    import re
    import subprocess
    import sys

    repo = Path(__file__).parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (repo / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    (tmp_path / "samples").symlink_to(repo / "samples")
    res = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "restored.png").is_file()
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 and "rain" in lines[1] and lines[2].startswith("ToneDecision(applied=True")


def test_the_default_bundle_restores_the_samples_as_the_model_card_says(tmp_path):
    """docs/model_card.md's per-sample table (bench/samples_table.py) is what the shipped bundle does today:
    the same steps and stop reason per sample, the noise stage run on the same ones, each gain within 0.05 dB. Regenerate the table when the weights
    change, or this fails."""
    import re

    from rar_edge.demo import REPO, restore_samples
    from rar_edge.runtime import DEFAULT_BUNDLE

    card = (REPO / "docs" / "model_card.md").read_text()
    table = card[card.index("<!-- samples_table: default bundle -->"):]
    rows = re.findall(r"^\| (\S+\.png) \| \S+ \| (\d+) \((\d+), (\w+)\)( \+n)? \| [\d.]+ → [\d.]+ \| ([+-][\d.]+) \|$",
                      table, re.M)
    ours = {r["name"]: r for r in restore_samples(DEFAULT_BUNDLE, REPO / "samples", tmp_path, None)}
    assert [name for name, *_ in rows] == list(ours)  # every sample, in order
    for name, steps, run, stop, denoised, gain in rows:
        r = ours[name]
        assert (r["steps"], r["steps_run"], r["stop"], r["denoised"]) == (int(steps), int(run), stop, bool(denoised)), name
        assert abs(r["psnr_out"] - r["psnr_in"] - float(gain)) <= 0.05, name
