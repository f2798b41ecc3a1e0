"""Still images: one image file, or every image in a folder (sorted by name, numbers in names compared as
numbers: ``img2`` before ``img10``). Images are read lazily, one per frame; an unreadable file raises
SourceError naming it. Images are unrelated pictures (``is_still``): no tracking across them.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from realtime_vrn.errors import SourceError
from realtime_vrn.sources.base import Frame, FrameSource

log = logging.getLogger(__name__)

#: Extensions read from a folder (what OpenCV's imread decodes on every platform); other files are skipped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageSource(FrameSource):
    """An image file or a folder of images (``loop=True`` starts again after the last one)."""

    is_still = True

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        super().__init__(self.path.name or str(self.path))
        self.loop = loop
        self._files: list[Path] = []
        self._cursor = 0
        self._index = 0
        self._pending: Frame | None = None

    def _open(self) -> None:
        self._files = list_images(self.path)
        self._frame_count = None if self.loop else len(self._files)  # looping: endless
        self._fps = None
        self._pending = self._read(0)
        height, width = self._pending.image.shape[:2]
        self._size = (width, height)

    def _next(self) -> Frame:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._read(self._index)

    def _read(self, index: int) -> Frame:
        cursor = index % len(self._files) if self.loop else index
        if cursor >= len(self._files):
            raise StopIteration
        path = self._files[cursor]
        image = read_image_rgb(path)
        self._index = index + 1
        return Frame(image, index, time.perf_counter(), None)

    def _release(self) -> None:
        self._pending = None


def list_images(path: Path) -> list[Path]:
    """``[path]`` for an image file; the folder's images in natural name order. SourceError if none."""
    if not path.exists():
        raise SourceError(f"image path not found: {path}")
    if path.is_file():
        return [path]
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
    log.debug("%d images in %s", len(files), path)
    return files


def read_image_rgb(path: Path) -> Any:
    """(H, W, 3) uint8 RGB from an image file (EXIF orientation applied; grey and alpha made RGB).

    Raises SourceError naming the file when it cannot be decoded.
    """
    import cv2
    import numpy as np

    # np.fromfile + imdecode instead of imread: works with non-ASCII paths on Windows too.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise SourceError(f"cannot read image {path}: {err.strerror or err}") from err
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise SourceError(f"cannot read image {path}: not an image OpenCV can decode (damaged or unsupported)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV decodes to BGR; the package uses RGB


def _natural_key(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name))
