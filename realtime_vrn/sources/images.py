"""Still images: one image file, or every image in a folder (sorted by name, numbers in names compared as
numbers: ``img2`` before ``img10``). Images are read lazily, one per frame. A single unreadable image file
raises SourceError naming it; in a folder an unreadable, damaged or empty file is skipped with a warning and
listed in ``skipped`` (SourceError only when no image of the folder can be read). Images are unrelated pictures
(``is_still``): no tracking across them. Each frame carries its file's name (``Frame.name``) for its outputs.
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
        self._names: list[str] = []
        self._index = 0  # the next frame's index (counts images handed out)
        self._cursor = 0  # the next file to read (counts files, skipped ones included)
        self._pending: Frame | None = None

    def _open(self) -> None:
        self._files = list_images(self.path)
        self._names = output_names(self._files)
        self._frame_count = None if self.loop else len(self._files)  # looping: endless
        self._fps = None
        try:
            self._pending = self._next_readable()
        except StopIteration:
            raise SourceError(f"none of the {len(self._files)} images in {self.path} could be read: "
                              f"{'; '.join(reason for _, reason in self.skipped[:3])}") from None
        height, width = self._pending.image.shape[:2]
        self._size = (width, height)

    def _next(self) -> Frame:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._next_readable()

    def _next_readable(self) -> Frame:
        """The next image that decodes; unreadable files in a folder are skipped, warned about and listed."""
        n = len(self._files)
        while True:
            if self.loop and self.skipped and len(self.skipped) >= n:
                raise SourceError(f"none of the images in {self.path} can be read")
            if not self.loop and self._cursor >= n:
                raise StopIteration
            k = self._cursor % n
            self._cursor += 1
            try:
                image = read_image_rgb(self._files[k])
            except SourceError as err:
                if self.path.is_file():
                    raise
                if self._cursor <= n:  # report each file once, also when looping
                    log.warning("skipping %s", err)
                    self.skipped.append((str(self._files[k]), str(err)))
                continue
            first_pass = self._cursor <= n
            name = self._names[k] if first_pass else f"{self._names[k]}_pass{(self._cursor - 1) // n + 1}"
            frame = Frame(image, self._index, time.perf_counter(), None, name=name)
            self._index += 1
            return frame

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


def output_names(files: list[Path]) -> list[str]:
    """Names for the outputs of ``files``: the file name without suffix (``IMG_1234``), or with the suffix
    spelled in (``IMG_1234_png``) where two files differ only by it, so that no output overwrites another."""
    stems = [p.stem for p in files]
    return [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(p.stem) > 1 else p.stem for p in files]


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
