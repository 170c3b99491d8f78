"""Stop requests for long jobs: SIGINT / SIGTERM end training at the next step boundary, checkpointed.

A signal only sets a flag; the trainer checks it after a whole optimizer step, saves, and raises
``TrainingInterrupted``. Stopping between steps (never inside one) is what makes ``--resume`` exact:
the checkpoint's step count always matches the weights and optimizer state it holds. A second SIGINT
stops at once, without a checkpoint (the last periodic one stays).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: The conventional shell exit status of a process stopped by each signal (128 + number).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a final checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = EXIT_STATUS.get(signum, 130)


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM request a stop instead of killing the process.

    Outside the main thread (signals cannot be caught there) it does nothing and ``requested`` stays None.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.requested = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_STATUS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
