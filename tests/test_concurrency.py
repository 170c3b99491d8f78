"""Concurrency: one Restorer shared by threads; two processes exporting into the same folder."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rar_edge.manifest import verify_bundle


def test_one_restorer_shared_by_threads_gives_the_sequential_results(bundles):
    from rar_edge.runtime import Restorer

    restorer = Restorer.load(bundles["dynamic"], tile=64)
    rng = np.random.default_rng(7)
    images = [rng.random((48 + 8 * i, 80, 3), dtype=np.float32) for i in range(6)]  # 1 or 2 tiles each
    expected = [restorer.restore(im, max_steps=2, min_gain=-1e9) for im in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda im: restorer.restore(im, max_steps=2, min_gain=-1e9), images * 3))
    for i, res in enumerate(got):
        ref = expected[i % len(images)]
        np.testing.assert_array_equal(res.image, ref.image)
        assert res.quality == ref.quality and res.tiles == ref.tiles
        # Each result's timings are its own call's: restore ran exactly steps_run times per tile.
        assert res.steps_run == 2 and res.ms["total"] >= res.ms["restore"] > 0


def test_two_processes_exporting_to_one_folder(tiny_checkpoint, tmp_path):
    cmd = [sys.executable, "-m", "rar_edge.export", "--target", "onnx", "--checkpoint", str(tiny_checkpoint),
           "--imgsz", "64", "-o", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in results]
    bundle = tmp_path / "rar-tiny-fp32-onnx"
    manifest = verify_bundle(bundle)  # whole: every artifact matches the manifest's checksums
    assert set(manifest["artifacts"]) == {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                                          if p.is_file() and p.name != "manifest.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["rar-tiny-fp32-onnx"]  # nothing half-written left beside it
