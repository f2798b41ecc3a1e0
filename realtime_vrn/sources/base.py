"""The frame-source interface every input (camera, video file, images) implements.

A source is a context manager and an iterator of :class:`Frame`. Construction is cheap and touches no
device or file; :meth:`FrameSource.open` (or entering the ``with`` block, or starting to iterate) opens it
and reads the first frame, so a missing camera or an unreadable file fails there, before any work is done.
``close()`` is idempotent and joins every thread the source started (with a timeout: a stuck driver never
hangs the program).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: How long ``close()`` waits for a reader thread to finish. Reader threads check their stop flag between
#: frames, so a healthy one ends within one frame time; only a driver stuck inside ``read()`` takes longer,
#: and such a thread is abandoned (it is a daemon thread) with a warning instead of hanging the program.
JOIN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Frame:
    """One picture from a source.

    image:      (H, W, 3) uint8 RGB, C-contiguous, frame pixels (pixel centres at integers, x right, y down).
    index:      0-based position in the source's stream. For a camera it counts every captured frame,
                dropped ones included, so a gap in ``index`` is a drop; for a video file it is the frame number
                in the file; for images the position in the sorted list.
    timestamp:  ``time.perf_counter()`` seconds when the frame was captured (camera: when the driver handed
                it over; file: when it was decoded and handed out), the start of the end-to-end latency.
    media_time: seconds from the start of a video file (its presentation time), None for cameras and images.
    name:       what to name this frame's outputs after: an image's file name without its suffix (unique within
                the folder), None for video and camera frames (named after ``index``).
    """

    image: np.ndarray
    index: int
    timestamp: float
    media_time: float | None = None
    name: str | None = None


class FrameSource(ABC):
    """An iterator of :class:`Frame` and a context manager.

    Attributes (``fps``, ``size``, ``frame_count`` are known once the source is open; reading them earlier
    raises RuntimeError):
        name:        what to call the source in logs and messages (e.g. "camera 0", the file name).
        fps:         nominal frames per second, or None when unknown (images, some cameras).
        size:        (width, height) in pixels of the first frame (image folders may hold other sizes).
        is_live:     True for a camera (frames arrive in real time and the newest one wins).
        is_still:    True for still images (unrelated pictures: no tracking or smoothing across them).
        frame_count: number of frames when known in advance (files, image folders), None for cameras and
                     looping sources.
        dropped:     frames discarded so far (a camera frame replaced by a newer one, or a video frame
                     skipped to keep up in real-time mode). Never silent: counted here and logged at close.
        skipped:     ``(path, reason)`` of every input file that could not be read and was passed over (image
                     folders); the run reports them and exits non-zero.
    """

    is_live: bool = False
    is_still: bool = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.dropped = 0
        self.skipped: list[tuple[str, str]] = []
        self._fps: float | None = None
        self._size: tuple[int, int] | None = None
        self._frame_count: int | None = None
        self._opened = False
        self._closed = False

    # -- public interface -------------------------------------------------------------------------------

    @property
    def fps(self) -> float | None:
        self._require_open("fps")
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        self._require_open("size")
        assert self._size is not None
        return self._size

    @property
    def frame_count(self) -> int | None:
        self._require_open("frame_count")
        return self._frame_count

    def open(self) -> "FrameSource":
        """Open the device or file and read the first frame. Idempotent. Raises SourceError on failure."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed; open a new source")
        if not self._opened:
            try:
                self._open()
            except BaseException:
                self._release()
                raise
            self._opened = True
            log.info("opened %s: %dx%d, %s fps, %s frames", self.name, *self.size,
                     "?" if self._fps is None else f"{self._fps:g}",
                     "?" if self._frame_count is None else self._frame_count)
        return self

    def close(self) -> None:
        """Stop reader threads (joined with a timeout) and release the device or file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._release()
        if self.dropped:
            log.info("%s: %d frame(s) dropped", self.name, self.dropped)

    def __enter__(self) -> "FrameSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> "FrameSource":
        self.open()
        return self

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        self.open()
        return self._next()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "not opened"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    # -- what implementations provide ---------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open, read the first frame, and set ``_fps``, ``_size``, ``_frame_count``."""

    @abstractmethod
    def _next(self) -> Frame:
        """The next frame; StopIteration at the end; SourceError when reading fails."""

    @abstractmethod
    def _release(self) -> None:
        """Stop threads and release resources. Called once, also after a failed ``_open``."""

    def _require_open(self, attribute: str) -> None:
        if not self._opened:
            raise RuntimeError(f"{self.name}: {attribute} is known once the source is open (use it in a with block)")
