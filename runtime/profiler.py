"""``rar-edge profile``: measure a bundle on this device in a fresh process and write the profile JSON.

A fresh process per measurement: several backends (or a warm, fragmented one) in one process gave erratic
timings here (TOOLCHAIN.md).
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from pathlib import Path

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import verify_bundle

from .profile import DeviceProfile, measure, parse_profile, save_profile


def _worker(bundle: str, backend: str | None, sizes: list[tuple[int, int]], runs: int, queue) -> None:
    try:
        queue.put(("ok", measure(bundle, backend, sizes, runs).to_json()))
    except RarEdgeError as e:
        queue.put(("error", str(e)))
    except Exception as e:  # reported in one line by the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def profile_in_subprocess(bundle: str | Path, backend: str | None, sizes: list[tuple[int, int]] | None, runs: int,
                          out: str | Path) -> DeviceProfile:
    """Measure in a spawned process; write ``out`` atomically; return the profile."""
    try:
        manifest = verify_bundle(bundle)
    except ValueError as e:
        raise RarEdgeError(str(e)) from None
    if sizes is None:
        if not manifest["input_shape"]:
            raise RarEdgeError("a dynamic bundle has no fixed shape: pass --sizes (e.g. 256,512,1024)")
        sizes = [tuple(manifest["input_shape"])]
    if runs < 1:
        raise RarEdgeError("--runs must be at least 1")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(str(bundle), backend, sizes, runs, queue))
    proc.start()
    while True:
        try:
            status, payload = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RarEdgeError(f"the profiling process died (exit code {proc.exitcode})") from None
    proc.join()
    if status != "ok":
        raise RarEdgeError(f"profiling failed: {payload}")
    profile = parse_profile(payload)
    save_profile(profile, out)
    return profile
