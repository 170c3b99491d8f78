"""The runtime install: the wheel with no extras, in a fresh venv without torch, restores and assesses photos
with the shipped bundle, through the CLI and the API; a command that needs an extra names it in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO

SAMPLE = REPO / "samples" / "degraded" / "00_brushes_noise.png"


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run a command outside the checkout by default: ``python -c`` puts the working folder first on sys.path,
    and the checkout's rar_edge/ is not the installed package (its stages install from top-level folders)."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900,
                          cwd=cwd or tempfile.gettempdir())


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """A fresh venv with only ``pip install rar-edge`` (the wheel built from this checkout; its dependencies
    from the package index): returns its bin folder."""
    import shutil

    tmp = tmp_path_factory.mktemp("install")
    # Built from a copy: a build in the checkout would write build/ and egg-info into it (and could pick up a
    # stale build/ there).
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "photos",
                                                           "exports", "gpu_data", ".whl", "*.egg-info",
                                                           "__pycache__", ".pytest_cache", ".hypothesis"))
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", src,
                 "-w", tmp / "dist")
    assert built.returncode == 0, built.stderr[-2000:]
    # -v shows the build backend's own output: no setuptools warning (e.g. a data folder "absent from packages").
    assert "running bdist_wheel" in built.stdout + built.stderr
    assert "BuildBackendWarning" not in built.stdout + built.stderr, (built.stdout + built.stderr)[-3000:]
    (wheel,) = (tmp / "dist").glob("rar_edge-*.whl")
    made = _run(sys.executable, "-m", "venv", tmp / "venv")
    assert made.returncode == 0, made.stderr[-2000:]
    bin_dir = tmp / "venv" / "bin"
    installed = _run(bin_dir / "python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return bin_dir


@pytest.mark.slow
@pytest.mark.xdist_group("install")  # one worker builds the venv, for both tests
def test_the_runtime_install_holds_no_torch_and_restores_through_cli_and_api(runtime_venv, tmp_path):
    python = runtime_venv / "python"
    absent = _run(python, "-c", "import importlib.util as u, sys; "
                  "sys.exit(any(u.find_spec(m) for m in ('torch', 'executorch', 'coremltools', 'onnx')))")
    assert absent.returncode == 0, "the runtime install pulled in torch or the export stack"

    out = tmp_path / "out"
    cli = _run(runtime_venv / "rar-edge", "restore", SAMPLE, "-o", out, "--json", "--max-steps", "2")
    assert cli.returncode == 0, cli.stderr[-2000:]
    record = json.loads(cli.stdout.strip().splitlines()[-1])
    assert record["output"].endswith(SAMPLE.name) and (out / SAMPLE.name).stat().st_size > 0
    assert 0 <= record["steps"] <= 2 and record["degradations"]["noise"] > 0.5  # the noisy sample is seen as noisy
    dark = REPO / "samples" / "degraded" / "05_coffee_low_light.png"  # the exposure stage's head ships too
    toned = _run(runtime_venv / "rar-edge", "restore", dark, "-o", out, "--json", "--max-steps", "0", "--tone")
    assert toned.returncode == 0, toned.stderr[-2000:]
    assert json.loads(toned.stdout.strip().splitlines()[-1])["tone"]["applied"]

    api = _run(python, "-c", f"""
import numpy as np
from PIL import Image
from rar_edge.runtime import Restorer
r = Restorer.load()
image = np.asarray(Image.open({str(SAMPLE)!r}).convert("RGB"))
res = r.restore(image, max_steps=1, target_quality=99, min_gain=-99)
a = r.assess(image)
print(res.steps, res.image.shape == image.shape, res.image.dtype == image.dtype, round(a.quality, 3),
      round(res.quality[0], 3))
""")
    assert api.returncode == 0, api.stderr[-2000:]
    steps, same_shape, same_dtype, assessed, first = api.stdout.split()
    assert steps == "1" and same_shape == same_dtype == "True" and assessed == first  # assess = the loop's first


@pytest.mark.slow
@pytest.mark.xdist_group("install")
def test_a_command_that_needs_an_extra_says_which(runtime_venv, tmp_path):
    res = _run(runtime_venv / "rar-edge", "train", "--data", REPO / "samples" / "degraded", "--out", tmp_path / "run")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "pip install 'rar-edge[train]'" in res.stderr and "torch" in res.stderr
    assert not (tmp_path / "run").exists()
    # Commands whose whole extra is more than torch's name it at once, not [train] first and [export] next.
    ckpt, photos = REPO / "checkpoints" / "rar-edge-s-v4", REPO / "samples" / "degraded"
    for command in (["export", "--target", "onnx", "--checkpoint", ckpt, "--out", tmp_path / "e"],
                    ["distill", "--teacher", ckpt, "--data", photos, "--out", tmp_path / "d"]):
        res = _run(runtime_venv / "rar-edge", *command)
        assert res.returncode == 2 and "pip install 'rar-edge[export]'" in res.stderr, (command, res.stderr)
