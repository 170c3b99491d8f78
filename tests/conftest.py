"""Shared fixtures: real photos from scikit-image's wheel, a briefly trained rar-tiny checkpoint, its distilled
int8 student and its exported bundles.

``make test`` runs the suite on two pytest-xdist workers. The expensive fixtures are built once per run,
by whichever worker asks first, into a folder both share (``built_once``); the other worker waits for
it. The module-scoped export fixtures of tests/test_export.py are each confined to one worker by an
``xdist_group`` mark on the tests that use them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package: its scripts run from the repository root)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str):
    """Run ``python -m rar_edge`` in a subprocess; returns CompletedProcess (text mode)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "rar_edge", *args], capture_output=True, text=True, timeout=600)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, made by ``build(folder)`` once per test run and shared by every xdist worker.

    Under xdist each worker has its own temporary root inside the run's; the run's is shared. A lock
    makes the second worker wait for the first; a ``NAME.done`` marker beside the folder (not in it: tests
    list the folders) tells a finished build from one that failed half-way, which the next caller redoes.
    """
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``slow`` (a minute or more of training) run first. Why: pytest-xdist hands tests to its
    workers in this order, and a long test handed out last keeps one worker busy while the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """A folder of real colour photos (scikit-image's bundled ones), 256 px on the short side at most."""
    from rar_edge.data.photos import skimage_photos

    def build(root: Path) -> None:
        for name, arr in skimage_photos().items():
            im = Image.fromarray(arr)
            im.thumbnail((384, 384))
            im.save(root / f"{name}.png")

    return built_once(tmp_path_factory, "photos", build)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, photo_dir) -> Path:
    """rar-tiny trained for a few steps: enough for CLI, eval and export plumbing tests."""
    from rar_edge.train.trainer import TrainConfig, train

    def build(out: Path) -> None:
        train(TrainConfig(preset="rar-tiny", data=str(photo_dir), out=str(out), steps=20, batch=4, crop=64,
                          warmup=5, val_every=20, ckpt_every=20, val_crop=64, progress=False))

    return built_once(tmp_path_factory, "tiny_run", build) / "last"


@pytest.fixture()
def photo_array() -> np.ndarray:
    """One real photo, float32 (H,W,3) in [0,1]."""
    from skimage import data

    return data.astronaut()[:128, 64:192].astype(np.float32) / 255.0


#: The settings of the ``distilled`` fixture (tests that compare against it reuse them).
DISTILL_ARGS = dict(preset="rar-tiny", steps=40, qat_steps=8, batch=4, crop=32, val_every=20, ckpt_every=20,
                    report_images=2, report_crop=32, progress=False)


@pytest.fixture(scope="session")
def distilled(tiny_checkpoint, photo_dir, tmp_path_factory):
    """A short distillation of the tiny teacher into a rar-tiny int8 student: (out folder, report)."""
    from rar_edge.quantize.distill import DistillConfig, distill

    def build(folder: Path) -> None:
        report = distill(DistillConfig(teacher=str(tiny_checkpoint), data=str(photo_dir), out=str(folder / "run"),
                                       **DISTILL_ARGS))
        # What distill() returned, kept apart from the run's own report.json (a test compares the two).
        (folder / "returned.json").write_text(json.dumps(report))

    folder = built_once(tmp_path_factory, "distill", build)
    return folder / "run", json.loads((folder / "returned.json").read_text())


@pytest.fixture(scope="session", autouse=True)
def distilled_first_on_the_second_worker(request) -> None:
    """Under ``make test``'s two workers, the second builds the ``distilled`` fixture before its first test.

    Why: both workers' first tests tend to need the same fixture (``bundles``), so one built it while the other
    waited, idle, for over a minute; this way the second worker builds the distillation (which the int8 export
    tests need next) at the same time. A single process, any other worker, or a run of tests that need no
    distillation goes straight to its tests.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1" and any("distilled" in getattr(item, "fixturenames", ())
                                                               for item in request.session.items):
        try:
            request.getfixturevalue("distilled")
        except Exception:  # noqa: BLE001  the tests that need it report the failure; the others must still run
            pass


def export_here(*args: str) -> str:
    """Run the export CLI in this process (no interpreter start-up: ~4 s of imports per export); returns
    what it printed (stdout and stderr). Tests of the CLI's exit path run it as a subprocess (run_cli)."""
    import contextlib
    import io

    from rar_edge.export.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()[-3000:]
    return out.getvalue() + err.getvalue()


@pytest.fixture(scope="session")
def bundles(tiny_checkpoint, tmp_path_factory):
    """rar-tiny fp32 bundles: ONNX fixed 64x64, ONNX dynamic, ExecuTorch fixed 64x64."""
    def build(out: Path) -> None:
        for folder, args in ((out, ["--target", "onnx"]), (out / "dyn", ["--target", "onnx", "--dynamic"]),
                             (out, ["--target", "executorch"])):
            export_here("--checkpoint", tiny_checkpoint, "--imgsz", "64", "-o", folder, *args)

    out = built_once(tmp_path_factory, "rt_bundles", build)
    return {"onnx": out / "rar-tiny-fp32-onnx", "dynamic": out / "dyn" / "rar-tiny-fp32-onnx",
            "executorch": out / "rar-tiny-fp32-executorch"}


def cli(*args: str) -> tuple[int, str, str]:
    """Run the ``rar-edge`` CLI in this process (no interpreter start-up): (exit status, stdout, stderr)."""
    import contextlib
    import io

    from rar_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            status = e.code
    return status, out.getvalue(), err.getvalue()
