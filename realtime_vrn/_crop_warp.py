"""The crop's bicubic resampling compiled with numba (``cache=True``: compiled once per machine, like the surface's).

The crop is a similarity without rotation (:class:`realtime_vrn.crop.CropTransform`), so its bicubic kernel is
separable: each output row is first a weighted sum of four frame rows (contiguous memory, vectorised), then each
output pixel a weighted sum of four pixels of that row. OpenCV's ``warpAffine`` evaluates the 4 x 4 taps of every
pixel in fixed point instead; this computes the same kernel in float32 with exact sub-pixel positions (OpenCV
rounds them to 1/32 pixel): most values equal, a grey level apart elsewhere, up to 3 on a photo's sharpest edges.
For the shipped model's 96-pixel crop: about half of ``warpAffine``'s time with the frame in cache, three
quarters in the pipeline, where the frame rows the taps read come from memory either way (docs/benchmarks.md).
"""

from __future__ import annotations

import numba
import numpy as np

#: The cubic convolution kernel's parameter: OpenCV's INTER_CUBIC (MATLAB's imresize uses -0.5).
CUBIC_A = -0.75


@numba.njit(cache=True, nogil=True, inline="always")
def _cubic_weights(t: float, w: np.ndarray) -> None:  # pragma: no cover - compiled
    """The four weights of taps at offsets -1, 0, 1, 2 from the sample's floor, for a fraction t in [0, 1)."""
    a = CUBIC_A
    t1 = t + 1.0  # |offset| in [1, 2)
    w[0] = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a
    w[1] = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    u = 1.0 - t  # in (0, 1]
    w[2] = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0
    w[3] = 1.0 - w[0] - w[1] - w[2]


@numba.njit(cache=True, nogil=True)
def _blend_rows(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, w0: np.float32, w1: np.float32,
                w2: np.float32, w3: np.float32, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out = w0 a + w1 b + w2 c + w3 d, element by element (uint8 rows of one length, float32 out): a loop of its
    own, so that LLVM vectorises it."""
    for k in range(out.shape[0]):
        out[k] = w0 * np.float32(a[k]) + w1 * np.float32(b[k]) + w2 * np.float32(c[k]) + w3 * np.float32(d[k])


@numba.njit(cache=True, nogil=True)
def _resample_row(line: np.ndarray, first: np.ndarray, taps: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """out[j] = the four taps ``line[first[j] + 3 i]`` weighted by ``taps[i, j]``, rounded and clipped to uint8."""
    for j in range(out.shape[0]):
        k = first[j]
        acc = (taps[0, j] * line[k] + taps[1, j] * line[k + np.uint32(3)] + taps[2, j] * line[k + np.uint32(6)]
               + taps[3, j] * line[k + np.uint32(9)])
        # rounded to nearest: truncation is floor here, negatives having been clipped to 0 first
        out[j] = np.uint8(min(max(acc + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))


@numba.njit(cache=True, nogil=True)
def warp_cubic(image: np.ndarray, inv_scale: float, origin_x: float, origin_y: float,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Resample ``image`` into ``out``: output pixel (u, v) samples the frame at ``(origin_x + u * inv_scale,
    origin_y + v * inv_scale)`` with the cubic kernel (a = -0.75), pixels outside the frame black (0).

    image: (H, W, 3) uint8 C-contiguous frame. inv_scale: frame pixels per output pixel (> 0, finite).
    origin_x, origin_y: the frame point output pixel (0, 0) samples (finite). out: (S, S, 3) uint8, written:
    each value rounded to the nearest integer and clipped to [0, 255].
    """
    height, width = image.shape[0], image.shape[1]
    size = out.shape[0]
    rows = image.reshape(height, width * 3)
    # the taps of every output value of a row, (u, channel) flattened: the first frame column and four weights
    col0 = np.empty(size, np.int64)
    taps = np.empty((4, size * 3), np.float32)
    w = np.empty(4, np.float64)
    for u in range(size):
        # beyond 3 pixels outside the frame every tap is outside it: clamped there (no integer overflow)
        x = min(max(origin_x + u * inv_scale, -3.0), width + 3.0)
        fx = np.floor(x)
        col0[u] = int(fx) - 1
        _cubic_weights(x - fx, w)
        for i in range(4):
            for ch in range(3):
                taps[i, 3 * u + ch] = w[i]
    # one output row, first summed over four frame rows on the columns [base, base + span) any tap reads;
    # the columns outside the frame stay 0 (black)
    base = col0[0]
    span = col0[size - 1] + 4 - base
    lo, hi = min(max(base, 0), width), min(max(base + span, 0), width)
    line = np.zeros(span * 3, np.float32)
    # where each value's taps start in ``line`` (unsigned: no negative-index wraparound in the loop)
    first = np.empty(size * 3, np.uint32)
    for u in range(size):
        for ch in range(3):
            first[3 * u + ch] = (col0[u] - base) * 3 + ch
    blank = np.zeros(width * 3, np.uint8)
    for v in range(size):
        y = min(max(origin_y + v * inv_scale, -3.0), height + 3.0)
        fy = np.floor(y)
        r0 = int(fy) - 1
        _cubic_weights(y - fy, w)
        w0, w1, w2, w3 = np.float32(w[0]), np.float32(w[1]), np.float32(w[2]), np.float32(w[3])
        a = rows[r0] if 0 <= r0 < height else blank
        b = rows[r0 + 1] if 0 <= r0 + 1 < height else blank
        c = rows[r0 + 2] if 0 <= r0 + 2 < height else blank
        d = rows[r0 + 3] if 0 <= r0 + 3 < height else blank
        _blend_rows(a[lo * 3:hi * 3], b[lo * 3:hi * 3], c[lo * 3:hi * 3], d[lo * 3:hi * 3], w0, w1, w2, w3,
                    line[(lo - base) * 3:(hi - base) * 3])
        _resample_row(line, first, taps, out[v].reshape(size * 3))
