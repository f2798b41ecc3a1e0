"""Image folder output: one PNG (or JPEG) file per rendered frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from realtime_vrn.contracts import check_image


class ImageFolderSink:
    """Writes each (H, W, 3) uint8 RGB image to ``folder/<prefix><index:06d><suffix>``.

    suffix: ".png" (lossless, default) or ".jpg". The folder is created on the first ``write``. Each image is
    written under a temporary name and renamed when complete. ``write(image, name=...)`` names the file
    ``<named_prefix><name><suffix>`` instead (after the photo it shows; ``named_prefix`` defaults to "").
    """

    SUFFIXES = (".png", ".jpg", ".jpeg")

    def __init__(self, folder: str | Path, *, prefix: str = "frame_", suffix: str = ".png", start: int = 0,
                 named_prefix: str = "") -> None:
        if suffix.lower() not in self.SUFFIXES:
            raise OutputError(f"cannot write {suffix!r} images: expected one of {', '.join(self.SUFFIXES)}")
        self.folder = Path(folder)
        self.prefix, self.suffix, self.named_prefix = prefix, suffix, named_prefix
        self.index = start
        self.frames_written = 0
        self.last_path: Path | None = None

    @property
    def written(self) -> str:
        """What the summary lists: the one image written, or the folder and the number of images."""
        if self.frames_written == 1 and self.last_path is not None:
            return str(self.last_path)
        return f"{self.folder} ({self.frames_written} images)"

    def write(self, image: np.ndarray, name: str | None = None) -> Path:
        """Write ``image`` (complete, or not at all: encoded in memory, then written atomically); returns its path."""
        from realtime_vrn.fileio import write_atomic

        check_image(image)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the image folder {self.folder}: {err}") from err
        label = f"{self.prefix}{self.index:06d}" if name is None else f"{self.named_prefix}{name}"
        path = self.folder / f"{label}{self.suffix}"
        ok, encoded = cv2.imencode(self.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OutputError(f"cannot encode {path}")
        try:
            write_atomic(path, encoded.tobytes())
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        self.index += 1
        self.frames_written += 1
        self.last_path = path
        return path

    def close(self) -> None:
        """Nothing to flush (each image is complete when ``write`` returns)."""

    def __enter__(self) -> "ImageFolderSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
