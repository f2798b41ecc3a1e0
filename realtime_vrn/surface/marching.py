"""The CPU surface stage compiled with numba: marching cubes on the cubes the coarse grid says the surface crosses.

:class:`NumbaSurfaceExtractor` has the :class:`~realtime_vrn.surface.extract.SurfaceExtractor` contract
(``extract(logits) -> Mesh`` in the crop frame) and marches the same field as the GPU kernel
(``surface/gpu/marching_cubes.cu``) and its NumPy twin (:mod:`realtime_vrn.surface.gpu.mc_twin`): the release's bilinear
upsample (align_corners=True) of every depth slice with the twin's float32 arithmetic, the tables of
:mod:`realtime_vrn.surface.gpu.mc_tables`, vertices linearly interpolated along the crossed edges, normals from the
central-difference gradient. One compiled pass per part of the cube layers (:func:`_march_layers`):

1. the low-resolution cells whose 8 logits straddle 0 (logit > 0 is inside; one int64 of inside bits per
   low-res row, so that a row of cells is tested at once, and one int64 of straddling cells per cell row),
   a non-finite check, and per cube layer the box of full-resolution cubes that overlap them (the conservative
   bound of :mod:`realtime_vrn.surface.extract`: a cube can only hold a crossing if a low-resolution cell it
   overlaps straddles 0);
2. layer by layer, the upsampled node planes the layer reads (its two, and one on either side for the
   gradient), each computed once over its box (separable: along x on the low-res rows, then along y) into a
   ring of four planes; the full volume is never stored;
3. per cube row, the runs of straddling cells over it, and every cube of their footprints (a quarter of the
   box on a face): its case from its corners' inside bits (a run at a time), its triangles from the table;
4. one vertex per crossed edge, made when a cube first needs it and shared through the edge's owner node
   (its lower corner); a vertex that falls
   exactly on a node (a logit exactly 0, or rounding) is shared by every edge through that node, and the
   triangles that collapse are dropped, so the mesh is indexed like the other extractors'.

On two cores the layers are split in two parts of about equal work, the upper marched on a worker thread while
the calling thread marches the lower (the kernel releases the GIL); the parts share one node plane, the seam,
whose vertices both make: :func:`_weld` gives the upper part's the lower part's ids. The same mesh as one thread,
bit for bit and in the same order (one thread makes the lower layers' vertices and faces first, in the same
order, and the seam's with them), in ~60% of its time on the shipped model's faces.

The surface is the twin's (the same triangles; positions and normals equal up to float rounding), closed
inside the volume and open where the solid meets its border, wound outwards. Against scikit-image's Lewiner
marching cubes on the full volume it differs only in how ambiguous cells are cut (a fraction of a voxel).

numba compiles the kernel on first use (seconds, once per machine: ``cache=True`` keeps it beside this module
or in numba's user cache); :meth:`NumbaSurfaceExtractor.warm_up` does it at start-up, not on the first frame.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from realtime_vrn.backends.common import cpu_threads
from realtime_vrn.contracts import check_logits
from realtime_vrn.surface.gpu.mc_tables import CORNER_OFFSETS, EDGE_AXIS, EDGE_CORNERS, triangle_table
from realtime_vrn.surface.gpu.mc_twin import linear_tables
from realtime_vrn.model.network import VRNConfig

from ._bits import leading_zeros, popcount, trailing_zeros
from .mesh import Mesh

#: Crop-frame z per depth index (the VRN volumes are twice as deep in z as in x and y).
Z_SCALE = np.float32(0.5)
#: Output buffer rows before the first frame, and their room over the largest mesh so far.
FIRST_CAPACITY = 4096
GROWTH = 1.25
#: Kernel status codes: done, logits not finite, output buffers too small (call again with larger ones).
OK, NOT_FINITE, FULL = 0, 1, 2
#: Node planes held at once (slot = plane & (RING - 1)): a cube layer's two and one on either side
#: (gradients).
RING = 4
#: Vertex ids kept per node (slot = plane % 2): on its +x, +y, +z edges, and exactly on the node.
VID_NODE = 3
#: Widest low-res grid: a row of inside flags is one int64 (the release's and the shipped model's grids are 48).
MAX_GRID = 63
#: Straddling low-res cells in a frame below which it is marched whole on one thread: the second thread's
#: hand-off costs ~0.1 ms, more than half of a small surface's work (the shipped model's face: ~9,000 cells).
MIN_SPLIT_CELLS = 1000
#: Per-layer box layout in ``boxes``: first / last cube row (y), first / last cube column (x); empty: y0 > y1.
Y0, Y1, X0, X1 = 0, 1, 2, 3


def _footprints(n_low: int, n_full: int) -> np.ndarray:
    """(2, n_low - 1) int32: for each low-res cell j along one axis, the first and last full-res cube overlapping it.

    Full-res cube k (nodes k, k+1) reads low-res nodes i0[k] .. i1[k+1] (zero weights counted, conservative),
    so it overlaps low-res cells lo[k] = i0[k] .. hi[k] = i1[k+1] - 1 (clipped to the cells). lo and hi never
    decrease with k, so the cubes overlapping cell j are one contiguous run.
    """
    i0, i1, _, _ = linear_tables(n_low, n_full)
    lo = np.clip(i0[:-1], 0, n_low - 2)
    hi = np.clip(i1[1:] - 1, lo, n_low - 2)
    cells = np.arange(n_low - 1)
    first = np.searchsorted(hi, cells, side="left")  # first k with hi[k] >= j
    last = np.searchsorted(lo, cells, side="right") - 1  # last k with lo[k] <= j
    return np.stack([first, last]).astype(np.int32)


def _cells_over(footprints: np.ndarray, n_cubes: int) -> np.ndarray:
    """(2, n_cubes) int32: for each full-res cube along one axis, the first and last low-res cell whose
    footprint (:func:`_footprints`) holds it; the inverse of the footprints, contiguous since they never decrease."""
    k = np.arange(n_cubes)[:, None]
    holds = (footprints[0][None, :] <= k) & (k <= footprints[1][None, :])  # (n_cubes, n_cells)
    first = np.argmax(holds, axis=1)
    last = holds.shape[1] - 1 - np.argmax(holds[:, ::-1], axis=1)
    none = ~holds.any(axis=1)
    first[none], last[none] = 0, -1
    return np.stack([first, last]).astype(np.int32)


def _axis_tables(n_low: int, n_full: int) -> tuple[np.ndarray, np.ndarray]:
    """(2, n_full) int32 low-res neighbours and (2, n_full) float32 weights of each full-res sample (the twin's)."""
    i0, i1, w0, w1 = linear_tables(n_low, n_full)
    return np.stack([i0, i1]).astype(np.int32), np.stack([w0, w1]).astype(np.float32)


def _case_edges() -> np.ndarray:
    """(256, 13) int8: per case, the number of edges its triangles use, then those edges (ascending)."""
    out = np.zeros((256, 13), np.int8)
    for case, row in enumerate(triangle_table()):
        used = np.unique(row[row >= 0])
        out[case, 0] = len(used)
        out[case, 1 : 1 + len(used)] = used
    return out


def _edge_table() -> np.ndarray:
    """(12, 3) int64: per cell edge, its lower corner (the owner), its other corner, and its axis (0 x, 1 y, 2 z)."""
    return np.column_stack([EDGE_CORNERS[:, 0], EDGE_CORNERS[:, 1], EDGE_AXIS]).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _straddling(logits, z_first, z_stop, inside, foot_y, foot_x, boxes, straddle_rows, layer_cells):
    """Phase 1 for cube layers z_first .. z_stop - 1: their straddling low-res cells, one int64 per cell row in
    ``straddle_rows`` (bit i: cell i), their count in ``layer_cells``, and each layer's box of candidate cubes
    (those overlapping a straddling cell) in ``boxes``, from the low-res inside flags of planes z_first ..
    z_stop packed one row (z, y) per int64 (bit x: logit > 0; hence w <= MAX_GRID). Returns False when a
    logit of those planes or of the one either side (the gradients read them) is NaN or infinite."""
    d, h, w = logits.shape
    finite = 0
    for z in range(z_first, z_stop + 1):
        for y in range(h):
            bits = 0
            for x in range(w):
                v = logits[z, y, x]
                bits |= (1 if v > 0 else 0) << x
                finite += v - v == 0  # NaN and infinities give NaN
            inside[z, y] = bits
    for z in (z_first - 1, z_stop + 1):  # the planes either side, read for the gradients
        if 0 <= z < d:
            for y in range(h):
                for x in range(w):
                    finite += logits[z, y, x] - logits[z, y, x] == 0
    if finite != (min(z_stop + 1, d - 1) + 1 - max(z_first - 1, 0)) * h * w:
        return False
    cells = (1 << (w - 1)) - 1  # bit i: cell i, between nodes i and i + 1
    for z in range(z_first, z_stop):
        boxes[z, Y0], boxes[z, Y1], boxes[z, X0], boxes[z, X1] = 1 << 30, -1, 1 << 30, -1
        layer_cells[z] = 0
        for j in range(h - 1):
            a, b, c, e = inside[z, j], inside[z, j + 1], inside[z + 1, j], inside[z + 1, j + 1]
            some, every = a | b | c | e, a & b & c & e  # per node column of the four rows
            straddle = (some | (some >> 1)) & ~(every & (every >> 1)) & cells
            straddle_rows[z, j] = straddle
            if straddle == 0:
                continue
            layer_cells[z] += popcount(straddle)
            first, last = trailing_zeros(straddle), 63 - leading_zeros(straddle)  # the row's first and last cell
            boxes[z, Y0] = min(boxes[z, Y0], foot_y[0, j])
            boxes[z, Y1] = max(boxes[z, Y1], foot_y[1, j])
            boxes[z, X0] = min(boxes[z, X0], foot_x[0, first])  # footprints never decrease along x
            boxes[z, X1] = max(boxes[z, X1], foot_x[1, last])
    return True


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"})  # see _march_cubes
def _plane(logits, zp, z_first, z_stop, boxes, iy, wy, ix, wx, rows, out):
    """Phase 2: node plane zp of the upsampled field into ``out`` (H, W), over the boxes of the cube layers
    (of z_first .. z_stop - 1) that read it (zp - 2 .. zp + 1: corners and gradient stencils) grown by one
    node. Arithmetic of the twin's ``field_at``: r = wx0 * a + wx1 * b along x, then wy0 * r0 + wy1 * r1 along
    y. Returns False when no layer reads the plane."""
    big_h, big_w = iy.shape[1], ix.shape[1]
    y0, y1, x0, x1 = 1 << 30, -1, 1 << 30, -1
    for z in range(max(zp - 2, z_first), min(zp + 1, z_stop - 1) + 1):
        if boxes[z, Y1] >= boxes[z, Y0]:
            y0, y1 = min(y0, boxes[z, Y0]), max(y1, boxes[z, Y1])
            x0, x1 = min(x0, boxes[z, X0]), max(x1, boxes[z, X1])
    if y1 < y0:
        return False
    y0, y1 = max(y0 - 1, 0), min(y1 + 2, big_h - 1)  # cube rows y0..y1 -> node rows y0..y1 + 1, grown by one
    x0, x1 = max(x0 - 1, 0), min(x1 + 2, big_w - 1)
    i0, i1, w0, w1 = ix[0], ix[1], wx[0], wx[1]  # 1-D views hoisted out of the loops: they vectorise
    for r in range(iy[0, y0], iy[1, y1] + 1):
        src, dst = logits[zp, r], rows[r]
        for x in range(x0, x1 + 1):
            dst[x] = w0[x] * src[i0[x]] + w1[x] * src[i1[x]]
    for y in range(y0, y1 + 1):
        below, above, dst = rows[iy[0, y]], rows[iy[1, y]], out[y]
        v0, v1 = wy[0, y], wy[1, y]
        for x in range(x0, x1 + 1):
            dst[x] = v0 * below[x] + v1 * above[x]
    return True


@numba.njit(cache=True, nogil=True)
def _march_layers(z_first, z_stop, seam, logits, iy, wy, ix, wx, foot_y, foot_x, row_cells, table, case_edges,
                  corner_z, corner_flat, edges, corner_x, corner_y, boxes, straddle_rows, layer_cells, inside, rows,
                  planes, vstamp, vids, verts, norms, faces, seam_keys):
    """The surface through cube layers z_first .. z_stop - 1 (phases 1-4, see the module docstring). Returns
    (status, n_verts, n_faces, n_dropped, n_seam): the part's mesh is in the first rows of verts, norms and
    faces (n_dropped faces collapsed onto a node were left out; their vertices may be unused), or status is
    FULL (the buffers were too small) or NOT_FINITE. Another part may run at the same time on other layers:
    the per-layer arrays (boxes, straddle_rows, layer_cells) are shared, written only for these layers;
    the rest (inside onwards) must be this part's own.

    seam: a node plane (the part's first, when another part marches the layers below) whose vertices on its
    x and y edges and nodes are also made by that part; each is listed in ``seam_keys`` as (vertex id, key),
    key = 4 * (y * W + x) + axis (0 x, 1 y) or + VID_NODE (on the node), for :func:`_weld`. -1: none.

    The node arrays are flat (index: slot * H * W + y * W + x) so that each access costs one index; a corner's
    offset in its plane is ``corner_flat`` (``corner_x``, ``corner_y`` along each axis), its plane ``corner_z``;
    ``edges`` rows hold an edge's owner corner, other corner and axis (see :func:`_edge_table`); ``row_cells``
    the low-res cell rows over each cube row (:func:`_cells_over`).
    """
    if not _straddling(logits, z_first, z_stop, inside, foot_y, foot_x, boxes, straddle_rows, layer_cells):
        return NOT_FINITE, 0, 0, 0, 0
    return _march_cubes(z_first, z_stop, seam, logits, iy, wy, ix, wx, foot_x, row_cells, table, case_edges,
                        corner_z, corner_flat, edges, corner_x, corner_y, boxes, straddle_rows, rows, planes, vstamp,
                        vids, verts, norms, faces, seam_keys)


# Phases 2-4 assume finite logits (the caller checked every plane they read): fast-math flags that cannot change
# a finite result (no NaN, no infinity, the sign of a zero ignored: a normal's zero component may lose its
# sign), never "contract" or "reassoc", which would round differently from the twin.
@numba.njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"})
def _march_cubes(z_first, z_stop, seam, logits, iy, wy, ix, wx, foot_x, row_cells, table, case_edges, corner_z,
                 corner_flat, edges, corner_x, corner_y, boxes, straddle_rows, rows, planes, vstamp, vids, verts,
                 norms, faces, seam_keys):
    """Phases 2-4 of :func:`_march_layers` (after :func:`_straddling`); its arguments and results."""
    d = logits.shape[0]
    big_h, big_w = iy.shape[1], ix.shape[1]
    hw = big_h * big_w
    ring = planes.reshape(RING, big_h, big_w)
    vstamp[:] = -1
    nv = 0
    nf = 0
    dropped = 0
    n_seam = 0
    local = np.empty(12, np.int32)  # vertex id per edge of the current cube
    grad = np.empty((2, 3), np.float32)
    next_plane = 0
    for z in range(z_first, z_stop):
        if boxes[z, Y1] < boxes[z, Y0]:  # no straddling low-res cell in this layer
            continue
        next_plane = max(next_plane, z - 1)  # the planes the layer reads: corners z, z + 1; gradients z - 1, z + 2
        while next_plane <= min(z + 2, d - 1):
            _plane(logits, next_plane, z_first, z_stop, boxes, iy, wy, ix, wx, rows, ring[next_plane & (RING - 1)])
            next_plane += 1
        base0, base1 = (z & (RING - 1)) * hw, ((z + 1) & (RING - 1)) * hw
        for y in range(boxes[z, Y0], boxes[z, Y1] + 1):  # the cubes that overlap a straddling low-res cell
            mask = np.int64(0)  # the straddling low-res cells (bit i: cell i along x) of the cell rows over y
            for j in range(row_cells[0, y], row_cells[1, y] + 1):
                mask |= straddle_rows[z, j]
            if mask == 0:
                continue
            n00, n10 = base0 + y * big_w, base0 + (y + 1) * big_w
            n01, n11 = base1 + y * big_w, base1 + (y + 1) * big_w
            done = -1  # the last cube column marched in this row
            while mask != 0:  # each run of consecutive straddling cells i..k: the cubes their footprints cover
                i = trailing_zeros(mask)
                k = i + trailing_zeros(~(mask >> i)) - 1  # mask < 2^62: its complement has a zero bit above i
                mask &= ~((np.int64(2) << k) - 1)
                xa, xb = max(foot_x[0, i], done + 1), foot_x[1, k]  # footprints never decrease along x
                done = xb
                a = 1 if planes[n00 + xa] > 0 else 0  # the node column on the cube's low-x side
                b = 1 if planes[n10 + xa] > 0 else 0
                c = 1 if planes[n01 + xa] > 0 else 0
                e = 1 if planes[n11 + xa] > 0 else 0
                low = a | (b << 3) | (c << 4) | (e << 7)  # corners 0, 3, 4, 7
                for x in range(xa, xb + 1):
                    a = 1 if planes[n00 + x + 1] > 0 else 0  # the high-x side: corners 1, 2, 5, 6
                    b = 1 if planes[n10 + x + 1] > 0 else 0
                    c = 1 if planes[n01 + x + 1] > 0 else 0
                    e = 1 if planes[n11 + x + 1] > 0 else 0
                    case = low | (a << 1) | (b << 2) | (c << 5) | (e << 6)
                    low = a | (b << 3) | (c << 4) | (e << 7)
                    if case == 0 or case == 255:
                        continue
                    r = y * big_w + x
                    for q in range(1, case_edges[case, 0] + 1):  # the cube's crossed edges: each vertex made once
                        e = case_edges[case, q]
                        c0, c1, axis = edges[e, 0], edges[e, 1], edges[e, 2]
                        zo = z + corner_z[c0]
                        owner = (zo & 1) * hw + r + corner_flat[c0]  # the edge's lower corner, in the vid ring
                        if vstamp[owner] != zo:  # first use of this node's vertex ids in this plane
                            vstamp[owner] = zo
                            for k in range(4):
                                vids[4 * owner + k] = -1
                        vid = vids[4 * owner + axis]
                        if vid < 0:
                            f0 = planes[(base1 if corner_z[c0] else base0) + r + corner_flat[c0]]
                            f1 = planes[(base1 if corner_z[c1] else base0) + r + corner_flat[c1]]
                            t = f0 / (f0 - f1)  # opposite sides of 0, never equal
                            xo, yo = x + corner_x[c0], y + corner_y[c0]
                            px, py, pz = np.float32(xo), np.float32(yo), np.float32(zo)
                            if axis == 0:
                                start, px = px, px + t
                                along = px
                            elif axis == 1:
                                start, py = py, py + t
                                along = py
                            else:
                                start, pz = pz, pz + t
                                along = pz
                            # On a node (t rounds to 0 or 1, e.g. a logit exactly 0): one vertex for every edge
                            # through that node (its id kept with the node; both ends' vids are in this layer).
                            vid = nv
                            key = 4 * (r + corner_flat[c0]) + axis if zo == seam and axis != 2 else -1
                            if along == start or along == start + np.float32(1.0):
                                cn = c0 if along == start else c1
                                zn = z + corner_z[cn]
                                node = (zn & 1) * hw + r + corner_flat[cn]
                                if vstamp[node] != zn:
                                    vstamp[node] = zn
                                    for k in range(4):
                                        vids[4 * node + k] = -1
                                if vids[4 * node + VID_NODE] >= 0:
                                    vid = vids[4 * node + VID_NODE]
                                else:
                                    vids[4 * node + VID_NODE] = nv
                                key = 4 * (r + corner_flat[cn]) + VID_NODE if zn == seam else -1
                            if vid == nv:
                                if nv == verts.shape[0] or n_seam == seam_keys.shape[0]:
                                    return FULL, nv, nf, dropped, n_seam
                                if key >= 0:
                                    seam_keys[n_seam, 0], seam_keys[n_seam, 1] = nv, key
                                    n_seam += 1
                                verts[nv, 0], verts[nv, 1], verts[nv, 2] = px, py, pz * Z_SCALE
                                for end in range(2):  # gradients at both ends: the twin's central differences,
                                    ce = c0 if end == 0 else c1  # one-sided at the border
                                    xe = x + corner_x[ce]
                                    ye = y + corner_y[ce]
                                    ze = z + corner_z[ce]
                                    pe = (ze & (RING - 1)) * hw + ye * big_w + xe
                                    here = planes[pe]
                                    if xe == 0:
                                        grad[end, 0] = planes[pe + 1] - here
                                    elif xe == big_w - 1:
                                        grad[end, 0] = here - planes[pe - 1]
                                    else:
                                        grad[end, 0] = (planes[pe + 1] - planes[pe - 1]) * np.float32(0.5)
                                    if ye == 0:
                                        grad[end, 1] = planes[pe + big_w] - here
                                    elif ye == big_h - 1:
                                        grad[end, 1] = here - planes[pe - big_w]
                                    else:
                                        grad[end, 1] = (planes[pe + big_w] - planes[pe - big_w]) * np.float32(0.5)
                                    above = ((ze + 1) & (RING - 1)) * hw + ye * big_w + xe
                                    below = ((ze - 1) & (RING - 1)) * hw + ye * big_w + xe
                                    if ze == 0:
                                        grad[end, 2] = planes[above] - here
                                    elif ze == d - 1:
                                        grad[end, 2] = here - planes[below]
                                    else:
                                        grad[end, 2] = (planes[above] - planes[below]) * np.float32(0.5)
                                nx = -(grad[0, 0] + t * (grad[1, 0] - grad[0, 0]))  # outward = down the gradient
                                ny = -(grad[0, 1] + t * (grad[1, 1] - grad[0, 1]))
                                nz = -((grad[0, 2] + t * (grad[1, 2] - grad[0, 2])) / Z_SCALE)  # z in crop units
                                norm = np.sqrt(nx * nx + ny * ny + nz * nz)
                                if norm > 0:
                                    norms[nv, 0], norms[nv, 1], norms[nv, 2] = nx / norm, ny / norm, nz / norm
                                else:
                                    norms[nv, 0], norms[nv, 1], norms[nv, 2] = 0, 0, 0
                                nv += 1
                            vids[4 * owner + axis] = vid
                        local[e] = vid
                    t3 = 0
                    while t3 < table.shape[1] and table[case, t3] >= 0:
                        v0, v1, v2 = local[table[case, t3]], local[table[case, t3 + 1]], local[table[case, t3 + 2]]
                        t3 += 3
                        if v0 == v1 or v1 == v2 or v0 == v2:
                            dropped += 1  # collapsed onto a node shared by two of its edges
                            continue
                        if nf == faces.shape[0]:
                            return FULL, nv, nf, dropped, n_seam
                        faces[nf, 0], faces[nf, 1], faces[nf, 2] = v0, v1, v2
                        nf += 1
    return OK, nv, nf, dropped, n_seam


@numba.njit(cache=True, nogil=True)
def _weld(seam, nv, nf, verts, norms, faces, vstamp, vids, nv_b, nf_b, verts_b, norms_b, faces_b, seam_keys,
          n_seam):
    """Append part B's mesh (the layers above ``seam``) to part A's (the layers below), in A's buffers: B's
    vertices on the seam plane's edges and nodes take A's ids for the same edge or node (A's ``vstamp`` and
    ``vids`` still hold its last plane, the seam), the others new ids after A's, in B's order. Returns
    (status, n_verts, n_faces); FULL when A's buffers cannot hold both."""
    hw = vstamp.shape[0] // 2
    slot = (seam & 1) * hw
    index = np.full(nv_b, -1, np.int32)
    for s in range(n_seam):
        node, kind = slot + seam_keys[s, 1] // 4, seam_keys[s, 1] % 4
        if vstamp[node] == seam and vids[4 * node + kind] >= 0:
            index[seam_keys[s, 0]] = vids[4 * node + kind]
    n = nv
    for v in range(nv_b):
        if index[v] < 0:
            if n == verts.shape[0]:
                return FULL, nv, nf
            index[v] = n
            for c in range(3):
                verts[n, c] = verts_b[v, c]
                norms[n, c] = norms_b[v, c]
            n += 1
    if nf + nf_b > faces.shape[0]:
        return FULL, nv, nf
    for f in range(nf_b):
        for m in range(3):
            faces[nf + f, m] = index[faces_b[f, m]]
    return OK, n, nf + nf_b


@numba.njit(cache=True, nogil=True)
def _drop_unused(verts, norms, faces, nv, nf):
    """Remove vertices no face uses (only collapsed faces used them), in place, order kept; returns the count."""
    new_index = np.full(nv, -1, np.int32)
    for f in range(nf):
        for m in range(3):
            new_index[faces[f, m]] = 0
    kept = 0
    for v in range(nv):
        if new_index[v] == 0:
            new_index[v] = kept
            for c in range(3):
                verts[kept, c] = verts[v, c]
                norms[kept, c] = norms[v, c]
            kept += 1
    if kept < nv:
        for f in range(nf):
            for m in range(3):
                faces[f, m] = new_index[faces[f, m]]
    return kept


class _Part:
    """One thread's working buffers (see :func:`_march_layers`) for (D, g, g) logits and (S, S) node planes."""

    def __init__(self, depth: int, grid: int, size: int) -> None:
        self.inside = np.empty((depth, grid), np.int64)  # a bit per low-res node: see _straddling
        self.rows = np.empty((grid, size), np.float32)
        self.planes = np.empty(RING * size * size, np.float32)  # flat: see _march_layers
        self.vstamp = np.empty(2 * size * size, np.int32)
        self.vids = np.empty(2 * size * size * 4, np.int32)
        self.seam_keys = np.empty((3 * size * size, 2), np.int32)  # at most every x, y edge and node of a plane


class NumbaSurfaceExtractor:
    """The p = 0.5 iso-surface of one frame's low-resolution logits, as a crop-frame :class:`Mesh` (numba).

    Construct once per model configuration (cheap: the upsample tables and the working buffers, ~1 MB per
    thread for the shipped model), :meth:`warm_up` at start-up (compiles or loads the kernel), then
    :meth:`extract` per frame. Buffers are reused between calls, so use one extractor per thread; the kernel
    releases the GIL.

    threads: 1 marches every cube layer on the calling thread; 2 splits the layers in two parts of about equal
    work (the straddling low-res cells) and marches the upper part on a worker thread at the same time, then
    welds the two along their shared node plane (the same arrays as one thread, bit for bit). None: 2 where the
    process may use two cores or more (``cpu_threads``: its affinity, at most ``OMP_NUM_THREADS``, which a batch
    worker sets to its CPUs); see :data:`MIN_SPLIT_CELLS` for when a frame is marched whole anyway.
    """

    name = "numba"
    on_device = False  # takes host logits (the SurfaceStage protocol, surface/extractors.py)

    def __init__(self, cfg: VRNConfig, threads: int | None = None) -> None:
        self.cfg = cfg
        self.size = cfg.input_size
        self.grid = cfg.grid_size
        self.depth = cfg.depth_bins
        if self.grid > MAX_GRID:
            raise ValueError(f"the numba extractor takes logit grids up to {MAX_GRID} wide, got {self.grid}")
        if threads is None:
            threads = min(2, cpu_threads())
        if threads not in (1, 2):
            raise ValueError(f"expected 1 or 2 surface threads, got {threads}")
        self.threads = threads
        self._iy, self._wy = _axis_tables(self.grid, self.size)
        self._ix, self._wx = self._iy, self._wy  # square crops
        self._foot = _footprints(self.grid, self.size)  # first / last full-res cube per low-res cell
        self._row_cells = _cells_over(self._foot, self.size - 1)  # first / last low-res cell per full-res cube
        self._tables = (triangle_table(), _case_edges(), CORNER_OFFSETS[:, 2].astype(np.int64),
                        (CORNER_OFFSETS[:, 1] * self.size + CORNER_OFFSETS[:, 0]).astype(np.int64), _edge_table(),
                        CORNER_OFFSETS[:, 0].astype(np.int64), CORNER_OFFSETS[:, 1].astype(np.int64))
        d, g, s = self.depth, self.grid, self.size
        self._boxes = np.empty((d - 1, 4), np.int32)
        self._straddle_rows = np.empty((d - 1, g - 1), np.int64)  # a bit per straddling low-res cell
        self._layer_cells = np.zeros(d - 1, np.int64)  # straddling low-res cells per cube layer
        self._parts = [_Part(d, g, s) for _ in range(threads)]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="surface") if threads > 1 else None
        self._seam = self.depth // 2 if threads > 1 else -1  # the first frame's split; then see _next_seam
        self._capacity = (FIRST_CAPACITY, 2 * FIRST_CAPACITY)  # vertices, faces of the next frame's buffers

    @property
    def logits_shape(self) -> tuple[int, int, int]:
        return (self.depth, self.grid, self.grid)

    def warm_up(self) -> "NumbaSurfaceExtractor":
        """Compile (or load from numba's cache) the kernel now, on a sphere of this model's shape (large enough
        to be split between the threads)."""
        d, g = self.depth, self.grid
        z, y, x = np.ogrid[:d, :g, :g]
        sphere = (min(d, g) / 2.5) ** 2 - ((z - d / 2) ** 2 + (y - g / 2) ** 2 + (x - g / 2) ** 2)
        self.extract(sphere.astype(np.float32))
        return self

    def describe(self) -> str:
        return "numba marching cubes" + (f" on {self.threads} threads" if self.threads > 1 else "")

    def asarray(self, logits) -> np.ndarray:
        """The host array :meth:`extract` takes (the SurfaceStage protocol)."""
        return np.asarray(logits)

    def extract(self, logits) -> Mesh:
        """logits: (D, h, w) float32 (a (1, D, h, w) batch of one is accepted), ordered (z, y, x), finite.

        Returns the crop-frame mesh (see :class:`Mesh`): x, y crop pixels, z = depth index * 0.5, outward
        winding and unit outward normals, no colours. An empty or full volume gives ``Mesh.empty()``.
        """
        grid = check_logits(logits, self.logits_shape, cast=True)  # the kernel checks finiteness
        seam = self._seam
        while True:
            n_verts, n_faces = self._capacity
            if seam < 0:
                verts, norms, faces = _buffers(n_verts, n_faces)
                status, nv, nf, dropped, _ = self._march(grid, 0, self.depth - 1, -1, self._parts[0], verts, norms,
                                                         faces)
            else:  # the layers from the seam up on the worker, those below here, then one mesh
                upper = _buffers(n_verts, n_faces)
                future = self._pool.submit(self._march, grid, seam, self.depth - 1, seam, self._parts[1], *upper)
                verts, norms, faces = _buffers(n_verts, n_faces)
                try:
                    status, nv, nf, dropped, _ = self._march(grid, 0, seam, -1, self._parts[0], verts, norms, faces)
                finally:
                    status_b, nv_b, nf_b, dropped_b, n_seam = future.result()
                if status == OK and status_b == OK:
                    lower = self._parts[0]
                    status, nv, nf = _weld(seam, nv, nf, verts, norms, faces, lower.vstamp, lower.vids, nv_b, nf_b,
                                           *upper, self._parts[1].seam_keys, n_seam)
                    dropped += dropped_b
                else:  # not finite wherever it was found, else one part's buffers were too small
                    status = NOT_FINITE if NOT_FINITE in (status, status_b) else FULL
            if status != FULL:
                break
            self._capacity = (2 * n_verts, 2 * n_faces)  # rare: a mesh larger than any before
        if status == NOT_FINITE:
            raise ValueError("logits contain NaN or infinite values")
        self._seam = self._next_seam()
        if dropped:
            nv = _drop_unused(verts, norms, faces, nv, nf)
        self._capacity = (max(self._capacity[0], int(nv * GROWTH)), max(self._capacity[1], int(nf * GROWTH)))
        if nf == 0:
            return Mesh.empty()
        return Mesh(vertices=verts[:nv], faces=faces[:nf], normals=norms[:nv], colors=None, frame="crop")

    def _next_seam(self) -> int:
        """The node plane where the second thread's part of the next frame starts: the first cube layer with half
        of this frame's straddling cells below it (frames of a video change little; a poor split only costs
        time); -1: march it whole (one thread, or too little work to split)."""
        if self.threads < 2:
            return -1
        cumulative = np.cumsum(self._layer_cells)
        if cumulative[-1] < MIN_SPLIT_CELLS:
            return -1
        seam = int(np.searchsorted(cumulative, cumulative[-1] / 2)) + 1
        return seam if 0 < seam < self.depth - 1 else -1

    def _march(self, grid: np.ndarray, z_first: int, z_stop: int, seam: int, part: _Part, verts: np.ndarray,
               norms: np.ndarray, faces: np.ndarray) -> tuple[int, int, int, int, int]:
        return _march_layers(z_first, z_stop, seam, grid, self._iy, self._wy, self._ix, self._wx, self._foot,
                             self._foot, self._row_cells, *self._tables, self._boxes, self._straddle_rows,
                             self._layer_cells, part.inside, part.rows, part.planes, part.vstamp, part.vids, verts,
                             norms, faces, part.seam_keys)


def _buffers(n_verts: int, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised (n_verts, 3) float32 vertices and normals, (n_faces, 3) int32 faces for one frame's mesh."""
    return np.empty((n_verts, 3), np.float32), np.empty((n_verts, 3), np.float32), np.empty((n_faces, 3), np.int32)
