"""The fusion's z-buffer, compiled with numba (``cache=True``: compiled once per machine, like the extractor)."""

from __future__ import annotations

import math

import numba
import numpy as np

#: Barycentric tolerance: a pixel centre on an edge shared by two triangles belongs to both (no cracks).
EDGE_TOLERANCE = 1e-5


@numba.njit(cache=True, nogil=True)
def zbuffer(vertices: np.ndarray, faces: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Front-most z of the triangles at each pixel centre of ``out``, in place.

    vertices: (V, 3) float32 x, y pixels (centres at integers), z larger nearer. faces: (F, 3) int32.
    out: (H, W) float32, filled with -inf by the caller; keeps its value where a triangle is not nearer.
    Degenerate triangles (zero area in x, y) and faces with an index out of range are skipped.
    """
    h, w = out.shape
    nv = vertices.shape[0]
    for t in range(faces.shape[0]):
        a, b, c = faces[t, 0], faces[t, 1], faces[t, 2]
        if a < 0 or b < 0 or c < 0 or a >= nv or b >= nv or c >= nv:
            continue
        x0, y0, z0 = vertices[a, 0], vertices[a, 1], vertices[a, 2]
        x1, y1, z1 = vertices[b, 0], vertices[b, 1], vertices[b, 2]
        x2, y2, z2 = vertices[c, 0], vertices[c, 1], vertices[c, 2]
        den = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(den) < 1e-12:
            continue
        lo_x = max(int(math.ceil(min(x0, x1, x2) - EDGE_TOLERANCE)), 0)
        hi_x = min(int(math.floor(max(x0, x1, x2) + EDGE_TOLERANCE)), w - 1)
        lo_y = max(int(math.ceil(min(y0, y1, y2) - EDGE_TOLERANCE)), 0)
        hi_y = min(int(math.floor(max(y0, y1, y2) + EDGE_TOLERANCE)), h - 1)
        for py in range(lo_y, hi_y + 1):
            for px in range(lo_x, hi_x + 1):
                u = ((px - x0) * (y2 - y0) - (x2 - x0) * (py - y0)) / den
                v = ((x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)) / den
                if u >= -EDGE_TOLERANCE and v >= -EDGE_TOLERANCE and u + v <= 1.0 + EDGE_TOLERANCE:
                    z = z0 + u * (z1 - z0) + v * (z2 - z0)
                    if z > out[py, px]:
                        out[py, px] = z
