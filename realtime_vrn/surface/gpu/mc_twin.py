"""NumPy twin of the CUDA marching cubes (``marching_cubes.cu``): same phases, tables, arithmetic, order.

It runs in CI, where no GPU exists, and is what the kernel is compared with on a GPU machine (indices exactly,
positions to 1e-5). Vectorised (no Python loop over cells), but written for fidelity to the kernel, not speed.

Input: low-resolution logits ``(D, h, w)`` float32, ordered (z, y, x), as the network backends return them.
The field that is marched is the release's bilinear upsample (align_corners=True) of every depth slice by
``upsample`` in y and x, evaluated on the fly from four low-resolution values wherever it is needed (the full
``(D, h*u, w*u)`` volume is never stored); ``upsample=1`` marches the logits as they are. The iso-level is logit
0 (p = 0.5); a point is *inside* when its logit is > 0.

Phases (each function here is one kernel of the .cu, the scans are ``cupy.cumsum`` there):

1. :func:`classify` - per grid point (z, y, x): ``cases`` (8-bit inside mask of the cell whose lowest corner
   it is, 0 where no cell starts), ``edges`` (bits 0, 1, 2: its +x, +y, +z edge crosses the level),
   ``nverts`` = popcount(edges), ``ntris`` = triangles of its case, ``active`` = ntris > 0. All uint8, flat.
2. :func:`exclusive_scan` of nverts, active and ntris -> int32 offsets of length n + 1 (the total last).
3. :func:`compact` - the active cells' point indices, ascending.
4. :func:`vertices` - one vertex per crossed edge, owned by its lower grid point; vertex ids run over points in
   index order, then x, y, z edges. Linear interpolation of the logits along the edge; normals from the
   central-difference gradient (one-sided at the border) interpolated the same way, pointing outwards
   (towards lower logits).
5. :func:`triangles` - per active cell, its table triangles in table order at its scanned offset; each edge is
   mapped to the vertex id of its owner point.

Output frame (the :class:`~realtime_vrn.surface.mesh.Mesh` contract, "crop"): x, y full-resolution pixels, z =
depth index * 0.5; faces wound with cross(v1 - v0, v2 - v0) outwards; unit normals (zero where the gradient
vanishes).

Float arithmetic: every value is a float32 operation in the same order as the kernel, which is compiled with
``--fmad=false`` (no fused multiply-add), so both round identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime_vrn.contracts import check_logits

from .mc_tables import CORNER_OFFSETS, EDGE_AXIS, EDGE_OWNER, VERTEX_COUNTS, triangle_counts, triangle_table

#: Crop-frame z per depth index (the VRN volumes are twice as deep in z as in x and y).
Z_SCALE = np.float32(0.5)
#: The release's last layer upsamples the hourglass grid by 4 (48 -> 192).
RELEASE_UPSAMPLE = 4
#: Depth slices evaluated at once by :func:`classify` (bounds its temporary memory to a few MB).
SLAB = 16


@dataclass(frozen=True)
class Grid:
    """The marched grid and its upsample tables.

    depth, height, width: full-resolution grid points (z, y, x); low_h, low_w: the logits' y, x size.
    idx: int32 ``[x0 (W), x1 (W), y0 (H), y1 (H)]`` low-resolution neighbours of each full-resolution column/row;
    wts: float32 ``[wx0 (W), wx1 (W), wy0 (H), wy1 (H)]`` their weights. The same arrays go to the GPU.
    """

    depth: int
    height: int
    width: int
    low_h: int
    low_w: int
    idx: np.ndarray
    wts: np.ndarray

    @property
    def n_points(self) -> int:
        return self.depth * self.height * self.width

    def unpack(self):
        """(x0, x1, y0, y1, wx0, wx1, wy0, wy1) views of the tables."""
        w, h = self.width, self.height
        cuts = (w, 2 * w, 2 * w + h)
        return (*np.split(self.idx, cuts), *np.split(self.wts, cuts))


def linear_tables(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """1-D align_corners=True interpolation from n_in to n_out samples: (i0, i1) int32, (w0, w1) float32.

    Output sample k reads input position k * (n_in - 1) / (n_out - 1), the scale rounded to float32 first as
    torch does; w0 = 1 - frac, w1 = frac. With n_out == n_in this is the identity (w0 = 1, w1 = 0).
    """
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
    src = np.arange(n_out, dtype=np.float32) * scale
    i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    frac = src - i0.astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1).astype(np.int32)
    return i0, i1, (np.float32(1.0) - frac).astype(np.float32), frac.astype(np.float32)


def make_grid(shape: tuple[int, int, int], upsample: int = RELEASE_UPSAMPLE) -> Grid:
    """The grid for logits of ``shape`` = (D, h, w) upsampled by ``upsample`` in y and x."""
    if len(shape) != 3:
        raise ValueError(f"expected a (D, h, w) logit shape, got {shape}")
    d, h, w = (int(s) for s in shape)
    if not isinstance(upsample, (int, np.integer)) or upsample < 1:
        raise ValueError(f"upsample must be an int >= 1, got {upsample!r}")
    if min(d, h, w) < 2:
        raise ValueError(f"every axis needs at least 2 samples, got {shape}")
    big_h, big_w = h * upsample, w * upsample
    if 3 * d * big_h * big_w >= 2**31:
        raise ValueError(f"grid {d}x{big_h}x{big_w} too large for 32-bit vertex ids")
    x0, x1, wx0, wx1 = linear_tables(w, big_w)
    y0, y1, wy0, wy1 = linear_tables(h, big_h)
    return Grid(d, big_h, big_w, h, w, np.concatenate([x0, x1, y0, y1]), np.concatenate([wx0, wx1, wy0, wy1]))


def field_at(logits: np.ndarray, grid: Grid, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The upsampled logit at integer grid points (z, y, x) (broadcast int arrays) -> float32, on the fly."""
    x0, x1, y0, y1, wx0, wx1, wy0, wy1 = grid.unpack()
    ax0, ax1, ay0, ay1 = x0[x], x1[x], y0[y], y1[y]
    r0 = wx0[x] * logits[z, ay0, ax0] + wx1[x] * logits[z, ay0, ax1]
    r1 = wx0[x] * logits[z, ay1, ax0] + wx1[x] * logits[z, ay1, ax1]
    return wy0[y] * r0 + wy1[y] * r1


