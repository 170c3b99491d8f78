"""Packaging: the stages resolve as rar_edge.<stage> from editable and wheel installs; no torch where none belongs."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

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


def test_checkout_pythonpath_mirrors_the_installed_package(tmp_path):
    # bench/gpu_window.py runs from a bare checkout (a lent GPU machine): every package-dir subpackage
    # must resolve, from the repository root, to the checkout's files through the link folder.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the package supports 3.10)
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    code = ("import importlib.util, sys, rar_edge\n"
            f"for name in {sorted(package_dir)!r}:\n"
            "    print(name, importlib.util.find_spec(name).origin)\n"
            "print('rar_edge', rar_edge.__file__)")
    script = f'source bench/checkout_pythonpath.sh "{tmp_path}" && exec "{sys.executable}" -c "$CODE"'
    res = subprocess.run(["bash", "-c", script], cwd=REPO, env={"CODE": code, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    found = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    src = tmp_path / "src" / "rar_edge"
    assert found.pop("rar_edge") == str(src / "__init__.py")
    assert found == {name: str(src / name.split(".")[1] / "__init__.py") for name in package_dir}
    for name, folder in package_dir.items():  # the links point at the checkout's stage folders
        assert (src / name.split(".")[1]).resolve() == (REPO / folder).resolve()
