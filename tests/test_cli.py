"""The restore and eval commands (torch reference path): outputs, JSON contract, clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rar_edge import DEGRADATIONS

from conftest import cli, run_cli


@pytest.fixture()
def inputs(tmp_path, photo_array):
    arr = (photo_array * 255).astype(np.uint8)
    paths = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "odd.webp"]
    Image.fromarray(arr).save(paths[0])
    Image.fromarray(arr[:100, :90]).save(paths[1], quality=90)
    Image.fromarray(arr[:37, :53]).save(paths[2])  # not a multiple of the size step
    return paths


def test_restore_writes_outputs_and_json(tiny_checkpoint, inputs, tmp_path):
    out = tmp_path / "out"
    res = run_cli("restore", *map(str, inputs), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--json",
                  "--max-steps", "2")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 3
    for rec, src in zip(records, inputs):
        assert rec["input"] == str(src)
        assert rec["output"] == str(out / src.name)
        assert isinstance(rec["steps"], int) and 0 <= rec["steps"] <= 2
        assert len(rec["quality"]) >= 1 + rec["steps"]
        assert list(rec["degradations"]) == list(DEGRADATIONS)
        assert all(0 <= p <= 1 for p in rec["degradations"].values())
        assert rec["ms"]["total"] > 0
        with Image.open(rec["output"]) as im, Image.open(src) as orig:
            assert im.size == orig.size and im.format == orig.format
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "odd.webp"]


def test_a_single_bad_input_is_one_error_line_and_exit_2(tmp_path):
    """One input that fails is bad input: one line naming it, exit status 2, nothing written (a batch: exit 1)."""
    bad = tmp_path / "nope.png"
    status, stdout, err = cli("restore", bad, "-o", tmp_path / "out")
    assert status == 2 and stdout == ""
    assert err.strip().splitlines() == [f"rar-edge restore: error: {bad}: no such file; pass image files (jpg, png, "
                                        "webp, ...)"], err
    assert not (tmp_path / "out").exists()  # not even an empty folder
    status, stdout, _ = cli("restore", bad, "-o", tmp_path / "out", "--json")  # the record still comes as JSON
    assert status == 2 and json.loads(stdout)["error"].startswith(f"{bad}: no such file")


@pytest.mark.parametrize("make_bad", ["missing", "not_image"])
def test_restore_continues_past_a_bad_input(tiny_checkpoint, inputs, tmp_path, make_bad):
    bad = tmp_path / "bad.png"
    if make_bad == "not_image":
        bad.write_text("this is not an image")
    out = tmp_path / "out"
    res = run_cli("restore", str(bad), str(inputs[0]), "-o", str(out), "--checkpoint", str(tiny_checkpoint))
    assert res.returncode == 1  # the batch went on, then reported the failure
    assert "Traceback" not in res.stderr
    assert f"1 of 2 inputs failed: {bad}" in res.stderr
    assert all(line.count(str(bad)) == 1 for line in res.stderr.splitlines() if "error" in line or "failed" in line)
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # nothing of bad.png, not even a temporary


def test_restore_missing_checkpoint(inputs, tmp_path):
    res = run_cli("restore", str(inputs[0]), "-o", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "nope"))
    assert res.returncode == 2 and "not found" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_eval_report(tiny_checkpoint, photo_dir, tmp_path):
    report_path = tmp_path / "report.json"
    res = run_cli("eval", "--checkpoint", str(tiny_checkpoint), "--data", str(photo_dir), "--crop", "64",
                  "--max-images", "3", "--max-steps", "1", "--json", str(report_path))
    assert res.returncode == 0, res.stderr
    report = json.loads(report_path.read_text())
    assert set(report["cases"]) >= set(DEGRADATIONS) | {"clean", "blur+noise+jpeg"}
    for name, row in report["cases"].items():
        assert 0 <= row["steps"] <= 1
        assert -1 <= row["ssim_out"] <= 1
        if name != "clean":
            assert row["psnr_in"] < 60
    assert set(report["degradation_auc"]) == set(DEGRADATIONS)
    assert all(0 <= v <= 1 for v in report["degradation_auc"].values())
    assert -1 <= report["assessor_srcc"] <= 1
    assert "assessor SRCC" in res.stdout
    # One case recomputed outside the evaluator: the same crops and synthesis, the reference loop with the
    # report's rule, PSNR in numpy. The report's mean PSNRs and steps must be these.
    import torch

    from rar_edge.data.folder import PhotoFolder
    from rar_edge.eval.cases import make_cases
    from rar_edge.loop import StopRule
    from rar_edge.train.checkpoint import load_model

    model, _ = load_model(tiny_checkpoint)
    clean = PhotoFolder(photo_dir).center_crops(64)[:3]
    batch, names = make_cases(clean, seed=0)
    rows = [i for i, n in enumerate(names) if n == "noise"]
    deg, ref = batch.degraded[rows], batch.clean[rows].numpy().astype(np.float64)
    with torch.no_grad():
        results = model.restore_loop(deg, StopRule.from_dict(report["stop_rule"]))

    def psnr(a: np.ndarray) -> np.ndarray:
        mse = ((np.clip(a.astype(np.float64), 0, 1) - ref) ** 2).reshape(len(rows), -1).mean(axis=1)
        return 10 * np.log10(1 / mse)

    row = report["cases"]["noise"]
    assert row["psnr_in"] == pytest.approx(psnr(deg.numpy()).mean(), abs=1e-3)
    assert row["psnr_out"] == pytest.approx(psnr(np.stack([r.image.numpy() for r in results])).mean(), abs=1e-3)
    assert row["steps"] == pytest.approx(np.mean([r.steps for r in results]))
    assert row["untouched"] == pytest.approx(np.mean([r.steps == 0 for r in results]))


def test_presets_command_lists_limits():
    res = run_cli("presets", "--json")
    assert res.returncode == 0
    rows = {r["preset"]: r for r in json.loads(res.stdout)}
    assert rows["rar-edge-s"]["total"]["params"] <= 1_000_000


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch):
    from rar_edge import cli as cli_module

    from conftest import cli

    def broken(args):
        raise TypeError("something deep went wrong\nsecond line")

    monkeypatch.setattr(cli_module, "cmd_presets", broken)
    status, _, err = cli("presets")
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected TypeError: something deep went wrong" in err and "--debug" in err
    status, _, err = cli("presets", "--debug")
    assert status == 1 and "Traceback" in err and 'raise TypeError("something deep went wrong' in err
    monkeypatch.setenv("RAR_EDGE_DEBUG", "1")
    assert "Traceback" in cli("presets")[2]
    monkeypatch.delenv("RAR_EDGE_DEBUG")

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "cmd_presets", ctrl_c)
    assert cli("presets") == (130, "", "rar-edge presets: interrupted\n")


def test_every_option_of_every_command_explains_itself():
    """--help: each option has a help text, each command a description; real defaults are stated."""
    import argparse

    from rar_edge.cli import EXAMPLES, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        if name == "export":  # handed to python -m rar_edge.export, which has its own help
            continue
        assert command.description, name
        silent = [a.option_strings or a.dest for a in command._actions
                  if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not silent, f"{name}: options without help: {silent}"
    text = " ".join(sub.choices["train"].format_help().split())  # unwrapped
    assert "(default: rar-teacher)" in text and "(default: 0.001)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    restore = " ".join(sub.choices["restore"].format_help().split())
    assert " ".join(EXAMPLES["restore"].splitlines()[1].split()) in restore and "the checkpoint's)" not in restore


def test_restore_refuses_an_image_name_as_its_output_folder(tmp_path):
    sample = Path(__file__).parents[1] / "samples" / "degraded" / "00_brushes_noise.png"
    status, out, err = cli("restore", sample, "-o", tmp_path / "out.png")
    assert status == 2 and "-o takes a folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_a_missing_extra_is_named_by_the_command_that_needs_it(monkeypatch):
    """Without torch, `export` and `distill` ask for [export] at once (it brings torch too), `train` for [train]."""
    import importlib.util

    from rar_edge.errors import missing_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    no_torch = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "pip install 'rar-edge[train]'" in missing_extra(no_torch)
    assert "pip install 'rar-edge[export]'" in missing_extra(no_torch, "export")
    # An extra that does not bring the module is not named: albumentations comes with [eval] only.
    no_alb = ModuleNotFoundError("No module named 'albumentations'", name="albumentations")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "pip install 'rar-edge[eval]'" in missing_extra(no_alb, "export")
    assert missing_extra(ModuleNotFoundError("x", name="numpyy"), "export") is None  # not an extra's module


def test_import_notices_of_third_parties_are_quiet_unless_debugging():
    # torchao logs a warning per CUDA-only kernel it cannot load on a CPU machine, with site-packages' path.
    code = ("import sys; from rar_edge.errors import run_guarded; "
            "sys.exit(run_guarded('x', lambda: (__import__('torchao'), 0)[1]))")

    def stderr(**env) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stderr

    if "Failed to load" not in stderr(RAR_EDGE_DEBUG="1"):
        pytest.skip("torchao loads all its kernels on this machine: nothing to quiet")
    assert "Failed to load" not in stderr(RAR_EDGE_DEBUG="0")


def test_native_chatter_on_the_stderr_descriptor_is_dropped_and_the_rest_passed_on(capfd, monkeypatch):
    """quiet_native_chatter catches what native code writes to file descriptor 2 (ExecuTorch's CPU probing) and
    passes on every other line, in order; RAR_EDGE_DEBUG=1 catches nothing."""
    from rar_edge.errors import quiet_native_chatter

    def native_writes() -> None:
        os.write(2, b"[cpuinfo_utils.cpp:87] Failed to open midr file /sys/devices/soc0/image_version\n"
                    b"E00:00:00.000 XNNPACK failed to allocate\n[cpuinfo_utils.cpp:125] CPU info and manual query\n"
                    b"last line without newline")

    monkeypatch.delenv("RAR_EDGE_DEBUG", raising=False)
    with quiet_native_chatter():
        native_writes()
    assert capfd.readouterr().err == "E00:00:00.000 XNNPACK failed to allocate\nlast line without newline"
    with pytest.raises(ValueError, match="raised inside"), quiet_native_chatter():  # caught lines still come out
        os.write(2, b"before the error\n")
        raise ValueError("raised inside")
    assert capfd.readouterr().err == "before the error\n"
    os.write(2, b"after\n")  # the descriptor is the process's own again
    assert capfd.readouterr().err == "after\n"
    import tempfile

    def no_temporary_files():
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # nowhere to catch it: the block still runs, its lines uncaught
        m.setattr(tempfile, "TemporaryFile", no_temporary_files)
        with quiet_native_chatter():
            native_writes()
        assert capfd.readouterr().err.count("[cpuinfo_utils.cpp:") == 2
    monkeypatch.setenv("RAR_EDGE_DEBUG", "1")
    with quiet_native_chatter():
        native_writes()
    assert capfd.readouterr().err.count("[cpuinfo_utils.cpp:") == 2


def test_quieting_drops_only_the_known_notices(caplog):
    import logging

    from rar_edge.errors import QUIET_NOTICES, quiet_import_notices

    logger = logging.getLogger("torchao")
    found = {name: list(logging.getLogger(name).filters) for name in QUIET_NOTICES}  # an earlier CLI run's filters
    try:
        quiet_import_notices()
        quiet_import_notices()  # idempotent: one filter
        assert sum(type(f).__name__ == "_DropNotice" for f in logger.filters) == 1
        with caplog.at_level(logging.WARNING, logger="torchao"):
            logger.warning("Failed to load %s: %s", "/x/_C_mxfp8.so", "no CUDA")
            logger.warning("Expecting a single user")
        assert [r.getMessage() for r in caplog.records] == ["Expecting a single user"]
    finally:
        for name, filters in found.items():
            logging.getLogger(name).filters[:] = filters
