"""Our surface and MediaPipe's mesh combined: two estimates of the same face's depth, averaged.

The network's surface and MediaPipe's 468-point mesh see the same face through different errors (on the real
photos of ``eval --real`` the network is better at large yaw, MediaPipe near-frontal, and their errors are far
from identical), so their average is closer to the truth than either up to 60 deg of yaw, and than MediaPipe's
beyond (model card, *Session 8*). The fusion moves
each vertex of our mesh along z only, by a smooth field over the crop's (x, y):

    z' = z + weight * F(x, y),   F = mediapipe - ours - offset on the pixels both surfaces cover,

``mediapipe`` and ``ours`` the front-most depth of each surface at each crop pixel (MediaPipe's: a z-buffer of its
triangles; ours, a marching-cubes surface on the pixel grid: its front-most vertex on the pixel centre's line),
``offset`` the median of their difference (MediaPipe's depth has no absolute origin), outliers held to three
robust standard deviations (the steep sides along a turned face's outline), F read between pixel centres
bilinearly. Elsewhere F is a normalised Gaussian average of the covered pixels around: it fills the eye
and mouth openings of MediaPipe's mesh, and beyond MediaPipe's outline it fades to zero within a few pixels, so
the surface stays continuous and our mesh keeps its own shape where MediaPipe has none (forehead top, ears,
neck). ``(x, y, z) -> (x, y, z + weight F(x, y))`` is one-to-one, so the
mesh keeps its topology and cannot fold; normals are carried through the map's Jacobian.

``weight`` is MediaPipe's share: 0 leaves our surface as the network made it, 1 puts MediaPipe's relief on it.
The default, 0.5, is the plain average of two estimates given equal trust, not a value fitted to the benchmark
(the model card reports 0.3 and 0.7 beside it). How the field is built (the difference itself where both
surfaces cover a pixel, the fill's width, the outlier bound: no spikes in the meshes of turned faces, same
agreement) was chosen by how closely the fused mesh follows the point-wise
average of the two surfaces at MediaPipe's own inner landmarks on the pool photos: no ground truth involved.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .mesh import Mesh

log = logging.getLogger(__name__)

#: MediaPipe's share of the depth by default (the CLI's --mediapipe-weight).
DEFAULT_WEIGHT = 0.5
#: Standard deviation of the Gaussian that fills MediaPipe's openings and fades the field beyond its outline,
#: in pixels of a 96-px crop (scaled with the crop size).
BLUR_SIGMA_96 = 1.5
#: The field is at full strength where the blurred coverage is at least this (the outline itself: 0.5), and
#: fades linearly to 0 with it outside MediaPipe's outline.
FULL_STRENGTH_COVERAGE = 0.5
#: Fewer common pixels than this (a face mostly outside the crop): the mesh is left as the network made it.
MIN_COMMON_PIXELS = 50
#: The difference is held within this many robust standard deviations (1.4826 x its median absolute value).
OUTLIER_SPREADS = 3.0


def _kernels():
    """The compiled loops (:mod:`realtime_vrn.surface._fusion_numba`), imported on first use so that importing
    this module (the option defaults do) does not load numba."""
    from . import _fusion_numba

    return _fusion_numba


def front_depth(vertices: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """Z-buffer of a mesh's triangles at the crop's pixel centres (MediaPipe's mesh in the fusion).

    vertices: (V, 3) float, x, y crop pixels (pixel centres at integers, y down), z larger nearer.
    faces: (F, 3) int vertex indices, any winding (MediaPipe's triangles have none): the front-most z wins.
    Returns (size, size) float32: the largest z of the triangles over each pixel centre, -inf where none is.
    """
    out = np.full((size, size), -np.inf, np.float32)
    _kernels().zbuffer(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.int32), out)
    return out


def grid_mesh_depth(vertices: np.ndarray, size: int) -> np.ndarray:
    """Z-buffer at the crop's pixel centres of a marching-cubes mesh on the crop's pixel grid (every extractor's):
    such a surface meets the line through a pixel centre only at its vertices there, so the front-most of those
    is the z-buffer, exactly, in one pass over the vertices (a triangle z-buffer of the same mesh costs ~5x more).

    vertices: (V, 3) float32 crop frame. Returns (size, size) float32, -inf where no vertex lies on the column.
    """
    out = np.full((size, size), -np.inf, np.float32)
    _kernels().column_front(np.ascontiguousarray(vertices, np.float32), out)
    return out


def depth_field(ours: np.ndarray, theirs: np.ndarray, sigma: float) -> np.ndarray | None:
    """The correction field F (see the module docstring) from two z-buffers: ``theirs - ours`` less its median
    on the common pixels, the Gaussian fill (``sigma`` pixels) elsewhere, faded beyond the common pixels' outline.

    ours, theirs: (S, S) float32 front depths, -inf where uncovered.
    Returns (S, S) float32 (0 far from the common pixels), or None when fewer than MIN_COMMON_PIXELS are common.
    """
    import cv2

    both = np.isfinite(ours) & np.isfinite(theirs)
    if int(both.sum()) < MIN_COMMON_PIXELS:
        return None
    diff = np.zeros(ours.shape, np.float32)
    diff[both] = theirs[both] - ours[both]
    diff[both] -= np.float32(np.median(diff[both]))
    # along a turned face's outline the two surfaces' steep sides miss each other by a pixel and differ by many:
    # such outliers are held to OUTLIER_SPREADS robust standard deviations (they would pull spikes out of the mesh)
    spread = np.float32(OUTLIER_SPREADS * 1.4826 * np.median(np.abs(diff[both])))
    np.clip(diff, -spread, spread, out=diff)
    mask = both.astype(np.float32)
    num = cv2.GaussianBlur(diff, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(mask, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    field = num / np.maximum(den, np.float32(1e-6))
    field *= np.clip(den / np.float32(FULL_STRENGTH_COVERAGE), 0.0, 1.0)
    field[both] = diff[both]  # the difference itself where it is known
    return field


def fuse_depth(mesh: Mesh, mediapipe_crop: np.ndarray, size: int, weight: float = DEFAULT_WEIGHT) -> Mesh:
    """Our crop-frame mesh with MediaPipe's relief averaged in (module docstring).

    mesh: crop-frame Mesh (x, y crop pixels, z = depth index * 0.5, larger nearer), as the extractors give it.
    mediapipe_crop: (>= 468, 3) Face Mesh points in crop pixels, z larger nearer, in the same pixel units
    (:func:`realtime_vrn.model.guidance.mediapipe_in_crop`). size: the crop's side S in pixels.
    weight: MediaPipe's share in [0, 1].
    Returns a new crop-frame Mesh (same faces and colours, z and normals changed), or ``mesh`` itself when the
    weight is 0, the mesh is empty, or the two surfaces hardly overlap in the crop.
    """
    from realtime_vrn.landmarks.topology import N_SURFACE_POINTS, face_mesh_triangles

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"expected a MediaPipe weight in [0, 1], got {weight}")
    if mesh.frame != "crop":
        raise ValueError(f"expected a mesh in the crop frame, got frame={mesh.frame!r}")
    if weight == 0.0 or mesh.is_empty:
        return mesh
    pts = np.asarray(mediapipe_crop, np.float32)
    if pts.ndim != 2 or pts.shape[0] < N_SURFACE_POINTS or pts.shape[1] != 3:
        raise ValueError(f"expected (478, 3) Face Mesh points in crop pixels, got shape {pts.shape}")
    if not np.isfinite(pts[:N_SURFACE_POINTS]).all():
        return mesh
    ours = grid_mesh_depth(mesh.vertices, size)
    theirs = front_depth(pts[:N_SURFACE_POINTS], face_mesh_triangles(), size)
    field = depth_field(ours, theirs, BLUR_SIGMA_96 * size / 96)
    if field is None:
        return mesh
    field *= np.float32(weight)
    gy, gx = np.gradient(field)  # per pixel: the map's Jacobian carries the normals (module docstring)
    vertices, normals = np.empty_like(mesh.vertices), np.empty_like(mesh.normals)
    _kernels().move_along_z(np.ascontiguousarray(mesh.vertices), np.ascontiguousarray(mesh.normals),
                            np.dstack([field, gx, gy]).astype(np.float32, copy=False), vertices, normals)
    return Mesh(vertices=vertices, faces=mesh.faces, normals=normals, colors=mesh.colors, frame="crop")


class DepthFusion:
    """The pipeline's fusion step: ``fusion(mesh, points478, crop)`` -> crop-frame mesh.

    points478: ``FaceLandmarks.points`` (478, 3) frame px (z = z_norm x width, smaller nearer); crop: the
    ``CropTransform`` the mesh was made in. ``warm_up`` compiles (or loads from numba's cache) its loops at
    start-up, not on the first frame.
    """

    def __init__(self, size: int, weight: float = DEFAULT_WEIGHT) -> None:
        """size: the crop's side S (``VRNConfig.input_size``); weight: MediaPipe's share in [0, 1]."""
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"expected a MediaPipe weight in [0, 1], got {weight}")
        self.size, self.weight = int(size), float(weight)

    def warm_up(self) -> "DepthFusion":
        """Compile the loops now. Without a working numba (where the surface falls back to scikit-image too) the
        fusion is left out with a warning: the run goes on with the network's surface alone."""
        if self.weight == 0:
            return self
        try:
            kernels = _kernels()
        except ImportError as err:
            log.warning("numba is not importable (%s): the surface is the network's alone, without MediaPipe's "
                        "depth; reinstall realtime-vrn's dependencies to get it back", err)
            self.weight = 0.0
            return self
        tri = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0]], np.float32)
        front_depth(tri, np.array([[0, 1, 2]]), 4)
        grid_mesh_depth(tri, 4)
        kernels.move_along_z(tri, tri, np.zeros((4, 4, 3), np.float32), np.empty_like(tri), np.empty_like(tri))
        return self

    def __call__(self, mesh: Mesh, points478: np.ndarray, crop: Any) -> Mesh:
        from realtime_vrn.model.guidance import mediapipe_in_crop

        return fuse_depth(mesh, mediapipe_in_crop(points478, crop), self.size, self.weight)
