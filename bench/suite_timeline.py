"""Where a parallel ``make test`` spends its wall time: each test's start and end per pytest-xdist worker.

    SUITE_TIMELINE=runs/timeline.jsonl PYTHONPATH=bench OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -n 2 \\
        --dist loadgroup -p suite_timeline          # make test's command, with this file as a plugin
    python bench/suite_timeline.py runs/timeline.jsonl

The plugin appends one JSON line per test (worker, test id, start and end in seconds since the epoch, setup
included: a test that waits for a shared fixture shows the wait). The report: the run's wall time, each worker's
busy time and when it finished (a worker that ends long before the other is time lost), the time per test file
and the slowest tests with the second each started at.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

_started: dict[str, float] = {}
_recording = [True]


def pytest_configure(config) -> None:
    # xdist's controller hears of every test its workers run: only the process that runs a test records it.
    _recording[0] = hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no"


def pytest_runtest_logstart(nodeid, location) -> None:
    _started[nodeid] = time.time()


def pytest_runtest_logfinish(nodeid, location) -> None:
    if not _recording[0]:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    with open(os.environ.get("SUITE_TIMELINE", "timeline.jsonl"), "a") as f:
        f.write(json.dumps({"worker": worker or "main", "test": nodeid, "start": _started.pop(nodeid, time.time()),
                            "end": time.time()}) + "\n")


def report(rows: list[dict], slowest: int = 15) -> str:
    """The summary printed by ``main`` for the records of one run."""
    t0, t1 = min(r["start"] for r in rows), max(r["end"] for r in rows)
    lines = [f"wall {t1 - t0:.0f} s, {len(rows)} tests"]
    by_worker = collections.defaultdict(list)
    for r in rows:
        by_worker[r["worker"]].append(r)
    for worker, own in sorted(by_worker.items()):
        lines.append(f"{worker}: {len(own)} tests, busy {sum(r['end'] - r['start'] for r in own):.0f} s, "
                     f"finished at {max(r['end'] for r in own) - t0:.0f} s")
    per_file = collections.Counter()
    for r in rows:
        per_file[r["test"].split("::")[0]] += r["end"] - r["start"]
    lines += ["", "seconds per file:"] + [f"{t:8.1f}  {f}" for f, t in per_file.most_common(10)]
    lines += ["", "slowest tests (setup included; started at):"]
    for r in sorted(rows, key=lambda r: r["start"] - r["end"])[:slowest]:
        lines.append(f"{r['end'] - r['start']:8.1f}  {r['worker']} @{r['start'] - t0:5.0f} s  {r['test']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("timeline", help="the JSON-lines file the plugin wrote (SUITE_TIMELINE)")
    p.add_argument("--slowest", type=int, default=15, help="how many of the slowest tests to list")
    a = p.parse_args(argv)
    with open(a.timeline) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise SystemExit(f"{a.timeline} holds no test records: run pytest with -p suite_timeline first")
    print(report(rows, a.slowest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
