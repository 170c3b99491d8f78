"""Faults in long jobs: signals, kill -9, a lost torchrun worker, and processes killed while writing."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rar_edge.atomic import atomic_dir, recover_dir
from rar_edge.model import create_model
from rar_edge.train.checkpoint import load_model, read_config, save_checkpoint
from rar_edge.train.trainer import TrainConfig, train

TRAIN_ARGS = ["--preset", "rar-tiny", "--batch", "2", "--crop", "32", "--warmup", "2", "--val-every", "1000",
              "--device", "cpu"]


def _train_cmd(photo_dir, out, steps: int, ckpt_every: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rar_edge", "train", "--data", str(photo_dir), "--out", str(out),
            "--steps", str(steps), "--ckpt-every", str(ckpt_every), *TRAIN_ARGS, *extra]


def _wait_for_step(ckpt: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Block until the checkpoint ``ckpt`` holds at least ``step`` (the process must still run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stream = proc.stderr or proc.stdout
            raise AssertionError(f"process ended early ({proc.returncode}): {stream.read()[-3000:] if stream else ''}")
        try:
            if read_config(ckpt)["step"] >= step:
                return
        except Exception:  # not written yet
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{ckpt} did not reach step {step} in {timeout} s")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigterm_checkpoints_then_resume_finishes(photo_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(photo_dir, out, 400, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    _wait_for_step(out / "last", 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    last = [line for line in err.splitlines() if line.startswith("rar-edge train:")]
    assert len(last) == 1 and "stopped by SIGTERM after step" in last[0] and "--resume" in last[0], err[-1500:]
    stopped_at = int(last[0].split("after step ")[1].split(";")[0])
    assert 2 <= stopped_at < 400 and read_config(out / "last")["step"] == stopped_at
    assert "Traceback" not in err

    res = subprocess.run(_train_cmd(photo_dir, out, stopped_at + 3, 2, "--resume"), capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    assert f"resuming {out / 'last'} from step {stopped_at}" in res.stderr
    assert read_config(out / "last")["step"] == stopped_at + 3


def test_kill_9_loses_at_most_one_interval_and_resume_is_exact(photo_dir, tmp_path):
    steps, every = 40, 4  # long enough that the kill (at step 8 or soon after) lands mid-run
    ref_dir = tmp_path / "ref"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): the same float sums, bit for bit
    try:
        train(TrainConfig(preset="rar-tiny", data=str(photo_dir), out=str(ref_dir), steps=steps, batch=2, crop=32,
                          warmup=2, val_every=1000, ckpt_every=every, device="cpu", progress=False))
    finally:
        torch.set_num_threads(threads)
    ref, _ = load_model(ref_dir / "last")

    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(photo_dir, out, steps, every), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for_step(out / "last", 2 * every, proc)
    proc.kill()
    proc.wait(timeout=60)
    saved = read_config(out / "last")["step"]  # loadable whatever moment the kill hit
    assert saved % every == 0 and 2 * every <= saved < steps
    res = subprocess.run(_train_cmd(photo_dir, out, steps, every, "--resume"), capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    got, cfg = load_model(out / "last")
    assert cfg["step"] == steps
    for (k, a), (_, b) in zip(ref.state_dict().items(), got.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0, msg=k)


def _worker_pids(parent: int) -> list[int]:
    """Child processes of ``parent`` (from /proc: torchrun's workers)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_torchrun_restart_resumes_after_a_lost_worker(photo_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    out = tmp_path / "ddp"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "--max-restarts", "1", "-m", "rar_edge", "train",
           "--data", str(photo_dir), "--out", str(out), "--steps", "300", "--ckpt-every", "2", "--resume", *TRAIN_ARGS]
    # torchrun shares its rendezvous store with the workers by default, and a restarted group can then read
    # the dead group's gloo addresses (pytorch/pytorch#135712): the documented set-up turns sharing off.
    env = {**_env(), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    _wait_for_step(out / "last", 2, proc)
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # lose one worker; torchrun restarts the group once
    first_gen = set(workers)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (set(_worker_pids(proc.pid)) - first_gen):
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        time.sleep(0.1)
    restarted_from = read_config(out / "last")["step"]
    # Let the new group train past its resume point, then stop it cleanly.
    _wait_for_step(out / "last", restarted_from + 2, proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=180)
    assert "resuming" in log and f"from step {restarted_from}" in log, log[-3000:]
    assert read_config(out / "last")["step"] >= restarted_from + 2


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from rar_edge.atomic import atomic_dir
    target, token = Path(sys.argv[1]), 0
    while True:  # rewrite the folder forever: 20 files that must always carry the same token
        token += 1
        with atomic_dir(target) as tmp:
            for i in range(20):
                (tmp / f"part{i}").write_bytes(str(token).encode() * 2000)
""")


def test_folder_killed_mid_write_is_old_or_new_never_mixed(tmp_path):
    target = tmp_path / "bundle"
    rng = random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
        time.sleep(rng.uniform(0.3, 0.8))
        proc.kill()
        proc.wait()
        found = recover_dir(target)
        contents = {(found / f"part{i}").read_bytes() for i in range(20)}
        assert len(contents) == 1, "a folder mixes two writes"
    # The next writer sweeps what the killed ones left (their pids are gone).
    with atomic_dir(target) as tmp:
        (tmp / "part0").write_text("final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_checkpoint_killed_mid_write_stays_loadable(tmp_path):
    script = textwrap.dedent("""
        import sys, torch
        from rar_edge.model import create_model
        from rar_edge.train.checkpoint import save_checkpoint
        m = create_model("rar-teacher")  # a few MB per write: kills land inside writes
        opt = torch.optim.AdamW(m.parameters())
        step = 0
        while True:
            step += 1
            save_checkpoint(sys.argv[1], m, "rar-teacher", step, optimizer=opt)
    """)
    ckpt = tmp_path / "last"
    for delay in (1.0, 1.7):
        proc = subprocess.Popen([sys.executable, "-c", script, str(ckpt)], env=_env())
        deadline = time.monotonic() + 120
        while not (ckpt / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        _, config = load_model(ckpt)  # whole, whatever the kill interrupted
        assert config["step"] >= 1


def test_crash_between_the_two_renames_is_recovered(tmp_path):
    m = create_model("rar-tiny")
    save_checkpoint(tmp_path / "last", m, "rar-tiny", step=5)
    # What a writer killed after setting the old version aside (and before renaming the new one in) leaves:
    os.rename(tmp_path / "last", tmp_path / ".last.old-0123456789ab")
    _, config = load_model(tmp_path / "last")
    assert config["step"] == 5 and (tmp_path / "last").is_dir()


def test_two_writers_of_one_folder_both_finish_whole(tmp_path):
    target = tmp_path / "bundle"
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from rar_edge.atomic import atomic_dir
        for n in range(40):
            with atomic_dir(Path(sys.argv[1])) as tmp:
                for i in range(10):
                    (tmp / f"part{i}").write_text(sys.argv[2] * 100)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), tag]) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    contents = {(target / f"part{i}").read_text() for i in range(10)}
    assert len(contents) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
