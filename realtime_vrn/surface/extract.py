"""Fast CPU iso-surface of the network's low-resolution logits (vrn-reference.md §1, step 5).

The release turns the (D, h, w) hourglass logits into probabilities with a bilinear x4 upsample
(align_corners=True) and a sigmoid, and the surface is the p = 0.5 level set, i.e. logit = 0 (the sigmoid is
monotone, so it is never evaluated). The face fills a small part of the (D, S, S) = 200 x 192 x 192 volume,
so instead of upsampling everything and marching every cube, :class:`SurfaceExtractor`

1. finds the low-resolution cells whose 8 logits straddle 0. A bilinear value is a convex combination of the
   low-resolution values around it, so a full-resolution cube can only hold a crossing if one of the
   (at most 2 x 2) low-resolution cells it overlaps straddles 0: this bound is conservative, never lossy;
2. evaluates the upsample (separable, two small matrix products with torch's exact align_corners weights)
   only on the nodes of those candidate cubes, slab by slab in depth, each slab with its own y / x rectangle
   (about a quarter of the volume for a face; never the whole 7.4M voxels), into a reused buffer;
3. runs scikit-image's Lewiner marching cubes on the bounding box of the slabs, masked to the cubes that do
   straddle the level (a few percent of the box): it skips every other cube and reads nothing but the 8
   corners of the cubes it marches (its normals are differences of those corners).

Every cube that holds a crossing is marched with the same 8 values as on the full volume, so the result is the
reference mesh (:mod:`realtime_vrn.surface.reference`) up to float rounding of the upsample (~2e-6 logits).
Like the reference, the surface is left open where the solid meets the volume's border (no padding): a face
cut by the crop edge, or a solid reaching the back plane, has a hole there. Marching cubes itself stays the
bulk of the time (~25 ms for an 80k-vertex face on one core).

This is the scikit-image extractor, the fallback without numba; the default CPU stage is
:mod:`realtime_vrn.surface.marching` (the registry: :mod:`realtime_vrn.surface.extractors`).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import marching_cubes

from realtime_vrn.contracts import check_logits
from realtime_vrn.model.network import VRNConfig

from .mesh import Mesh

#: The iso-level in logits: p = sigmoid(logit) = 0.5 <=> logit = 0.
LEVEL = 0.0
#: Crop-frame z per depth index: the training volumes were voxelised with z twice as deep as x and y.
Z_SCALE = 0.5
#: Cube layers per depth slab: each slab gets its own y / x rectangle, which skips about a third of a face's
#: bounding box (the back plane is wide, the nose narrow); thinner slabs gain little and cost Python overhead.
SLAB_CUBES = 16
#: Up to this many rows, _delete_rows copies the slices between them (np.delete builds a full-size mask).
FEW_ROWS = 64


def upsample_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix of 1-D linear interpolation with align_corners=True, as torch computes it.

    Row k holds the weights of output sample k (source position k * (n_in - 1) / (n_out - 1), computed in
    float32 like torch's CPU kernel) on the input samples: at most two non-zeros, non-negative, summing to 1.
    """
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
    src = np.arange(n_out, dtype=np.float32) * scale
    i0 = np.minimum(src.astype(np.int64), n_in - 1)  # truncation = floor, src >= 0
    lam = src - i0.astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    w[rows, i0] += np.float32(1.0) - lam
    w[rows, i1] += lam
    return w


def upsample(logits: np.ndarray, size: int) -> np.ndarray:
    """(D, h, w) float32 -> (D, size, size) float32: the release's bilinear upsample (align_corners=True).

    Same values as ``F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=True)[0]`` to float
    rounding. Materialises the whole volume: for tests and references, not for the per-frame path.
    """
    _, h, w = logits.shape
    wy, wx = upsample_weights(h, size), upsample_weights(w, size)
    return np.matmul(wy, np.matmul(logits, wx.T))


