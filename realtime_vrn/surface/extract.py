"""Fast CPU iso-surface of the network's low-resolution logits (vrn-reference.md §1, step 5).

The release turns the (D, h, w) hourglass logits into probabilities with a bilinear x4 upsample
(align_corners=True) and a sigmoid, and the surface is the p = 0.5 level set, i.e. logit = 0 (the sigmoid is
monotone, so it is never evaluated). The face fills a small part of the (D, S, S) = 200 x 192 x 192 volume,
so instead of upsampling everything and marching every cube, :class:`SurfaceExtractor`

1. finds the low-resolution cells whose 8 logits straddle 0. A bilinear value is a convex combination of the
   low-resolution values around it, so a full-resolution cube can only hold a crossing if one of the
   (at most 2 x 2) low-resolution cells it overlaps straddles 0: this bound is conservative, never lossy;
2. evaluates the upsample (separable, two small matrix products with torch's exact align_corners weights)
   only in the bounding box of those cubes, plus one node of margin so that the gradient normals see the
   same neighbours as on the full volume;
3. runs scikit-image's Lewiner marching cubes on that box, masked to the candidate cubes.

Every cube that can hold a crossing is marched with the same 8 values as on the full volume, so the result is
the reference mesh (:mod:`realtime_vrn.surface.reference`) up to float rounding of the upsample. Like the
reference, the surface is left open where the solid touches the volume's border (no padding).
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.measure import marching_cubes

from realtime_vrn.model.network import HEAD_UPSAMPLE, VRNConfig

from .mesh import Mesh

log = logging.getLogger(__name__)

#: The iso-level in logits: p = sigmoid(logit) = 0.5 <=> logit = 0.
LEVEL = 0.0
#: Crop-frame z per depth index: the training volumes were voxelised with z twice as deep as x and y.
Z_SCALE = 0.5
#: Extra nodes around the candidate cubes so the central-difference normals at the box edge match the
#: full-volume ones.
GRADIENT_MARGIN = 1


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
    d, h, w = logits.shape
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
    """(D, h, w) logits -> (D-1, h-1, w-1) bool: cells with a corner above LEVEL and one at or below it.

    scikit-image counts a value equal to the level as outside, so these are exactly the cells that marching
    cubes would triangulate.
    """
    inside = grid > LEVEL

    def reduce(a: np.ndarray, op) -> np.ndarray:
        a = op(a[1:], a[:-1])
        a = op(a[:, 1:], a[:, :-1])
        return op(a[:, :, 1:], a[:, :, :-1])

    return reduce(inside, np.logical_or) & ~reduce(inside, np.logical_and)


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
    offset = np.asarray(offset_zyx[::-1], np.float32)
    vertices = (verts_zyx[:, ::-1] + offset) * np.float32([1.0, 1.0, Z_SCALE])
    normals = normals_zyx[:, ::-1] * np.float32([1.0, 1.0, 1.0 / Z_SCALE])
    norm = np.sqrt(np.einsum("ij,ij->i", normals, normals))
    normals /= np.maximum(norm, np.float32(1e-12))[:, None]
    return Mesh(
        vertices=np.ascontiguousarray(vertices, np.float32),
        faces=np.ascontiguousarray(faces, np.int32),
        normals=np.ascontiguousarray(normals, np.float32),
        colors=None,
        frame="crop",
    )


class SurfaceExtractor:
    """The p = 0.5 iso-surface of one frame's low-resolution logits, as a crop-frame :class:`Mesh`.

    Construct once per model configuration (it precomputes the interpolation weights and the cube-to-cell
    tables), then call :meth:`extract` per frame. Not thread-safe only in the sense that it keeps no per-frame
    state: calls are independent.
    """

    def __init__(self, cfg: VRNConfig) -> None:
        self.cfg = cfg
        self.size = cfg.input_size
        self.grid = cfg.grid_size
        self.depth = cfg.depth_bins
        #: (S, h) float32 interpolation matrix, the same for y and x (square crops).
        self.weights = upsample_weights(self.grid, self.size)
        #: per full-res cell (S-1,): the first / last low-res cell it overlaps.
        self.cell_lo, self.cell_hi = _covering_cells(self.weights)

    @property
    def logits_shape(self) -> tuple[int, int, int]:
        return (self.depth, self.grid, self.grid)

    def extract(self, logits) -> Mesh:
        """logits: (D, h, w) float32 (a (1, D, h, w) batch of one is accepted), ordered (z, y, x), finite.

        Returns the crop-frame mesh (see :class:`Mesh`): x, y crop pixels, z = depth index * 0.5, outward
        winding and unit outward normals, no colours. An empty or full volume gives ``Mesh.empty()``.
        """
        grid = self._check(logits)
        cells = _straddling_cells(grid)
        if not cells.any():
            return Mesh.empty()
        z_span = _span(cells.any(axis=(1, 2)))
        y_cells = self._full_res_candidates(cells.any(axis=(0, 2)))
        x_cells = self._full_res_candidates(cells.any(axis=(0, 1)))
        y_span, x_span = _span(y_cells), _span(x_cells)

        # Nodes of the box: the candidate cubes' nodes plus a margin for the gradients, clipped to the volume.
        spans = (z_span, y_span, x_span)
        limits = (self.depth - 1, self.size - 1, self.size - 1)
        nodes = [(max(a - GRADIENT_MARGIN, 0), min(b + 1 + GRADIENT_MARGIN, n)) for (a, b), n in zip(spans, limits)]
        (z0, z1), (y0, y1), (x0, x1) = nodes

        box = self._upsample_box(grid, nodes)
        cubes = _straddling_cells(box)  # exact: the cubes marching cubes will triangulate
        if not cubes.any():  # the conservative candidates held no actual crossing
            return Mesh.empty()
        mask = np.zeros(box.shape, bool)
        mask[1:, 1:, 1:] = cubes  # scikit-image reads a cube's mask at its far corner (z+1, y+1, x+1)
        # Exact zeros put vertices on nodes, which several edges then share: merge them (rare, costs ~10 ms).
        on_level = bool((box == LEVEL).any())
        verts, faces, normals, _ = marching_cubes(
            box, LEVEL, mask=mask, allow_degenerate=not on_level, method="lewiner"
        )
        return mesh_from_marching_cubes(verts, faces, normals, offset_zyx=(z0, y0, x0))

    def _check(self, logits) -> np.ndarray:
        arr = np.asarray(logits)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.shape != self.logits_shape:
            raise ValueError(
                f"expected logits of shape {self.logits_shape} (depth, y, x) for a "
                f"{self.size}x{self.size} model, got {tuple(np.shape(logits))}"
            )
        if arr.dtype.kind != "f":
            raise TypeError(f"expected floating-point logits, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("logits contain NaN or infinite values")
        return arr

    def _full_res_candidates(self, lowres_active: np.ndarray) -> np.ndarray:
        """(h-1,) bool per low-res cell -> (S-1,) bool per full-res cell that overlaps an active one."""
        return lowres_active[self.cell_lo] | lowres_active[self.cell_hi]

    def _upsample_box(self, grid: np.ndarray, nodes) -> np.ndarray:
        """The upsampled logits on the box's nodes: (nz, ny, nx) float32, C-contiguous (z, y, x)."""
        (z0, z1), (y0, y1), (x0, x1) = nodes
        wy = self.weights[y0 : y1 + 1]
        wx = self.weights[x0 : x1 + 1]
        # Only the low-res rows / columns with a non-zero weight matter.
        ry = np.flatnonzero(wy.any(axis=0))
        rx = np.flatnonzero(wx.any(axis=0))
        ry0, ry1, rx0, rx1 = ry[0], ry[-1] + 1, rx[0], rx[-1] + 1
        part = np.ascontiguousarray(grid[z0 : z1 + 1, ry0:ry1, rx0:rx1])
        nz, hy, hx = part.shape
        # x first as one large product, then y slice by slice (the fastest order measured with numpy's BLAS).
        along_x = (part.reshape(nz * hy, hx) @ np.ascontiguousarray(wx[:, rx0:rx1].T)).reshape(nz, hy, -1)
        return np.matmul(wy[:, ry0:ry1], along_x)  # (nz, ny, nx), C-contiguous
