"""Stopping on SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, ``docker stop``, systemd) alike.

Outside the frame loop (start-up, loading models) either signal raises :class:`Interrupted` at once: nothing is
written yet, the CLI prints one line and exits 128 + the signal number. Inside the loop (:class:`GracefulStop`)
the first signal only asks the loop to stop after the current frame, so that every output is finished, closed
and renamed into place and the summary says "interrupted after N frames"; a second signal aborts at once.
Handlers are only installed from the main thread (Python delivers signals there) and always restored.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, Callable

log = logging.getLogger(__name__)

#: The signals a user or a supervisor sends to stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised for a stop signal; ``exit_code`` is the shell's convention, 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def as_interrupted(err: KeyboardInterrupt) -> Interrupted:
    """``err`` as :class:`Interrupted`: a plain KeyboardInterrupt (raised by Python or a library) is SIGINT."""
    return err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


class _Handlers:
    """Install ``handler`` for STOP_SIGNALS on enter (main thread only) and restore the previous ones on exit."""

    def __init__(self, handler: Callable[[int, FrameType | None], Any]) -> None:
        self._handler = handler
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "_Handlers":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved = {}


def raise_on_stop_signals() -> _Handlers:
    """Context manager: SIGINT and SIGTERM raise :class:`Interrupted` (SIGTERM's default would kill the process
    without a word)."""
    return _Handlers(_raise_interrupted)


class GracefulStop(_Handlers):
    """Context manager for the frame loop: ``requested`` holds the first stop signal's number (None until one
    arrives); the loop checks it between frames. A second signal raises :class:`Interrupted`."""

    def __init__(self) -> None:
        super().__init__(self._handle)
        self.requested: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise Interrupted(signum)
        self.requested = signum
        log.warning("%s: finishing the outputs after this frame (send it again to abort at once)",
                    signal_name(signum))