def field_slab(logits: np.ndarray, grid: Grid, z0: int, z1: int) -> np.ndarray:
    """The upsampled logits of slices z0:z1 -> (z1 - z0, H, W) float32; the same arithmetic as :func:`field_at`."""
    x0, x1, y0, y1, wx0, wx1, wy0, wy1 = grid.unpack()
    low = logits[z0:z1]
    rows = wx0 * low[:, :, x0] + wx1 * low[:, :, x1]  # (n, h, W): r0 / r1 of every low-res row
    return wy0[:, None] * rows[:, y0, :] + wy1[:, None] * rows[:, y1, :]


def upsample_full(logits: np.ndarray, upsample: int = RELEASE_UPSAMPLE) -> np.ndarray:
    """(D, h, w) -> (D, h*u, w*u) float32, the whole field the kernel evaluates on the fly (tests, references)."""
    logits = _check_logits(logits)
    grid = make_grid(logits.shape, upsample)
    return field_slab(logits, grid, 0, grid.depth)


@dataclass
class Classification:
    """Phase 1 output, flat over the grid points in (z, y, x) order; all uint8."""

    cases: np.ndarray
    edges: np.ndarray
    nverts: np.ndarray
    ntris: np.ndarray
    active: np.ndarray


def classify(logits: np.ndarray, grid: Grid) -> Classification:
    """Phase 1: per grid point, the case of the cell it starts and its crossed +x, +y, +z edges."""
    d, h, w = grid.depth, grid.height, grid.width
    inside = np.empty((d, h, w), bool)
    for z0 in range(0, d, SLAB):  # slabs of slices, not cells: bounds the temporary float memory
        inside[z0 : z0 + SLAB] = field_slab(logits, grid, z0, min(z0 + SLAB, d)) > 0
    edges = np.zeros((d, h, w), np.uint8)
    edges[:, :, :-1] |= inside[:, :, :-1] != inside[:, :, 1:]
    edges[:, :-1, :] |= (inside[:, :-1, :] != inside[:, 1:, :]).view(np.uint8) << 1
    edges[:-1, :, :] |= (inside[:-1, :, :] != inside[1:, :, :]).view(np.uint8) << 2
    cases = np.zeros((d, h, w), np.uint8)
    cell = cases[:-1, :-1, :-1]
    for bit, (dx, dy, dz) in enumerate(CORNER_OFFSETS):  # 8 corners, each a whole-grid array operation
        cell |= inside[dz : dz - 1 + d, dy : dy - 1 + h, dx : dx - 1 + w].view(np.uint8) << bit
    cases, edges = cases.ravel(), edges.ravel()
    ntris = triangle_counts()[cases]
    return Classification(cases, edges, VERTEX_COUNTS[edges], ntris, (ntris > 0).view(np.uint8))


def exclusive_scan(counts: np.ndarray) -> np.ndarray:
    """Phase 2: (n,) small non-negative ints -> (n + 1,) int32 exclusive prefix sums, the total last."""
    out = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts.astype(np.int32), out=out[1:])
    return out


def compact(active: np.ndarray) -> np.ndarray:
    """Phase 3: point indices of the active cells, ascending, int32 (the kernel scatters to scanned slots)."""
    return np.flatnonzero(active).astype(np.int32)


