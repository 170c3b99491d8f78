"""Packaging: the stages resolve as rar_edge.<stage> from editable and wheel installs; no torch where none belongs."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO


def test_export_help_from_editable_install(tmp_path):
    # Run outside the repository so only the installed (editable) package can be found.
    res = subprocess.run([sys.executable, "-m", "rar_edge.export", "--help"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "--target" in res.stdout
    where = subprocess.run([sys.executable, "-c", "import rar_edge.export as e; print(e.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.strip() == str(REPO / "export" / "__init__.py")


def test_export_help_from_wheel_install(tmp_path):
    wheel_dir = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("rar_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for stage in ("export", "quantize", "runtime"):
        assert f"rar_edge/{stage}/__init__.py" in names
    assert not any(n.startswith(("export/", "runtime/", "quantize/")) for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    # -S: no site-packages, so the editable install cannot answer instead of the wheel.
    res = subprocess.run([sys.executable, "-S", "-m", "rar_edge.export", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "--target" in res.stdout
    where = subprocess.run([sys.executable, "-S", "-c", "import rar_edge.export as e; print(e.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target))


def test_runtime_and_cli_help_do_not_import_torch(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import rar_edge, rar_edge.runtime, rar_edge.loop, rar_edge.export.__main__ as e\n"
            "from rar_edge.cli import build_parser\n"
            "build_parser()\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_export_refuses_missing_weights_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "rar_edge.export", "--target", "coreml", "--preset", "rar-teacher",
                          "-o", str(tmp_path / "x")],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
