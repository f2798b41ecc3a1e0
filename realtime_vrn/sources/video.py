"""A video file, decoded frame by frame with OpenCV (FFmpeg).

By default every frame is delivered, in order, however slow the consumer: nothing is dropped. Options:

- ``prefetch=N``: decode on a background thread into a queue of at most N frames (overlaps decoding with
  processing; bounded memory). A decoder that delivers nothing for ``read_timeout_s`` raises SourceError.
- ``drop_frames=True``: behave like a live camera: the file plays on a clock at its own frame rate, started
  when the first frame is handed out, and frames whose successor is already due are skipped (counted in
  ``dropped``). Only when asked: the default processes every frame.
- ``loop=True``: start again at the end (soak tests); ``index`` keeps counting, ``media_time`` restarts,
  ``frame_count`` is None (endless).
- ``start=N``: begin at frame N (a seek; ``index`` is the frame number in the file, ``frame_count`` counts the
  frames from N on), for processing a long video in parts.

A file that cannot be opened, decodes no frame, or is cut short raises SourceError saying so (a truncated
download is reported, never taken for the end of the clip). Truncation is judged by the file's structure, not
by the frame count in its header: phone recordings and trimmed clips carry an edit list that shows fewer frames
than the file stores (98 samples, 95 shown), so an MP4/MOV or AVI whose boxes/chunks all fit in the file is
complete wherever its frames end; only other containers fall back to the header's count (with some slack, as
that count can be an estimate).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from realtime_vrn.errors import SourceError
from realtime_vrn.sources.base import JOIN_TIMEOUT_S, Frame, FrameSource

log = logging.getLogger(__name__)

#: A decoder thread that hands out nothing for this long is stuck (a frame of any sane video decodes in far
#: less than a second, even 4K on 2 cores).
READ_TIMEOUT_S = 5.0
#: The frame count in a header can be an estimate (duration x fps) for some containers; ending this many
#: frames (or FRAME_COUNT_SLACK_FRACTION of the count, whichever is larger) early is not called truncation.
FRAME_COUNT_SLACK_FRAMES = 2
FRAME_COUNT_SLACK_FRACTION = 0.01
#: How often a prefetch thread blocked on a full queue checks whether it should stop.
QUEUE_POLL_S = 0.05
#: Scheduling priority (nice) of the prefetch thread on Linux: it decodes in the time the pipeline leaves
#: idle instead of competing with MediaPipe when a frame is taken (measured on 2 cores: MediaPipe's call
#: 4.1-4.3 -> 3.8-4.1 ms a frame, the pipeline's FPS unchanged or higher); 10, not 19, so that it still gets
#: about a tenth of a core when other programs keep the CPU busy.
DECODE_NICE = 10


def check_video_path(path: Path) -> None:
    """SourceError unless ``path`` is an existing file: what opening a video checks first (and what a run checks
    before its models load)."""
    if not path.exists():
        raise SourceError(f"video file not found: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not a video file; use --image for a folder of images")


@dataclass(frozen=True)
class _Decoded:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    index: int
    media_time: float | None


_END = "end"


class VideoFileSource(FrameSource):
    """Frames of a video file (contract of the options in the module docstring)."""

    def __init__(self, path: str | Path, *, drop_frames: bool = False, prefetch: int = 0, loop: bool = False,
                 read_timeout_s: float = READ_TIMEOUT_S, start: int = 0,
                 capture_factory: Callable[[str], Any] | None = None) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (queue length), got {prefetch!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0 or (start and loop):
            raise ValueError(f"start must be an int >= 0 (a frame number, not with loop), got {start!r}")
        self.path = Path(path)
        super().__init__(self.path.name)
        self.drop_frames = drop_frames
        self.prefetch = prefetch
        self.loop = loop
        self.start = start
        self._read_timeout_s = read_timeout_s
        self._capture_factory = capture_factory or _opencv_capture
        self._cap: Any = None
        self._index = 0  # frames grabbed since the start (all passes)
        self._position = 0  # frames grabbed in the current pass through the file
        self._pending: _Decoded | None = None
        self._header_frames: int | None = None  # the frame count the container announces
        self._ended = False
        self._clock_start: float | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- opening ------------------------------------------------------------------------------------------

    def _open(self) -> None:
        cv2 = _cv2()
        check_video_path(self.path)
        self._cap = self._capture_factory(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(_unreadable_message(self.path))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if fps > 0 and math.isfinite(fps) else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._header_frames = count if count > 0 else None
        self._frame_count = None if self.loop else self._header_frames
        if self.start:
            self._seek(cv2)
        first = self._decode()
        if first is None:
            raise SourceError(f"{self.path}: no frame could be decoded; the file is truncated, damaged or not "
                              f"a video")
        self._pending = first
        height, width = first.image.shape[:2]
        self._size = (width, height)
        if self.drop_frames and self._fps is None:
            log.warning("%s: frame rate unknown, cannot simulate real time; every frame will be processed",
                        self.name)
            self.drop_frames = False
        if self.prefetch:
            self._queue = queue.Queue(maxsize=self.prefetch)
            self._thread = threading.Thread(target=self._prefetch_loop, name=f"decode-{self.name}", daemon=True)
            self._thread.start()

    def _seek(self, cv2: Any) -> None:
        """Position the decoder on frame ``start`` (FFmpeg seeks to the key frame before it and decodes on)."""
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
        position = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
        if position != self.start:
            raise SourceError(f"{self.path}: cannot start at frame {self.start} (the decoder went to frame "
                              f"{position}; the file has {self._header_frames or 'an unknown number of'} frames)")
        self._index = self._position = self.start
        if self._frame_count is not None:
            self._frame_count = max(0, self._frame_count - self.start)

    # -- decoding (runs on the consumer thread, or on the prefetch thread when prefetching) ----------------

    def _decode(self) -> _Decoded | None:
        """Grab and convert the next frame; None at a clean end; SourceError for a truncated file."""
        cv2 = _cv2()
        cap = self._cap
        while not cap.grab():
            self._check_complete()
            if not self.loop or self._position == 0:
                return None
            log.debug("%s: end of file, looping", self.name)
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._position = 0
        media_time = self._media_time(cap)
        ok, bgr = cap.retrieve()
        if not ok or bgr is None:
            raise SourceError(f"{self.path}: frame {self._position} could not be decoded; the file is damaged")
        decoded = _Decoded(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._index, media_time)  # BGR -> RGB
        self._index += 1
        self._position += 1
        return decoded

    def _media_time(self, cap: Any) -> float | None:
        msec = float(cap.get(_cv2().CAP_PROP_POS_MSEC))
        if msec > 0 or self._position == 0:
            return msec / 1000.0
        return self._position / self._fps if self._fps else None

    def _check_complete(self) -> None:
        expected = self._header_frames
        if expected is None or self._position >= expected:
            return
        complete = container_complete(self.path)
        if complete:
            log.info("%s: %d frames shown of the %d its header counts (an edit list or an estimated count; the "
                     "file is complete)", self.name, self._position, expected)
            return
        slack = max(FRAME_COUNT_SLACK_FRAMES, int(FRAME_COUNT_SLACK_FRACTION * expected))
        if complete is False or self._position < expected - slack:
            raise SourceError(f"{self.path} ended after {self._position} of {expected} frames: the file is "
                              f"truncated or damaged")

    def _prefetch_loop(self) -> None:
        assert self._queue is not None
        _lower_priority(DECODE_NICE)
        try:
            while not self._stop.is_set():
                decoded = self._decode()
                if not self._put(_END if decoded is None else decoded):
                    return
                if decoded is None:
                    return
        except Exception as err:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(err if isinstance(err, SourceError) else SourceError(f"{self.path}: decoding failed: {err}"))

    def _put(self, item: object) -> bool:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=QUEUE_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # -- handing frames out -------------------------------------------------------------------------------

    def _next(self) -> Frame:
        while True:
            decoded = self._next_decoded()
            if decoded is None:
                self._ended = True
                raise StopIteration
            if self._is_late(decoded.index):
                self.dropped += 1
                continue
            now = time.perf_counter()
            if self._clock_start is None:
                self._clock_start = now - decoded.index / self._fps if self._fps else now
            return Frame(decoded.image, decoded.index, now, decoded.media_time)

    def _next_decoded(self) -> _Decoded | None:
        if self._ended:
            return None
        if self._pending is not None:
            decoded, self._pending = self._pending, None
            return decoded
        if self._queue is None:
            return self._decode()
        try:
            item = self._queue.get(timeout=self._read_timeout_s)
        except queue.Empty:
            raise SourceError(f"{self.path}: the decoder delivered no frame within {self._read_timeout_s:g} s "
                              f"(stuck file or device)") from None
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        return None if item is _END else item

    def _is_late(self, index: int) -> bool:
        """Real-time mode: frame ``index`` is skipped when its successor is already due on the file's clock."""
        if not self.drop_frames or self._clock_start is None:
            return False
        due = math.floor((time.perf_counter() - self._clock_start) * self._fps)
        return index < due

    # -- closing ------------------------------------------------------------------------------------------

    def _release(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s: decoder thread did not stop within %.1f s; abandoning it", self.name,
                            JOIN_TIMEOUT_S)
                self._cap = None
                return
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def container_complete(path: Path) -> bool | None:
    """Whether every top-level box (MP4/MOV, ISO-BMFF) or chunk (AVI, RIFF) of ``path`` fits in the file: False
    when one runs past the end (a cut download or recording), None for containers this does not know."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _chunks_fit(f, size, header=8, little_endian=True)
            if head[4:8] == b"ftyp":
                return _chunks_fit(f, size, header=8, little_endian=False)
    except OSError:
        return None
    return None


def _chunks_fit(f: Any, size: int, header: int, little_endian: bool) -> bool:
    """Walk the top-level chunks: RIFF (tag, u32 LE size, data padded to even) or ISO-BMFF boxes (u32 BE size
    including the header, tag; size 1 = a u64 size follows, 0 = up to the end of the file)."""
    offset = 0
    while offset < size:
        f.seek(offset)
        raw = f.read(16)
        if len(raw) < header:
            return False
        if little_endian:  # RIFF: the size counts the data only
            (length,) = struct.unpack("<I", raw[4:8])
            offset += header + length + (length & 1)
        else:
            (length,) = struct.unpack(">I", raw[:4])
            if length == 1:
                if len(raw) < 16:
                    return False
                (length,) = struct.unpack(">Q", raw[8:16])
            elif length == 0:
                return True
            if length < header:
                return False
            offset += length
    return offset == size or (little_endian and offset == size + 1)


def _unreadable_message(path: Path) -> str:
    """Why OpenCV could not open ``path``, as precisely as a look at the bytes allows."""
    size = path.stat().st_size
    if size == 0:
        return f"cannot read video {path}: the file is empty"
    with path.open("rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp" and not _contains(path, b"moov"):
        return (f"cannot read video {path}: it is an MP4/MOV file without its index ('moov' box), so it is "
                f"truncated (incomplete download or recording) or damaged")
    return f"cannot read video {path}: OpenCV/FFmpeg cannot decode it (not a video, truncated or damaged file)"


def _contains(path: Path, needle: bytes, chunk: int = 1 << 20) -> bool:
    tail = b""
    with path.open("rb") as f:
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


def _cv2() -> Any:
    import cv2

    return cv2


def _opencv_capture(path: str) -> Any:
    return _cv2().VideoCapture(path)


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux: a thread's own priority; elsewhere nothing).
    Lowering one's priority needs no privilege; if it fails anyway, the thread runs as before."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))
    except OSError as err:
        log.debug("decoding thread keeps its priority: %s", err)
