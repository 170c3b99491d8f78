"""User-facing errors, and how every command reports them: one line on stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
import warnings
from typing import Callable, Iterator


class RarEdgeError(Exception):
    """An error caused by the user's input; its message says what was wrong and what to do."""


class RarEdgeWarning(UserWarning):
    """Something about the user's input that does not stop the work but changes what comes out (the CLI prints
    it as one line: ``PROG: warning: ...``)."""


#: The extra of ``pip install 'rar-edge[EXTRA]'`` that brings each module the runtime install leaves out.
EXTRAS = {**dict.fromkeys(("torch", "safetensors", "skimage", "scipy", "kornia"), "train"),
          **dict.fromkeys(("executorch", "torchao", "coremltools", "onnx", "onnxscript"), "export"),
          "albumentations": "eval"}


#: What each extra brings, by extra (pyproject.toml: ``export`` includes ``train``).
INCLUDES = {"train": {"train"}, "export": {"train", "export"}, "eval": {"eval"}}


def missing_extra(error: ModuleNotFoundError, command_extra: str | None = None) -> str | None:
    """The one-line message for a module an optional extra brings, or None for any other missing module.

    ``command_extra``: the extra the command needs as a whole. Named instead of the module's own when it
    brings the module, so that the first hint is the whole answer: ``export`` imports torch first, and
    "install [train]" would only lead to a second error asking for [export].
    """
    import importlib.util

    top = (error.name or "").split(".")[0]
    if top not in EXTRAS or importlib.util.find_spec(top) is not None:  # installed: a broken install, not an extra
        return None
    extra = command_extra if EXTRAS[top] in INCLUDES.get(command_extra or "", ()) else EXTRAS[top]
    return (f"this command needs {top}, which the runtime-only install leaves out: "
            f"pip install 'rar-edge[{extra}]' (or 'rar-edge[all]')")


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` or RAR_EDGE_DEBUG=1: show tracebacks instead of one-line errors."""
    return flag or os.environ.get("RAR_EDGE_DEBUG", "") not in ("", "0")


#: Import-time notices that say nothing a user can act on, by logger: torchao failing to load its optional
#: compiled kernels (CUDA-only ones on a CPU machine; each line with the machine's site-packages path) or Triton
#: (GPU kernels), torch's pytree registering enums. Only these records are dropped; the loggers' other messages
#: still show.
QUIET_NOTICES = {"torchao": "Failed to load ", "torchao.kernel.intmm": "Warning: Detected no triton",
                 "torch.utils._pytree": "<enum "}


class _DropNotice(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_import_notices() -> None:
    """Drop QUIET_NOTICES' records (``--debug`` keeps them); calling it again adds nothing."""
    for name, prefix in QUIET_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in logger.filters):
            logger.addFilter(_DropNotice(prefix))


#: Lines native code prints straight to the process's stderr that say nothing a user can act on: ExecuTorch's
#: XNNPACK backend, loading a program on a CPU whose identification files it cannot read (most x86 Linux
#: machines), prints five "[cpuinfo_utils.cpp:NN] ... Failed to open midr file ..." lines.
NATIVE_CHATTER = ("[cpuinfo_utils.cpp:",)


#: One redirect of file descriptor 2 at a time: the descriptor is the whole process's, so two threads that caught it
#: at once would each restore the other's temporary file.
_NATIVE_STDERR = threading.RLock()


@contextlib.contextmanager
def quiet_native_chatter() -> Iterator[None]:
    """Run the block with file descriptor 2 caught, then pass on every line it wrote but NATIVE_CHATTER's.

    Native libraries write to the descriptor, not to ``sys.stderr``, so logging filters cannot drop them. The
    descriptor is process-wide: while a block runs, what other threads write to stderr is held back too (and
    passed on after it), and a second such block waits for the first. With RAR_EDGE_DEBUG=1, or where the
    descriptor cannot be duplicated or no temporary file can be made, nothing is caught."""
    import tempfile

    if debug_requested():
        yield
        return
    with _NATIVE_STDERR:
        try:
            caught = tempfile.TemporaryFile()
        except OSError:
            caught = None
        saved = None
        if caught is not None:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(caught.fileno(), 2)
            except OSError:
                if saved is not None:
                    os.close(saved)
                saved = None
        if saved is None:
            if caught is not None:
                caught.close()
            yield
            return
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith(NATIVE_CHATTER)]
            caught.close()
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def run_guarded(prog: str, command: Callable[[], int], debug: bool = False, extra: str | None = None) -> int:
    """Run a CLI command and map its outcome to an exit status.

    2: a RarEdgeError (bad input; the message says what to do), or a module of an extra that is not
    installed (the message names the extra). 130 / 143: stopped by SIGINT / SIGTERM.
    1: anything else, reported in one line unless ``debug`` (then the traceback is shown too).
    ``extra``: the optional extra the command needs (missing_extra).
    """
    debug = debug_requested(debug)
    if not debug:
        quiet_import_notices()
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on the way out
            warnings.simplefilter("always", RarEdgeWarning)  # once per input, not once per process
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, RarEdgeWarning):
                    print(f"{prog}: warning: {message}", file=sys.stderr)
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            return command()
    except RarEdgeError as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"{prog}: {str(e) or 'interrupted'}", file=sys.stderr)  # a bare Ctrl-C has no message
        return getattr(e, "exit_status", 130)
    except Exception as e:
        if debug:
            traceback.print_exc()
        hint = missing_extra(e, extra) if isinstance(e, ModuleNotFoundError) else None
        if hint is not None:
            print(f"{prog}: error: {hint}", file=sys.stderr)
            return 2
        lines = str(e).strip().splitlines()
        first = lines[0][:300] if lines else ""
        print(f"{prog}: error: unexpected {type(e).__name__}{': ' + first if first else ''} "
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
