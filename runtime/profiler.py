"""``rar-edge profile``: measure a bundle on this device in a fresh process and write the profile JSON.

A fresh process per measurement: several backends (or a warm, fragmented one) in one process gave erratic
timings here (TOOLCHAIN.md).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import queue as queue_module
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import verify_bundle

from .profile import ENTRY_POINTS, DeviceProfile, parse_profile, save_profile
from .restorer import FORCED_STEP, Restorer
from .scheduler import OVERHEAD, overhead_per_pass


def _stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def measure(bundle: str | Path, backend: str | None, sizes: list[tuple[int, int]], runs: int = 20,
            warmup: int = 3, threads: int | None = None, providers: list[str] | None = None) -> DeviceProfile:
    """Time every entry point at every size in this process (median and p90 of ``runs`` calls).
    ``providers``: onnxruntime's execution providers (ONNX bundles), recorded in the profile."""
    options = {"threads": threads} if threads else {}
    if providers:
        options["providers"] = providers
    r = Restorer.load(bundle, backend=backend, warmup=False, **options)
    if r.fixed_tile and any(s != r.fixed_tile for s in sizes):
        raise RarEdgeError(f"{bundle} has a fixed input shape {r.fixed_tile[0]}x{r.fixed_tile[1]}: profile that size "
                           "(or export with --dynamic)")
    m = r.manifest
    rng = np.random.default_rng(0)
    table: dict = {}
    for h, w in sizes:
        image = rng.random((1, 3, h, w), dtype=np.float32)
        z = r.backend.run("encode", [image])[0]
        cond = r.backend.run("assess", [z])[2]
        inputs = {"encode": [image], "assess": [z], "restore": [z, cond], "decode": [z]}
        row = {}
        for e in ENTRY_POINTS:
            for _ in range(warmup):
                r.backend.run(e, inputs[e])
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r.backend.run(e, inputs[e])
                times.append((time.perf_counter() - t0) * 1000.0)
            row[e] = _stats(times)
        # The runtime's own work per tile and pass (conversion, tiling, blending, per-step array work),
        # measured through restore() with one forced step: the scheduler charges it per tile and pass.
        per_unit = []
        for i in range(warmup + max(3, runs // 4)):
            res = r.restore(rng.random((h, w, 3), dtype=np.float32), **FORCED_STEP)
            if i >= warmup:
                per_unit.append(overhead_per_pass(res.ms[OVERHEAD], res.tiles, res.steps_run))
        row[OVERHEAD] = _stats(per_unit)
        table[f"{h}x{w}"] = row
    return DeviceProfile(device=f"{platform.node()} ({machine_name()})",
                         backend=r.backend.name, method="measured",
                         basis=f"rar-edge profile: {runs} timed calls after {warmup} warm-up, random inputs",
                         bundle={k: m[k] for k in ("preset", "precision", "target")}, sizes=table,
                         date=datetime.now(timezone.utc).date().isoformat(),
                         providers=list(getattr(r.backend, "providers", [])))


def machine_name() -> str:
    """This machine's processor as benchmarks state it: the CPU model and core count (Linux), else the platform."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores"


def _worker(bundle: str, backend: str | None, sizes: list[tuple[int, int]], runs: int, providers: list[str] | None,
            queue) -> None:
    try:
        queue.put(("ok", measure(bundle, backend, sizes, runs, providers=providers).to_json()))
    except RarEdgeError as e:
        queue.put(("error", str(e)))
    except Exception as e:  # reported in one line by the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def profile_in_subprocess(bundle: str | Path, backend: str | None, sizes: list[tuple[int, int]] | None, runs: int,
                          out: str | Path, providers: list[str] | None = None) -> DeviceProfile:
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
    proc = ctx.Process(target=_worker, args=(str(bundle), backend, sizes, runs, providers, queue))
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
