"""Video file output: what the window shows (or the headless render) at the source's frame rate."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from realtime_vrn.contracts import check_image

from .base import fit_image

log = logging.getLogger(__name__)

#: FourCC per container. mp4v (MPEG-4 Part 2) is the codec every opencv-python wheel can write without
#: extra libraries; MJPG for AVI.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """Writes (H, W, 3) uint8 RGB images to a video file.

    path: .mp4 / .m4v / .mov (mp4v) or .avi (MJPG). fps: the source's frame rate (a recording plays at the
    speed it was captured). size: (width, height) of the video, or None for the first image's size; images of
    another size are fitted in (aspect kept, black bars). The file is opened at the first ``write``.

    Frames go to ``<stem>.incomplete<suffix>`` beside ``path`` (:func:`incomplete_path`); ``close()`` finishes
    that file, checks that it reads back with the number of frames written and only then renames it to
    ``path``, so a killed run never leaves a file that looks finished. When the check fails (disk full, ...),
    ``close()`` raises ``OutputError`` saying why; an unreadable remainder is deleted, a partly readable one kept
    under the incomplete name (the message says so).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        codec = CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise OutputError(f"cannot record {self.path}: expected one of {', '.join(CODECS)} as the file type")
        if not fps > 0:
            raise OutputError(f"cannot record {self.path}: expected a frame rate > 0, got {fps}")
        self.fps = float(fps)
        self.size = size
        self._codec = codec
        self._writer: cv2.VideoWriter | None = None
        self.frames_written = 0
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        check_image(image)
        if self._closed:
            raise OutputError(f"{self.path} is already closed")
        if self._writer is None:
            self._open(image)
        self._writer.write(cv2.cvtColor(fit_image(image, self.size), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            return
        self._writer.release()
        self._verify()
        os.replace(self.temp_path, self.path)
        log.info("recorded %d frames to %s", self.frames_written, self.path)

    @property
    def temp_path(self) -> Path:
        return incomplete_path(self.path)

    def __enter__(self) -> "VideoFileSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self, first: np.ndarray) -> None:
        if self.size is None:
            self.size = (first.shape[1], first.shape[0])
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot record {self.path}: the folder {self.path.parent} does not exist")
        fourcc = cv2.VideoWriter_fourcc(*self._codec)
        writer = cv2.VideoWriter(str(self.temp_path), fourcc, self.fps, self.size)
        if not writer.isOpened():
            raise OutputError(f"cannot open {self.path} for writing ({self._codec}, {self.size[0]}x{self.size[1]})")
        self._writer = writer

    def _verify(self) -> None:
        temp = self.temp_path
        reader = cv2.VideoCapture(str(temp))
        try:
            frames = int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) if reader.isOpened() else 0
        finally:
            reader.release()
        if frames == self.frames_written:
            return
        if frames > 0:
            kept = f"the readable part is kept as {temp.name}"
        else:
            temp.unlink(missing_ok=True)
            kept = "nothing readable was kept"
        raise OutputError(f"{self.path} could not be completed: {frames} of {self.frames_written} frames readable "
                          f"(disk full or write error?); {kept}")


def incomplete_path(path: Path) -> Path:
    """Where an output is written until it is complete: ``out.mp4`` -> ``out.incomplete.mp4`` (the suffix kept, as
    writers pick the format by it)."""
    return path.with_name(f"{path.stem}.incomplete{path.suffix}")
