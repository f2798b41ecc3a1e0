"""The per-pixel and per-vertex loops of :mod:`realtime_vrn.surface.fusion`, compiled with numba (``cache=True``:
compiled once per machine, like the extractor)."""

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


@numba.njit(cache=True, nogil=True, fastmath=True)
def move_along_z(vertices: np.ndarray, normals: np.ndarray, grids: np.ndarray, out_vertices: np.ndarray,
                 out_normals: np.ndarray) -> None:  # pragma: no cover - compiled
    """(x, y, z) -> (x, y, z + F(x, y)) for every vertex, normals through the map's Jacobian, in one pass.

    vertices, normals: (V, 3) float32 (x, y pixels, centres at integers); grids: (H, W, 3) float32, F and its
    x and y derivatives at the pixel centres, read bilinearly (0 beyond the grid). out_vertices, out_normals:
    (V, 3) float32 results; the normals are unit (n_x - F_x n_z, n_y - F_y n_z, n_z), normalised.
    """
    h, w = grids.shape[0], grids.shape[1]
    for i in range(vertices.shape[0]):
        x, y = vertices[i, 0], vertices[i, 1]
        fx, fy = math.floor(x), math.floor(y)
        x0, y0 = int(fx), int(fy)
        ax, ay = x - fx, y - fy
        f = np.float32(0.0)
        gx = np.float32(0.0)
        gy = np.float32(0.0)
        if 0 <= x0 and x0 + 1 < w and 0 <= y0 and y0 + 1 < h:  # inside: the four corners, no checks
            k00, k01 = (1 - ax) * (1 - ay), ax * (1 - ay)
            k10, k11 = (1 - ax) * ay, ax * ay
            for c in range(3):
                v = (k00 * grids[y0, x0, c] + k01 * grids[y0, x0 + 1, c] + k10 * grids[y0 + 1, x0, c]
                     + k11 * grids[y0 + 1, x0 + 1, c])
                if c == 0:
                    f = v
                elif c == 1:
                    gx = v
                else:
                    gy = v
        else:  # on the grid's border: corners beyond it count 0
            for dy in range(2):
                for dx in range(2):
                    px, py = x0 + dx, y0 + dy
                    if px < 0 or py < 0 or px >= w or py >= h:
                        continue
                    k = (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
                    f += k * grids[py, px, 0]
                    gx += k * grids[py, px, 1]
                    gy += k * grids[py, px, 2]
        out_vertices[i, 0] = x
        out_vertices[i, 1] = y
        out_vertices[i, 2] = vertices[i, 2] + f
        nz = normals[i, 2]
        nx = normals[i, 0] - gx * nz
        ny = normals[i, 1] - gy * nz
        norm = math.sqrt(nx * nx + ny * ny + nz * nz)
        inv = 1.0 / norm if norm > 1e-12 else 1.0
        out_normals[i, 0] = nx * inv
        out_normals[i, 1] = ny * inv
        out_normals[i, 2] = nz * inv


@numba.njit(cache=True, nogil=True)
def column_front(vertices: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Front-most z of the vertices that lie exactly on a pixel centre's column, in place.

    vertices: (V, 3) float32 x, y pixels (centres at integers), z larger nearer; out: (H, W) float32, filled with
    -inf by the caller. A marching-cubes surface on the pixel grid meets the line through a pixel centre only at
    its vertices there (those of the grid's z edges), so this is its z-buffer at the pixel centres, exactly.
    """
    h, w = out.shape
    for i in range(vertices.shape[0]):
        x, y = vertices[i, 0], vertices[i, 1]
        if x != math.floor(x) or y != math.floor(y) or x < 0 or y < 0 or x >= w or y >= h:
            continue
        z = vertices[i, 2]
        if z > out[int(y), int(x)]:
            out[int(y), int(x)] = z
