"""A live camera (``cv2.VideoCapture(index)``) read on its own thread, keeping only the newest frame.

Latency stays bounded by one frame: the capture thread replaces a frame nobody has taken yet with the newer
one and counts the replaced frame in ``dropped``. A camera that delivers nothing for ``read_timeout_s`` raises
SourceError instead of blocking the program; ``close()`` never waits more than ``JOIN_TIMEOUT_S`` for a
driver stuck inside ``read()``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

from realtime_vrn.errors import SourceError
from realtime_vrn.sources.base import JOIN_TIMEOUT_S, Frame, FrameSource

log = logging.getLogger(__name__)

#: Webcams often need a few seconds after opening before the first exposure is delivered (auto exposure,
#: USB negotiation); waiting this long for the first frame avoids false "no frames" errors at start-up.
FIRST_FRAME_TIMEOUT_S = 10.0
#: Once streaming, a camera delivers a frame every 1/fps s (>= 5 fps even in the dark with long exposure);
#: silence this long means the device stalled or was unplugged.
READ_TIMEOUT_S = 2.0
#: Some drivers fail a read or two while the stream (re)starts; this many failures in a row mean the camera
#: is gone.
MAX_CONSECUTIVE_READ_FAILURES = 10


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a camera source uses (tests pass fakes)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


class LatestFrameSlot:
    """A one-frame mailbox between a producer thread and the consumer: the newest frame wins.

    ``put`` replaces a frame that was not taken yet and counts it in ``dropped``; ``take`` waits (with a
    timeout) for a frame, an error, or closing.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: str | None = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        """Record why the producer stopped; ``take`` raises it as SourceError once no frame is pending."""
        with self._cond:
            self._error = message
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout_s: float, peek: bool = False) -> Frame | None:
        """The pending frame (waiting up to ``timeout_s``), or None after ``close``.

        ``peek`` leaves the frame in the slot (to wait for a first frame without making it stale).
        Raises SourceError when the producer failed, TimeoutError when nothing arrived in time.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._error is not None or self._closed,
                                timeout_s)
            if self._frame is not None:
                frame = self._frame
                if not peek:
                    self._frame = None
                return frame
            if self._error is not None:
                raise SourceError(self._error)
            if self._closed:
                return None
            raise TimeoutError(f"no frame within {timeout_s:g} s")


class CameraSource(FrameSource):
    """Camera ``index`` through OpenCV, captured on a background thread (newest frame only).

    ``size`` / ``fps`` ask the driver for a resolution / rate (it may choose another; ``self.size`` is what
    it delivers). ``capture_factory`` builds the capture object from the index (tests pass fakes).
    """

    is_live = True

    def __init__(self, index: int, *, size: tuple[int, int] | None = None, fps: float | None = None,
                 first_frame_timeout_s: float = FIRST_FRAME_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                 capture_factory: Callable[[int], Capture] | None = None) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"camera index must be an int >= 0, got {index!r}")
        super().__init__(f"camera {index}")
        self.index = index
        self._request_size = size
        self._request_fps = fps
        self._first_frame_timeout_s = first_frame_timeout_s
        self._read_timeout_s = read_timeout_s
        self._capture_factory = capture_factory or _opencv_capture
        self._cap: Capture | None = None
        self._slot = LatestFrameSlot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        cap = self._capture_factory(self.index)
        self._cap = cap
        if not cap.isOpened():
            raise SourceError(f"camera {self.index} could not be opened: no camera answered at this index; "
                              f"check that it is connected and not used by another program, try another "
                              f"--camera index, or use --video FILE")
        self._configure(cap)
        fps = float(cap.get(_cv2().CAP_PROP_FPS) or 0.0)  # asked before the capture thread owns the device
        self._fps = fps if fps > 0 else None
        self._frame_count = None
        self._thread = threading.Thread(target=self._capture_loop, name=f"capture-{self.name}", daemon=True)
        self._thread.start()
        # Wait for the first frame but leave it in the slot: if a newer one arrives before the first
        # next(), the newer one is delivered (and this one counted as dropped).
        first = self._take(self._first_frame_timeout_s, starting=True, peek=True)
        if first is None:  # closed from another thread while starting
            raise SourceError(f"{self.name} was closed while opening")
        height, width = first.image.shape[:2]
        self._size = (width, height)

    def _configure(self, cap: Capture) -> None:
        cv2 = _cv2()
        set_prop = getattr(cap, "set", None)
        if set_prop is None:
            return
        if self._request_size is not None:
            set_prop(cv2.CAP_PROP_FRAME_WIDTH, float(self._request_size[0]))
            set_prop(cv2.CAP_PROP_FRAME_HEIGHT, float(self._request_size[1]))
        if self._request_fps is not None:
            set_prop(cv2.CAP_PROP_FPS, float(self._request_fps))

    def _capture_loop(self) -> None:
        """Producer thread: read, convert BGR -> RGB, publish the newest frame; stop on the stop flag."""
        cv2 = _cv2()
        cap = self._cap
        assert cap is not None
        sequence = 0
        failures = 0
        try:
            while not self._stop.is_set():
                ok, bgr = cap.read()
                captured = time.perf_counter()
                if not ok or bgr is None:
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_READ_FAILURES:
                        self._slot.fail(f"{self.name} stopped delivering frames ({failures} failed reads in a "
                                        f"row); was it unplugged or taken by another program?")
                        return
                    continue
                failures = 0
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV delivers BGR; the package uses RGB
                self._slot.put(Frame(rgb, sequence, captured, None))
                sequence += 1
        except Exception as err:  # noqa: BLE001 - reported to the consumer as SourceError
            log.debug("capture thread of %s failed", self.name, exc_info=True)
            self._slot.fail(f"{self.name} failed while capturing: {err}")

    def _take(self, timeout_s: float, starting: bool = False, peek: bool = False) -> Frame | None:
        try:
            frame = self._slot.take(timeout_s, peek=peek)
        except TimeoutError:
            what = "delivered no frame" if starting else "delivered no new frame"
            raise SourceError(f"{self.name} {what} within {timeout_s:g} s; check the camera (is another "
                              f"program using it?) or use --video FILE") from None
        self.dropped = self._slot.dropped
        return frame

    def _next(self) -> Frame:
        frame = self._take(self._read_timeout_s)
        if frame is None:
            raise StopIteration
        return frame

    def _release(self) -> None:
        self._stop.set()
        self._slot.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                # Releasing the device under a thread blocked in read() can crash the driver: leave both.
                log.warning("%s: capture thread still blocked in read() after %.1f s; abandoning it",
                            self.name, JOIN_TIMEOUT_S)
                self._cap = None
                return
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
        self.dropped = self._slot.dropped


def _cv2() -> Any:
    import cv2

    return cv2


def _opencv_capture(index: int) -> Capture:
    return _cv2().VideoCapture(index)