def _covering_cells(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each full-res cell k (nodes k, k+1) along one axis, the first and last low-res cell it overlaps.

    weights: (n_out, n_in) from :func:`upsample_weights`. The two nodes of cell k draw on the low-res nodes
    [first non-zero of row k, last non-zero of row k+1]; low-res cell j spans nodes j, j+1. Zero weights are
    counted as touching (conservative).
    """
    n_in = weights.shape[1]
    cols = np.arange(n_in)
    touched = weights != 0
    first = np.where(touched, cols, n_in).min(axis=1)
    last = np.where(touched, cols, -1).max(axis=1)
    lo = np.clip(first[:-1], 0, n_in - 2)
    hi = np.clip(last[1:] - 1, lo, n_in - 2)
    return lo, hi


def _straddling_cells(grid: np.ndarray) -> np.ndarray:
    """(nz, ny, nx) logits -> (nz-1, ny-1, nx-1) bool: cells with a corner above LEVEL and one at or below it.

    scikit-image counts a value equal to the level as outside, so these are exactly the cells that marching
    cubes triangulates. Counts the inside corners with uint8 sums (fewer passes than and/or reductions).
    """
    count = (grid > LEVEL).view(np.uint8)
    count = count[1:] + count[:-1]
    count = count[:, 1:] + count[:, :-1]
    count = count[:, :, 1:] + count[:, :, :-1]  # 0..8 inside corners per cell
    count -= 1  # uint8: 0 wraps to 255
    return count < 7  # 1..7 inside corners


def _span(active: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(active)
    return int(idx[0]), int(idx[-1])


def mesh_from_marching_cubes(
    verts_zyx: np.ndarray, faces: np.ndarray, normals_zyx: np.ndarray, offset_zyx=(0, 0, 0)
) -> Mesh:
    """scikit-image output on a (z, y, x) logit volume -> crop-frame :class:`Mesh`.

    verts_zyx:   (V, 3) float32 node-index coordinates (z, y, x) in the marched array, ``offset_zyx`` its origin
                 in the full (D, S, S) volume.
    faces:       (F, 3) indices as returned with gradient_direction="descent": inward-wound in (z, y, x), so
                 outward-wound once the axes are reversed to (x, y, z) (an odd permutation).
    normals_zyx: (V, 3) gradient normals in index space, pointing out of the solid (towards lower logits).
    Returns x, y crop pixels, z = depth index * Z_SCALE; normals corrected for that anisotropic scale (a normal
    transforms with the inverse transpose: its z component is divided by Z_SCALE) and renormalised.
    """
    oz, oy, ox = (float(o) for o in offset_zyx)
    # Column by column: strided numpy copies of (V, 3) views are several times slower.
    vertices = np.empty(verts_zyx.shape, np.float32)
    vertices[:, 0] = verts_zyx[:, 2] + ox
    vertices[:, 1] = verts_zyx[:, 1] + oy
    vertices[:, 2] = (verts_zyx[:, 0] + oz) * Z_SCALE
    # scikit-image's normals are unit length in index space: |(nx, ny, nz / Z_SCALE)|^2 = 1 + (Z_SCALE^-2 - 1) nz^2.
    nz = normals_zyx[:, 0]
    inv_len = 1.0 / np.sqrt(1.0 + (1.0 / Z_SCALE**2 - 1.0) * np.square(nz, dtype=np.float32))
    normals = np.empty(normals_zyx.shape, np.float32)
    normals[:, 0] = normals_zyx[:, 2] * inv_len
    normals[:, 1] = normals_zyx[:, 1] * inv_len
    normals[:, 2] = nz * (inv_len / Z_SCALE)
    faces_out = np.empty(faces.shape, np.int32)
    for i in range(3):
        faces_out[:, i] = faces[:, i]
    return Mesh(vertices=vertices, faces=faces_out, normals=normals, colors=None, frame="crop")


def _on_grid_nodes(vertices: np.ndarray) -> np.ndarray:
    """Indices of crop-frame vertices exactly on a grid node (x, y integers, z a multiple of Z_SCALE)."""
    x = vertices[:, 0]
    idx = np.flatnonzero(x == np.floor(x))  # narrow down column by column: fewer passes over V
    y = vertices[idx, 1]
    idx = idx[y == np.floor(y)]
    z = vertices[idx, 2] * np.float32(1.0 / Z_SCALE)  # exact: a power of two
    return idx[z == np.floor(z)]


def merge_duplicate_vertices(mesh: Mesh, only_on_nodes: bool = False) -> Mesh:
    """Merge vertices with identical coordinates, drop the faces that collapse, keep first-seen order.

    Marching cubes repeats vertices where logits are exactly at the level (plateaus of exact zeros), and a
    logit so close to the level that the interpolated position rounds onto a node puts a vertex there once per
    edge through the node (a few times per face mesh). Both leave degenerate triangles. With
    ``only_on_nodes`` only vertices on grid nodes are compared, which is enough when no logit is exactly at
    the level (~0.5 ms, ~2 ms when some merge); otherwise all vertices are (~15 ms for a face). Returns
    ``mesh`` itself when nothing coincides.
    """
    v = mesh.vertices
    candidates = _on_grid_nodes(v) if only_on_nodes else np.arange(len(v))
    if len(candidates) < 2:
        return mesh
    _, first, inverse = np.unique(v[candidates], axis=0, return_index=True, return_inverse=True)
    if len(first) == len(candidates):
        return mesh
    representative = candidates[first][inverse.reshape(-1)]
    moved = representative != candidates
    duplicates = np.sort(candidates[moved])
    keep = np.ones(len(v), bool)
    keep[duplicates] = False
    new_index = np.cumsum(keep, dtype=np.int32) - 1
    new_index[candidates[moved]] = new_index[representative[moved]]
    faces = new_index[mesh.faces]
    collapsed = np.flatnonzero(
        (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    )
    touched = np.unique(faces[collapsed])  # vertices of the collapsed faces: maybe used by no other face now
    faces = _delete_rows(faces, collapsed)
    merged = Mesh(
        vertices=_delete_rows(v, duplicates),
        faces=faces,
        normals=_delete_rows(mesh.normals, duplicates),
        colors=None if mesh.colors is None else _delete_rows(mesh.colors, duplicates),
        frame=mesh.frame,
    )
    # A vertex used only by collapsed faces needs several nodes exactly at the level around it, so it is
    # looked for only then (the check scans every face).
    if not only_on_nodes and len(touched) and not np.isin(touched, faces, kind="table").all():
        merged = _drop_unused_vertices(merged)
    return merged


def _delete_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.delete(array, rows, axis=0)`` for sorted rows, order kept; a few rows: one copy with a few gaps."""
    if len(rows) == 0:
        return array
    if len(rows) > FEW_ROWS:
        return np.delete(array, rows, axis=0)
    out = np.empty((len(array) - len(rows),) + array.shape[1:], array.dtype)
    src = dst = 0
    for row in rows.tolist():
        n = row - src
        out[dst : dst + n] = array[src:row]
        src, dst = row + 1, dst + n
    out[dst:] = array[src:]
    return out


def _drop_unused_vertices(mesh: Mesh) -> Mesh:
    used = np.zeros(len(mesh.vertices), bool)
    used[mesh.faces.ravel()] = True
    if used.all():
        return mesh
    new_index = np.cumsum(used, dtype=np.int64) - 1
    return Mesh(
        vertices=mesh.vertices[used],
        faces=new_index[mesh.faces].astype(np.int32),
        normals=mesh.normals[used],
        colors=None if mesh.colors is None else mesh.colors[used],
        frame=mesh.frame,
    )


class SurfaceExtractor:
    """The p = 0.5 iso-surface of one frame's low-resolution logits, as a crop-frame :class:`Mesh`.

    Construct once per model configuration (it precomputes the interpolation weights and the cube-to-cell
    tables), then call :meth:`extract` per frame. It reuses its working buffers between calls (they grow to the
    largest box seen, a few MB for a face), so use one extractor per thread.
    """

    name = "skimage"
    on_device = False  # takes host logits (the SurfaceStage protocol, surface/extractors.py)

    def __init__(self, cfg: VRNConfig) -> None:
        self.cfg = cfg
        self.size = cfg.input_size
        self.grid = cfg.grid_size
        self.depth = cfg.depth_bins
        #: (S, h) float32 interpolation matrix, the same for y and x (square crops).
        self.weights = upsample_weights(self.grid, self.size)
        #: per full-res cell (S-1,): the first / last low-res cell it overlaps.
        self.cell_lo, self.cell_hi = _covering_cells(self.weights)
        self._values = np.zeros(0, np.float32)  # box logits; outside the slabs' rectangles: stale, never read
        self._cubes = np.zeros(0, bool)  # marching-cubes mask

    @property
    def logits_shape(self) -> tuple[int, int, int]:
        return (self.depth, self.grid, self.grid)

    def warm_up(self) -> "SurfaceExtractor":
        """Nothing to compile (the registry's interface, :mod:`realtime_vrn.surface.extractors`)."""
        return self

    def asarray(self, logits) -> np.ndarray:
        """The host array :meth:`extract` takes (the SurfaceStage protocol)."""
        return np.asarray(logits)

    def describe(self) -> str:
        return "skimage marching cubes"

    def extract(self, logits) -> Mesh:
        """logits: (D, h, w) float32 (a (1, D, h, w) batch of one is accepted), ordered (z, y, x), finite.

        Returns the crop-frame mesh (see :class:`Mesh`): x, y crop pixels, z = depth index * 0.5, outward
        winding and unit outward normals, no colours. An empty or full volume gives ``Mesh.empty()``.
        """
        grid = check_logits(logits, self.logits_shape, cast=True)
        if not np.isfinite(grid).all():
            raise ValueError("logits contain NaN or infinite values")
        cells = _straddling_cells(grid)
        if not cells.any():
            return Mesh.empty()
        (z0, z1), slabs = self._slabs(cells)
        y0, y1 = min(r[1][0] for r in slabs), max(r[1][1] for r in slabs)
        x0, x1 = min(r[2][0] for r in slabs), max(r[2][1] for r in slabs)
        shape = (z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1)
        values, mask = self._buffers(shape)
        on_level = False  # logits exactly at the level: marching cubes repeats vertices there
        for (za, zb), (ya, yb), (xa, xb) in slabs:
            # Neighbouring slabs both write their shared node layer, with identical values.
            block = values[za - z0 : zb - z0 + 1, ya - y0 : yb - y0 + 1, xa - x0 : xb - x0 + 1]
            self._upsample_block(grid, (za, zb), (ya, yb), (xa, xb), out=block)
            on_level = on_level or bool((block == LEVEL).any())
            # Exact cube test; scikit-image reads a cube's mask at its far corner (z+1, y+1, x+1).
            mask[za - z0 + 1 : zb - z0 + 1, ya - y0 + 1 : yb - y0 + 1, xa - x0 + 1 : xb - x0 + 1] = (
                _straddling_cells(block)
            )
        if not mask.any():  # the conservative candidates held no actual crossing
            return Mesh.empty()
        verts, faces, normals, _ = marching_cubes(values, LEVEL, mask=mask, method="lewiner")
        mesh = mesh_from_marching_cubes(verts, faces, normals, offset_zyx=(z0, y0, x0))
        return merge_duplicate_vertices(mesh, only_on_nodes=not on_level)

    def _full_res_candidates(self, lowres_active: np.ndarray) -> np.ndarray:
        """(h-1,) bool per low-res cell -> (S-1,) bool per full-res cell that overlaps an active one."""
        return lowres_active[self.cell_lo] | lowres_active[self.cell_hi]

    def _slabs(self, cells: np.ndarray):
        """The box's depth node range and its slabs, each with the y / x node rectangle it needs.

        cells: (D-1, h-1, w-1) straddling low-res cells (a full-res cube at depth z lies in low-res cell z).
        Returns ((z0, z1), [((za, zb), (ya, yb), (xa, xb)), ...]): inclusive node ranges; consecutive slabs
        share their boundary node layer; slabs without candidate cubes are left out. Each rectangle holds the
        nodes of the slab's candidate cubes, which is all marching cubes reads (scikit-image derives the
        normals from each cube's own corners).
        """
        last_node = self.size - 1
        cz0, cz1 = _span(cells.any(axis=(1, 2)))
        slabs = []
        for za in range(cz0, cz1 + 1, SLAB_CUBES):
            zb = min(za + SLAB_CUBES - 1, cz1)  # cube layers za..zb, node layers za..zb + 1
            near = cells[za : zb + 1]
            if not near.any():
                continue
            (ya, yb), (xa, xb) = (_span(self._full_res_candidates(near.any(axis=axes))) for axes in ((0, 2), (0, 1)))
            slabs.append(((za, zb + 1), (ya, min(yb + 1, last_node)), (xa, min(xb + 1, last_node))))
        return (cz0, cz1 + 1), slabs

    def _buffers(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """C-contiguous (values, mask) views of the reused buffers; the mask is cleared, the values are not."""
        n = shape[0] * shape[1] * shape[2]
        if n > self._values.size:
            self._values = np.zeros(n, np.float32)
            self._cubes = np.zeros(n, bool)
        mask = self._cubes[:n].reshape(shape)
        mask.fill(False)
        return self._values[:n].reshape(shape), mask

    def _upsample_block(self, grid: np.ndarray, zs, ys, xs, out: np.ndarray) -> None:
        """Write the upsampled logits on nodes zs x ys x xs (inclusive ranges) into ``out`` (nz, ny, nx) float32.

        Only the low-res rows / columns with a non-zero weight enter the products. Values do not depend on the
        block's extent (extra terms are exact zeros), so overlapping blocks agree bit for bit.
        """
        wy = self.weights[ys[0] : ys[1] + 1]
        wx = self.weights[xs[0] : xs[1] + 1]
        ry = np.flatnonzero(wy.any(axis=0))
        rx = np.flatnonzero(wx.any(axis=0))
        ry0, ry1, rx0, rx1 = ry[0], ry[-1] + 1, rx[0], rx[-1] + 1
        part = np.ascontiguousarray(grid[zs[0] : zs[1] + 1, ry0:ry1, rx0:rx1])
        nz, hy, hx = part.shape
        # x first as one large product, then y slice by slice (the fastest order measured with numpy's BLAS).
        along_x = (part.reshape(nz * hy, hx) @ np.ascontiguousarray(wx[:, rx0:rx1].T)).reshape(nz, hy, -1)
        np.matmul(wy[:, ry0:ry1], along_x, out=out)
