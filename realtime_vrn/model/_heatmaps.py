"""The heatmaps' window loop compiled with numba (``cache=True``: compiled once per machine, like the surface's)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def write_windows(gx: np.ndarray, gy: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[k] = 0 everywhere, then gy[k, y] * gx[k, x] on the window lo[k] <= (x, y) < hi[k].

    gx, gy: (K, S) float32 separable Gaussians over x and y; lo, hi: (K, 2) int64 window corners (x, y), clipped
    to [0, S]; out: (K, S, S) float32, written in place (the network input's heatmap channels).
    """
    out[:] = 0.0
    for k in range(out.shape[0]):
        for y in range(lo[k, 1], hi[k, 1]):
            for x in range(lo[k, 0], hi[k, 0]):
                out[k, y, x] = gy[k, y] * gx[k, x]
