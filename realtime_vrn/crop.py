"""The VRN input crop: the official MATLAB rule, as a similarity (scale and shift, no rotation).

``crop = scale * (frame - centre) + c0`` for x and y alike, where (all in pixels with centres at integers):

- ``scale = (90 * S / 192) / sqrt((max_x - min_x) * (max_y - min_y))`` of the 68 iBUG landmarks: the
  landmark box's geometric-mean side becomes 90 px in a 192-px crop (the same framing for other sizes S);
- ``centre = mean of the 68 landmarks + (0.5, 0.5)`` frame pixels (see below), mapped to
- ``c0 = (S - 1) / 2`` = 95.5 for S = 192: the middle of the window, between pixels 95 and 96.

Where the half pixels come from: the official ``run.m`` (AaronJackson/vrn), with P the FAN points in
MATLAB's 1-based pixel coordinates (ours + 1; FAN's Torch code writes 1-based points, as in 300-W):

    scale = 90/sqrt(prod(max(P)-min(P)));
    cen = size(I)/2;  dxy = [cen(2) cen(1)]-mean(P);
    I = imtranslate(I, dxy);  I = imresize(I, scale);  I = padarray(I, [32 32 0]);
    cen = floor(size(I)/2);  I = I(cen(1)-95:cen(1)+96, cen(2)-95:cen(2)+96, :);

Following the landmark mean along one axis of a W-pixel image: imtranslate puts it at W/2 (1-based), half a
pixel before the image centre (W + 1)/2; imresize with a scale factor maps input u to output
``s * (u - 0.5) + 0.5`` (its documented ``u = x/s + 0.5 * (1 - 1/s)``: scaling about the image's outer
corner); padarray adds 32; the window starts at ``floor((ceil(s*W) + 64)/2) - 95``. So the mean lands at
0-based crop coordinate ``95.5 - s/2 + r`` with ``r = s*W/2 - floor(ceil(s*W)/2)`` in (-0.5, 0.5]: a rounding
term that depends on the image size and is zero on average. Dropping r, the frame point half a pixel right
of and below the landmark mean maps to the window's exact middle 95.5, which is the rule above.

Differences from the MATLAB route, all below a crop pixel in placement: r is not reproduced; MATLAB
resamples twice (bilinear imtranslate, then bicubic imresize with antialiasing when shrinking), we sample
once, bicubic (OpenCV's a = -0.75 kernel, MATLAB's is a = -0.5; our own separable loop,
:mod:`realtime_vrn._crop_warp`), without antialiasing (faces larger than 90 px are shrunk, so fine texture
may alias slightly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from realtime_vrn.contracts import check_image

#: Input side of the released VRN (vrn-unguided.t7).
CROP_SIZE = 192
#: Geometric-mean side of the 68-landmark box in a 192-px crop (run.m: ``90/sqrt(prod(max(P)-min(P)))``).
TARGET_BOX_SIDE = 90.0
#: run.m centres the landmark mean half a pixel before the image centre (module docstring): the frame point
#: mapped to the middle of the window is the mean plus this many frame pixels in x and y.
MATLAB_CENTRE_OFFSET = 0.5


@dataclass(frozen=True)
class CropTransform:
    """Frame pixels <-> crop pixels of an S x S network input (pixel centres at integers, x right, y down).

    centre: (x, y) frame pixels mapped to the middle of the crop, ``c0 = ((S - 1)/2, (S - 1)/2)``.
    scale:  crop pixels per frame pixel (> 0); also maps depths: ``z_frame = z_crop / scale``.
    size:   S, the crop side in pixels.
    """

    centre: tuple[float, float]
    scale: float
    size: int = CROP_SIZE

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ValueError(f"crop size must be an int >= 1, got {self.size!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"crop scale must be finite and > 0, got {self.scale!r}")
        if len(self.centre) != 2 or not all(math.isfinite(c) for c in self.centre):
            raise ValueError(f"crop centre must be two finite numbers, got {self.centre!r}")
        object.__setattr__(self, "centre", (float(self.centre[0]), float(self.centre[1])))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "size", int(self.size))

    @classmethod
    def from_landmarks(cls, points68: np.ndarray, size: int = CROP_SIZE) -> "CropTransform":
        """The paper's crop for 68 iBUG landmarks.

        points68: (68, 2) float, frame pixels (x right, y down, pixel centres at integers).
        size:     S; the landmark box's geometric-mean side becomes ``90 * S / 192`` crop pixels.
        Raises ValueError for a wrong shape, non-finite points, or a box of zero area.
        """
        points = np.asarray(points68, dtype=np.float64)
        if points.shape != (68, 2):
            raise ValueError(f"expected (68, 2) landmarks in frame pixels, got shape {points.shape}")
        (x0, y0), (x1, y1) = points.min(axis=0).tolist(), points.max(axis=0).tolist()
        if not all(map(math.isfinite, (x0, y0, x1, y1))):  # NaN propagates to both, an infinity to one
            raise ValueError("landmarks contain NaN or infinite values")
        width, height = x1 - x0, y1 - y0
        if width <= 0 or height <= 0:
            raise ValueError(f"the landmark box has zero area ({width:g} x {height:g} px)")
        scale = TARGET_BOX_SIDE * size / CROP_SIZE / math.sqrt(width * height)
        mean_x, mean_y = points.mean(axis=0).tolist()
        return cls(centre=(mean_x + MATLAB_CENTRE_OFFSET, mean_y + MATLAB_CENTRE_OFFSET), scale=scale, size=size)

    @property
    def c0(self) -> float:
        """Crop coordinate (x and y) of the window's middle, where ``centre`` lands: (S - 1) / 2."""
        return (self.size - 1) / 2.0

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) float64 affine matrix frame -> crop pixels (OpenCV's ``warpAffine`` layout)."""
        s, c0 = self.scale, self.c0
        return np.array([[s, 0.0, c0 - s * self.centre[0]],
                         [0.0, s, c0 - s * self.centre[1]]])

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixels -> crop pixels. xy: (..., 2) array-like (x, y). Returns (..., 2) float64."""
        xy = _points(xy)
        return self.scale * (xy - np.asarray(self.centre)) + self.c0

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """Crop pixels -> frame pixels, the exact inverse of ``to_crop``. uv: (..., 2). Returns float64."""
        uv = _points(uv)
        return (uv - self.c0) / self.scale + np.asarray(self.centre)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """The crop of ``image``: (H, W, 3) uint8 RGB frame -> (S, S, 3) uint8 RGB, bicubic, black outside.

        Crop pixel (u, v) samples the frame at ``to_frame((u, v))`` with OpenCV's cubic kernel (a = -0.75),
        separably and at exact positions (:mod:`realtime_vrn._crop_warp`), in less time than OpenCV's
        ``warpAffine(..., INTER_CUBIC, BORDER_CONSTANT)`` of :attr:`matrix`: most values equal to its, the rest a
        grey level or two apart (up to 3 on a photo's sharpest edges; OpenCV rounds positions to 1/32 px).
        """
        check_image(image)
        from realtime_vrn._crop_warp import warp_cubic

        out = np.empty((self.size, self.size, 3), np.uint8)
        step = 1.0 / self.scale  # frame pixels per crop pixel
        warp_cubic(np.ascontiguousarray(image), step, self.centre[0] - self.c0 * step,
                   self.centre[1] - self.c0 * step, out)
        return out


def warm_up(size: int = CROP_SIZE) -> None:
    """Compile (or load from numba's cache) the crop's loop now, at start-up, not on the first frame (compiling
    takes ~2 s the first time on a machine)."""
    CropTransform(centre=(0.0, 0.0), scale=1.0, size=size).warp(np.zeros((2, 2, 3), np.uint8))


def _points(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim == 0 or xy.shape[-1] != 2:
        raise ValueError(f"expected points of shape (..., 2), got {xy.shape}")
    return xy
