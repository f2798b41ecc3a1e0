"""Temporal filter of the surface stage: an adaptive exponential smoother of the network's logits for live use.

The smoother is an adaptive exponential filter on the network's low-resolution logits, in the crop frame. It
is applied only while the crop is stable (a still or slowly moving face: the smoothed landmarks move the crop
less than ``CROP_RESET_PX`` crop pixels and scale it less than ``CROP_RESET_SCALE``), and its weight on the
new frame rises with the size of the change (the One Euro idea: smooth small noise, follow real motion), so
its lag is at most (1 - ALPHA_MIN) / ALPHA_MIN frames of an exponential filter — under one frame. What it buys
is measured by :mod:`realtime_vrn.bench.jitter`.
"""

from __future__ import annotations

import numpy as np

#: Weight of the new frame for tiny changes (noise); lag (1 - a) / a = 0.82 frames.
ALPHA_MIN = 0.55
#: Mean absolute logit change at which the new frame is taken as is (real motion, mouth opening...).
CHANGE_FOLLOW = 1.5
#: Crop changes beyond these restart the filter (the logits of two crops are then not comparable).
CROP_RESET_PX = 2.0
CROP_RESET_SCALE = 0.02


class LogitSmoother:
    """Adaptive exponential smoothing of (D, h, w) float32 logits; call :meth:`reset` when the face is lost."""

    def __init__(self, alpha_min: float = ALPHA_MIN, change_follow: float = CHANGE_FOLLOW) -> None:
        if not 0.0 < alpha_min <= 1.0:
            raise ValueError(f"alpha_min must be in (0, 1], got {alpha_min}")
        self.alpha_min = alpha_min
        self.change_follow = change_follow
        self._state = None  # (D, h, w) float32, NumPy or CuPy like the logits
        self._crop: tuple[float, float, float] | None = None

    def reset(self) -> None:
        self._state = None
        self._crop = None

    def __call__(self, logits, crop):
        """logits: (D, h, w) float32 for the frame whose crop is ``crop`` (a CropTransform), a NumPy array or a
        CuPy array on the GPU (then everything stays there: the new-frame weight is a device scalar, so the
        filter adds no host synchronisation). Returns smoothed logits of the same kind."""
        key = (float(crop.centre[0]), float(crop.centre[1]), float(crop.scale))
        if self._state is None or self._state.shape != logits.shape or not self._same_crop(key):
            self._state = logits.astype("float32", copy=True)
            self._crop = key
            return self._state.copy()
        diff = logits - self._state
        change = abs(diff).mean()  # 0-d: a NumPy scalar, or a CuPy array that stays on the device
        alpha = (self.alpha_min + (1.0 - self.alpha_min) * change / self.change_follow).clip(None, 1.0)
        self._state += alpha.astype("float32") * diff
        self._crop = key
        return self._state.copy()

    def _same_crop(self, key: tuple[float, float, float]) -> bool:
        cx, cy, s = self._crop
        shift_crop_px = np.hypot(key[0] - cx, key[1] - cy) * key[2]  # frame px -> crop px
        return shift_crop_px < CROP_RESET_PX and abs(key[2] / s - 1.0) < CROP_RESET_SCALE
