"""What every output shares: the ``Sink`` interface and fitting images into a fixed output size."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np


class Sink(Protocol):
    """An output the pipeline pushes rendered images to: ``write`` each (H, W, 3) uint8 RGB image, then
    ``close`` (idempotent; also on leaving a ``with`` block)."""

    def write(self, image: np.ndarray) -> None: ...

    def close(self) -> None: ...


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` ((h, w, 3) uint8) scaled to fit size = (W, H) with its aspect kept, centred on black.

    Outputs with a fixed frame size (video files, virtual cameras) take images of another size this way, e.g.
    the side-by-side view (twice the frame's width). Returns ``image`` itself when it already fits exactly.
    """
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    scale = min(w / iw, h / ih)
    sw, sh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - sw) // 2, (h - sh) // 2
    out[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    return out