def _gradient_component(logits, grid: Grid, p: tuple, f_here: np.ndarray, axis: int) -> np.ndarray:
    """d(field)/d(index) along axis (0 x, 1 y, 2 z) at points p = (z, y, x) where the field is f_here: central
    differences, one-sided at the border."""
    coord = p[2 - axis]
    n = (grid.width, grid.height, grid.depth)[axis]
    up = np.minimum(coord + 1, n - 1)
    down = np.maximum(coord - 1, 0)

    def moved(c):
        q = list(p)
        q[2 - axis] = c
        return field_at(logits, grid, *q)

    f_up, f_down = moved(up), moved(down)
    central = (f_up - f_down) * np.float32(0.5)
    return np.where(coord == 0, f_up - f_here, np.where(coord == n - 1, f_here - f_down, central))


def _gradient(logits, grid: Grid, p: tuple, f_here: np.ndarray) -> list[np.ndarray]:
    return [_gradient_component(logits, grid, p, f_here, axis) for axis in range(3)]


def vertices(logits: np.ndarray, grid: Grid, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase 4: (V, 3) float32 positions and unit outward normals, in vertex-id order."""
    points = np.flatnonzero(edges)
    bits = (edges[points, None] >> np.arange(3, dtype=np.uint8)) & 1
    row, axis = np.nonzero(bits)  # point-major, then x, y, z: the order of vertex ids
    owner = points[row]
    hw = grid.height * grid.width
    z, y, x = owner // hw, (owner // grid.width) % grid.height, owner % grid.width
    z1, y1, x1 = z + (axis == 2), y + (axis == 1), x + (axis == 0)
    f0 = field_at(logits, grid, z, y, x)
    f1 = field_at(logits, grid, z1, y1, x1)
    t = f0 / (f0 - f1)  # f0, f1 on opposite sides of 0, never equal
    fx, fy, fz = x.astype(np.float32), y.astype(np.float32), z.astype(np.float32)
    px = np.where(axis == 0, fx + t, fx)
    py = np.where(axis == 1, fy + t, fy)
    pz = np.where(axis == 2, fz + t, fz) * Z_SCALE
    g0 = _gradient(logits, grid, (z, y, x), f0)
    g1 = _gradient(logits, grid, (z1, y1, x1), f1)
    gx, gy, gz = (a + t * (b - a) for a, b in zip(g0, g1))
    nx, ny, nz = -gx, -gy, -(gz / Z_SCALE)  # outward = down the gradient; z scaled to crop units
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    safe = np.where(norm > 0, norm, np.float32(1.0))
    normals = np.stack([nx / safe, ny / safe, nz / safe], axis=1)
    normals[norm == 0] = 0
    return np.stack([px, py, pz], axis=1).astype(np.float32), normals.astype(np.float32)


def triangles(grid: Grid, cls: Classification, active_ids: np.ndarray, vert_offsets: np.ndarray) -> np.ndarray:
    """Phase 5: (F, 3) int32 vertex ids, cell by cell in active_ids order, table order within a cell."""
    rows = triangle_table()[cls.cases[active_ids]]  # (n_active, ROW)
    valid = rows >= 0
    cell = np.broadcast_to(active_ids[:, None], rows.shape)[valid].astype(np.int64)
    edge = rows[valid].astype(np.int64)
    dx, dy, dz = EDGE_OWNER[edge].T
    owner = cell + (dz * grid.height + dy) * grid.width + dx
    axis = EDGE_AXIS[edge]
    below = cls.edges[owner] & ((1 << axis) - 1).astype(np.uint8)  # the owner's lower-axis edges come first
    ids = vert_offsets[owner] + VERTEX_COUNTS[below]
    return ids.astype(np.int32).reshape(-1, 3)


@dataclass
class TwinResult:
    """Every phase's output (for comparing with the kernel) and the mesh arrays."""

    grid: Grid
    classification: Classification
    vert_offsets: np.ndarray
    active_offsets: np.ndarray
    tri_offsets: np.ndarray
    active_ids: np.ndarray
    positions: np.ndarray
    normals: np.ndarray
    faces: np.ndarray

    def to_mesh(self):
        from realtime_vrn.surface.mesh import Mesh

        if len(self.faces) == 0:
            return Mesh.empty()
        return Mesh(vertices=self.positions, faces=self.faces, normals=self.normals, colors=None, frame="crop")


def marching_cubes_twin(logits: np.ndarray, upsample: int = RELEASE_UPSAMPLE) -> TwinResult:
    """Run every phase on (D, h, w) float32 logits; see the module docstring for the contract."""
    logits = _check_logits(logits)
    grid = make_grid(logits.shape, upsample)
    cls = classify(logits, grid)
    vert_offsets = exclusive_scan(cls.nverts)
    active_offsets = exclusive_scan(cls.active)
    tri_offsets = exclusive_scan(cls.ntris)
    active_ids = compact(cls.active)
    positions, normals = vertices(logits, grid, cls.edges)
    faces = triangles(grid, cls, active_ids, vert_offsets)
    return TwinResult(grid, cls, vert_offsets, active_offsets, tri_offsets, active_ids, positions, normals, faces)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    """(D, h, w) float32 NumPy logits of any size (the shared contract), made C-contiguous."""
    if not isinstance(logits, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(logits).__name__}")
    return check_logits(np.ascontiguousarray(logits), (None, None, None))
