"""Video file output: what the window shows (or the headless render) at the source's frame rate."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from .base import check_image, fit_image

log = logging.getLogger(__name__)

#: FourCC per container. mp4v (MPEG-4 Part 2) is the codec every opencv-python wheel can write without
#: extra libraries; MJPG for AVI.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """Writes (H, W, 3) uint8 RGB images to a video file.

    path: .mp4 / .m4v / .mov (mp4v) or .avi (MJPG). fps: the source's frame rate (a recording plays at the
    speed it was captured). size: (width, height) of the video, or None for the first image's size; images of
    another size are fitted in (aspect kept, black bars). The file is opened at the first ``write``.
    ``close()`` checks that the file reads back with the number of frames written (``OutputError`` if not).
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
        log.info("recorded %d frames to %s", self.frames_written, self.path)

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
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
        if not writer.isOpened():
            raise OutputError(f"cannot open {self.path} for writing ({self._codec}, {self.size[0]}x{self.size[1]})")
        self._writer = writer

    def _verify(self) -> None:
        reader = cv2.VideoCapture(str(self.path))
        try:
            frames = int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) if reader.isOpened() else 0
        finally:
            reader.release()
        if frames != self.frames_written:
            raise OutputError(
                f"{self.path} is incomplete: {frames} frames readable, {self.frames_written} written (disk full?)"
            )
