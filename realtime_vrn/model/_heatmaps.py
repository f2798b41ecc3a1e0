"""The heatmaps' loop compiled with numba (``cache=True``: compiled once per machine, like the surface's)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def write_heatmaps(pts: np.ndarray, two_sigma2: np.float32, radius: int, out: np.ndarray, clear_all: bool,
                   lo: np.ndarray, hi: np.ndarray) -> None:  # pragma: no cover - compiled
    """Each landmark's Gaussian within its window, in one pass (what ``guidance._write_heatmaps`` does in NumPy).

    pts: (K, 2) float32 crop pixels (x, y). two_sigma2: 2 sigma^2 (float32). radius: the window's half side.
    out: (K, S, S) float32 heatmap channels, written in place: ``exp(-(x - px)^2 / two_sigma2) *
    exp(-(y - py)^2 / two_sigma2)`` (float32, as NumPy computes it) on the window of pixels within ``radius``
    of the point's nearest pixel (clipped to the crop; empty for a point that is not finite), 0 elsewhere.
    clear_all: zero ``out`` first; else ``lo``, ``hi`` hold the windows written into ``out`` last time, outside
    which it is 0, and only they are cleared. lo, hi: (K, 2) int64 corners (x, y) of the windows written
    (lo inclusive, hi exclusive), set on return.
    """
    k_count, size = out.shape[0], out.shape[1]
    if clear_all:
        out[:] = 0.0
    else:
        for k in range(k_count):
            for y in range(lo[k, 1], hi[k, 1]):
                for x in range(lo[k, 0], hi[k, 0]):
                    out[k, y, x] = 0.0
    gx = np.empty(size, np.float32)
    gy = np.empty(size, np.float32)
    far = np.float32(4 * size)  # a point this far out has an empty window either way (no integer overflow)
    for k in range(k_count):
        px, py = pts[k, 0], pts[k, 1]
        if not (np.isfinite(px) and np.isfinite(py)):
            lo[k, 0], lo[k, 1], hi[k, 0], hi[k, 1] = 0, 0, 0, 0
            continue
        cx = int(np.rint(min(max(px, -far), far)))
        cy = int(np.rint(min(max(py, -far), far)))
        x0, x1 = min(max(cx - radius, 0), size), min(max(cx + radius + 1, 0), size)
        y0, y1 = min(max(cy - radius, 0), size), min(max(cy + radius + 1, 0), size)
        lo[k, 0], lo[k, 1], hi[k, 0], hi[k, 1] = x0, y0, x1, y1
        for x in range(x0, x1):
            d = np.float32(x) - px
            gx[x] = np.exp(-(d * d) / two_sigma2)
        for y in range(y0, y1):
            d = np.float32(y) - py
            gy[y] = np.exp(-(d * d) / two_sigma2)
        for y in range(y0, y1):
            for x in range(x0, x1):
                out[k, y, x] = gy[y] * gx[x]
