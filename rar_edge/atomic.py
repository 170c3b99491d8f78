"""Atomic writes: outputs appear whole under their final name, or not at all.

Files and folders are written under a hidden temporary name beside the target, flushed to disk, then
renamed into place. A process killed at any point (even ``kill -9``) leaves the previous version or the
new one, never a mix; two processes writing the same target both finish, and the last rename wins whole.
Temporary names carry the writer's host and pid, so leftovers of a dead writer are swept by the next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from rar_edge.errors import RarEdgeError


@contextlib.contextmanager
def _writable(final: Path) -> Iterator[None]:
    """OSErrors of the set-up and commit of a write, as one-line errors naming the target."""
    try:
        yield
    except OSError as e:
        raise RarEdgeError(f"cannot write {final} ({e.strerror or e}); choose a writable location") from None


def check_writable(folder: str | os.PathLike) -> None:
    """Fail now, in one line, if ``folder`` could not be created or written, creating nothing: its nearest
    existing ancestor must be a folder this process may write into."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "is a file" if not probe.is_dir() else "is not writable"
        raise RarEdgeError(f"cannot write {folder} ({probe} {what}); choose a writable location")


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask alone is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    return socket.gethostname().replace(".", "_")  # no dots: the tag sits between dot-separated parts


def _writer_tag() -> str:
    return f"{_host()}-{os.getpid()}"


def _fsync(path: Path) -> None:
    """Flush a file, or every file of a folder, to disk (a rename is only as durable as what it names)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _sweep_dead_writers(final: Path) -> None:
    """Remove temporary siblings of ``final`` left by writers on this host that no longer run, and
    versions set aside by a writer killed before deleting them (only once ``final`` is in place)."""
    if final.exists():
        for p in final.parent.glob(f".{final.name}.old-*"):
            shutil.rmtree(p, ignore_errors=True)
    host = _host()
    for p in final.parent.glob(f".{final.name}.*.tmp"):
        tag = p.name[len(final.name) + 2:].split(".", 1)[0]  # "<host>-<pid>"
        h, _, pid = tag.rpartition("-")
        if h != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``final``; rename it onto ``final`` if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it (0666 less the umask).
    """
    final = Path(final)
    with _writable(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{_writer_tag()}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with _writable(final):
            os.chmod(tmp_path, 0o666 & ~_umask())
            _fsync(tmp_path)
            os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def recover_dir(final: str | os.PathLike) -> Path:
    """If a writer died between its two renames (``final`` gone, its previous version set aside), put
    the newest set-aside version back. Returns ``final``. Readers call this before looking."""
    final = Path(final)
    if not final.exists():
        olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if olds:
            with contextlib.suppress(OSError):  # a concurrent writer may have got there first
                os.rename(olds[-1], final)
    return final


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; swap it in for ``final`` if the block succeeds.

    An existing ``final`` is set aside only once the new folder is complete and flushed, and deleted
    after the new one is in place; ``recover_dir`` undoes a crash between the two renames.
    """
    final = Path(final)
    with _writable(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        _sweep_dead_writers(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_writer_tag()}.", suffix=".tmp", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    set_aside: list[Path] = []
    try:
        yield tmp
        with _writable(final):
            _commit(tmp, final, set_aside)
        for old in set_aside:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, final: Path, set_aside: list[Path]) -> None:
    """Flush ``tmp`` and rename it to ``final``, setting aside whatever version is there (even one a
    concurrent writer renames in meanwhile) into ``set_aside`` for the caller to delete."""
    _fsync(tmp)
    while True:
        try:
            os.rename(tmp, final)  # fails while a non-empty ``final`` exists
            break
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
        with contextlib.suppress(FileNotFoundError):  # another writer moved it first: retry
            os.rename(final, old)
            set_aside.append(old)
