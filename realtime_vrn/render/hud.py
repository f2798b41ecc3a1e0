"""Heads-up display: lines of text (FPS, stage times) drawn into the read-back image with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

#: Text height relative to the image height: readable at 480p and 1080p alike.
_SCALE_PER_ROW = 1.0 / 1100.0
_MIN_SCALE = 0.4
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_RGB = (255, 255, 255)
_OUTLINE_RGB = (0, 0, 0)


def draw_hud(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` top-left into ``image`` ((H, W, 3) uint8 RGB, C-contiguous) in place and return it.

    White text with a black outline, legible over any camera frame.
    """
    if not lines:
        return image
    scale = max(_MIN_SCALE, image.shape[0] * _SCALE_PER_ROW)
    thickness = max(1, round(scale * 1.5))
    (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    step = text_h + baseline + 4
    margin = max(4, text_h // 2)
    for row, line in enumerate(lines):
        origin = (margin, margin + text_h + row * step)
        cv2.putText(image, line, origin, _FONT, scale, _OUTLINE_RGB, thickness + 2, cv2.LINE_AA)
        cv2.putText(image, line, origin, _FONT, scale, _TEXT_RGB, thickness, cv2.LINE_AA)
    return image
