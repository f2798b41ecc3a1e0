"""Image folder output: one PNG (or JPEG) file per rendered frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from .base import check_image


class ImageFolderSink:
    """Writes each (H, W, 3) uint8 RGB image to ``folder/<prefix><index:06d><suffix>``.

    suffix: ".png" (lossless, default) or ".jpg". The folder is created on the first ``write``.
    """

    SUFFIXES = (".png", ".jpg", ".jpeg")

    def __init__(self, folder: str | Path, *, prefix: str = "frame_", suffix: str = ".png", start: int = 0) -> None:
        if suffix.lower() not in self.SUFFIXES:
            raise OutputError(f"cannot write {suffix!r} images: expected one of {', '.join(self.SUFFIXES)}")
        self.folder = Path(folder)
        self.prefix, self.suffix = prefix, suffix
        self.index = start
        self.frames_written = 0

    def write(self, image: np.ndarray) -> Path:
        """Write ``image``; returns its path."""
        check_image(image)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the image folder {self.folder}: {err}") from err
        path = self.folder / f"{self.prefix}{self.index:06d}{self.suffix}"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"cannot write {path}")
        self.index += 1
        self.frames_written += 1
        return path

    def close(self) -> None:
        """Nothing to flush (each image is complete when ``write`` returns)."""

    def __enter__(self) -> "ImageFolderSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
