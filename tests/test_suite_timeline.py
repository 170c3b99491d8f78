"""bench/suite_timeline.py: a pytest plugin that records each test's start and end per worker, and its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_bench


@pytest.mark.parametrize("workers", [None, 2])
def test_each_test_is_recorded_once_by_the_process_that_ran_it(tmp_path, workers):
    (tmp_path / "test_two.py").write_text("import time\n\ndef test_quick():\n    pass\n\n"
                                          "def test_slow():\n    time.sleep(0.3)\n")
    timeline = tmp_path / "timeline.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "bench"), "SUITE_TIMELINE": str(timeline)}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "suite_timeline", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), *(["-n", str(workers)] if workers else ["-p", "no:xdist"]),
                           str(tmp_path / "test_two.py")], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in timeline.read_text().splitlines()]
    assert sorted(r["test"].split("::")[1] for r in rows) == ["test_quick", "test_slow"]  # once each
    assert {r["worker"] for r in rows} <= ({"main"} if workers is None else {"gw0", "gw1"})
    slow = next(r for r in rows if r["test"].endswith("test_slow"))
    assert slow["end"] - slow["start"] >= 0.3


def test_xdist_groups_keep_their_tests_on_one_worker(tmp_path):
    """``make test``'s ``--dist loadgroup`` runs every test of one xdist_group mark on one worker: tests/
    test_export.py's groups share module fixtures (exports of a minute or more each) that a split group
    builds on one worker while the other waits. (pytest 9.2 with pytest-xdist 3.8 split them: pyproject.toml.)"""
    (tmp_path / "test_grouped.py").write_text(
        "import time\n\nimport pytest\n\n\n@pytest.mark.xdist_group('one')\n@pytest.mark.parametrize('k', range(8))\n"
        "def test_grouped(k):\n    time.sleep(0.1)\n\n\n@pytest.mark.parametrize('k', range(4))\n"
        "def test_free(k):\n    time.sleep(0.1)\n")
    timeline = tmp_path / "timeline.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "bench"), "SUITE_TIMELINE": str(timeline)}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "suite_timeline", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-n", "2", "--dist", "loadgroup",
                           str(tmp_path / "test_grouped.py")], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in timeline.read_text().splitlines()]
    grouped = [r for r in rows if "::test_grouped[" in r["test"]]
    # Scheduled test by test (the grouping lost), 8 tests start round-robin over both workers
    assert len(rows) == 12 and len(grouped) == 8, rows
    assert len({r["worker"] for r in grouped}) == 1, rows
    assert {r["worker"] for r in rows} == {"gw0", "gw1"}  # the free tests still use both workers


def test_report_shows_wall_time_each_worker_and_the_slowest():
    bench = load_bench("suite_timeline")
    rows = [{"worker": "gw0", "test": "tests/test_a.py::test_x", "start": 100.0, "end": 130.0},
            {"worker": "gw1", "test": "tests/test_b.py::test_y", "start": 100.0, "end": 110.0},
            {"worker": "gw1", "test": "tests/test_a.py::test_z", "start": 110.0, "end": 112.0}]
    text = bench.report(rows, slowest=2)
    lines = text.splitlines()
    assert lines[0] == "wall 30 s, 3 tests"
    assert lines[1] == "gw0: 1 tests, busy 30 s, finished at 30 s" and lines[2] == "gw1: 2 tests, busy 12 s, finished at 12 s"
    assert "    32.0  tests/test_a.py" in lines and "    10.0  tests/test_b.py" in lines
    slowest = lines[lines.index("slowest tests (setup included; started at):") + 1:]
    assert slowest == ["    30.0  gw0 @    0 s  tests/test_a.py::test_x", "    10.0  gw1 @    0 s  tests/test_b.py::test_y"]
