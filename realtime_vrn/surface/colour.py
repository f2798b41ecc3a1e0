"""From the crop-frame mesh to what the viewer sees (vrn-reference.md §1, steps 6-7).

``sample_colours``: each vertex takes the colour of the crop pixel under it (nearest pixel at its x, y).
``to_image_frame``: vertices back to frame pixels through the crop's inverse transform, z by the same scale.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from realtime_vrn.contracts import check_image

from .mesh import Mesh

log = logging.getLogger(__name__)

#: Relative difference below which the crop's x, y and z scales count as one (the crop transform read off
#: three mapped points differs from 1 / scale by float rounding, ~1e-16).
UNIFORM_RTOL = 1e-9


class InverseCrop(Protocol):
    """What :func:`to_image_frame` needs of ``realtime_vrn.crop.CropTransform``."""

    #: crop pixels per frame pixel.
    scale: float

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels (x, y) -> (N, 2) frame pixels (x, y)."""


def sample_colours(mesh: Mesh, crop_image: np.ndarray) -> np.ndarray:
    """Colour of the crop pixel nearest to each vertex's (x, y).

    mesh:       crop-frame mesh (x, y crop pixels, pixel centres at integers).
    crop_image: (S, S, 3) uint8 RGB, the network's input crop.
    Returns (V, 3) uint8 RGB. Vertices outside the crop (only possible within half a pixel of its border)
    take the nearest border pixel.
    """
    if mesh.frame != "crop":
        raise ValueError(f"expected a mesh in the crop frame, got frame={mesh.frame!r}")
    image = np.asarray(crop_image)
    check_image(image, "crop")
    h, w = image.shape[:2]
    # Nearest pixel centre (np.rint rounds halves to even, immaterial for colours), as one flat pixel index:
    # two float32 and one index buffer, rounded and clipped in place.
    x = np.rint(mesh.vertices[:, 0])
    y = np.rint(mesh.vertices[:, 1])
    np.clip(x, 0, w - 1, out=x)
    np.clip(y, 0, h - 1, out=y)
    index = y.astype(np.intp)
    index *= w
    index += x.astype(np.intp)
    return np.take(image.reshape(-1, 3), index, axis=0)


def _linear_part(crop: InverseCrop) -> tuple[np.ndarray, np.ndarray]:
    """to_frame as uv -> J @ uv + t, read off three points (exact for the affine crop transform)."""
    probe = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = np.asarray(crop.to_frame(probe), np.float64)
    jac = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)  # columns: images of the x and y unit steps
    return jac, p[0]


def to_image_frame(mesh: Mesh, crop: InverseCrop) -> Mesh:
    """Crop-frame mesh -> image-frame mesh (a new Mesh; faces and colours are shared, not copied, and so are the
    normals when the map keeps directions, as the crop's uniform scale does).

    x, y: ``crop.to_frame`` (crop pixels -> frame pixels). z: crop z / ``crop.scale``, so depth keeps the same
    metric as x and y (zero stays at the volume's back plane, larger z nearer the camera). Normals transform
    with the inverse transpose of that linear map (unchanged for a similarity without rotation) and winding is
    reversed if the map were to flip handedness. An empty mesh gives an empty image-frame mesh.
    """
    return _to_image_frame(mesh, crop)


def _to_image_frame(mesh: Mesh, crop: InverseCrop, crop_image: np.ndarray | None = None) -> Mesh:
    """:func:`to_image_frame`; with ``crop_image``, :func:`sample_colours` too (``mesh.colors`` set), in the
    same compiled pass over the vertices where numba imports and the map has no rotation (the crop's case)."""
    if mesh.frame != "crop":
        raise ValueError(f"expected a mesh in the crop frame, got frame={mesh.frame!r}")
    scale = float(crop.scale)
    if not scale > 0:
        raise ValueError(f"expected a positive crop scale, got {scale}")
    if len(mesh.vertices) == 0:
        return Mesh.empty(frame="image")
    jac, offset = _linear_part(crop)
    (a, b), (c, d) = jac
    det = a * d - b * c  # of the 2 x 2 part; the z part 1 / scale is positive
    if not det != 0:
        raise ValueError(f"the crop's inverse transform is singular: {jac.tolist()}")
    v = mesh.vertices
    vertices = np.empty(v.shape, np.float32)
    compiled = _compiled() if crop_image is not None and b == 0 and c == 0 else None
    if compiled is not None:  # colours and positions in one pass
        image = np.asarray(crop_image)
        check_image(image, "crop")
        mesh.colors = np.empty(v.shape, np.uint8)
        compiled.colour_and_scale(v, np.ascontiguousarray(image), np.array([a, d, 1.0 / scale], np.float32),
                                  np.array([offset[0], offset[1], 0.0], np.float32), mesh.colors, vertices)
    else:
        if crop_image is not None:
            mesh.colors = sample_colours(mesh, crop_image)
        if b == 0 and c == 0:  # no rotation or shear (the crop's case): each column scaled and shifted in place
            # (column by column: numpy's (V, 3) x (3,) broadcast runs a 3-long inner loop per row, ~5x slower)
            for k, (factor, shift) in enumerate(((a, offset[0]), (d, offset[1]), (1.0 / scale, 0.0))):
                np.multiply(v[:, k], np.float32(factor), out=vertices[:, k])
                if shift:
                    np.add(vertices[:, k], np.float32(shift), out=vertices[:, k])
        else:
            vertices[:, 0] = a * v[:, 0] + b * v[:, 1] + offset[0]
            vertices[:, 1] = c * v[:, 0] + d * v[:, 1] + offset[1]
            vertices[:, 2] = v[:, 2] / scale
    return Mesh(
        vertices=vertices,
        faces=mesh.faces if det > 0 else np.ascontiguousarray(mesh.faces[:, ::-1]),
        normals=_transform_normals(mesh.normals, jac, 1.0 / scale),
        colors=mesh.colors,
        frame="image",
    )


def _transform_normals(normals: np.ndarray, jac: np.ndarray, z_scale: float) -> np.ndarray:
    """Unit normals under the linear map [[jac, 0], [0, z_scale]]: n -> A^-T n, renormalised; (V, 3) float32.

    A multiple of the identity (to float rounding: ``jac`` is read off three mapped points) keeps directions:
    the normals are returned as they are (not copied).
    """
    (a, b), (c, d) = jac
    if b == 0 and c == 0 and abs(a - z_scale) <= UNIFORM_RTOL * z_scale and abs(d - z_scale) <= UNIFORM_RTOL * z_scale:
        return normals
    det = a * d - b * c
    # A^-T of the 2 x 2 part, written out (no LAPACK call per frame), scaled by 1 / z_scale so the z column
    # stays 1: directions only.
    m00, m01, m10, m11 = d / det * z_scale, -c / det * z_scale, -b / det * z_scale, a / det * z_scale
    out = np.empty(normals.shape, np.float32)
    nx, ny = normals[:, 0], normals[:, 1]
    out[:, 0] = m00 * nx + m01 * ny
    out[:, 1] = m10 * nx + m11 * ny
    out[:, 2] = normals[:, 2]
    length = np.sqrt(np.einsum("ij,ij->i", out, out))
    np.maximum(length, np.float32(1e-12), out=length)
    out /= length[:, None]
    return out


def coloured_in_image_frame(mesh: Mesh, crop_image: np.ndarray, crop: InverseCrop) -> Mesh:
    """The surface stage after the iso-surface, as the pipeline runs it: colours from the crop (a non-empty mesh
    only), then the image frame. ``mesh`` (crop frame) gets the colours; returns the image-frame mesh.

    The same results as :func:`sample_colours` then :func:`to_image_frame`, in one compiled pass over the
    vertices where numba imports (no temporary arrays; ~3x faster on the shipped model's meshes)."""
    if mesh.is_empty:
        return to_image_frame(mesh, crop)
    return _to_image_frame(mesh, crop, crop_image)


def warm_up() -> None:
    """Compile (or load from numba's cache) the loop of :func:`coloured_in_image_frame` now, at start-up, not on
    the first frame. Without numba, or if it fails to compile, the NumPy route is used (a warning says why)."""
    global _broken
    compiled = _compiled()
    if compiled is None:
        return
    try:
        compiled.colour_and_scale(np.zeros((1, 3), np.float32), np.zeros((2, 2, 3), np.uint8), np.ones(3, np.float32),
                                  np.zeros(3, np.float32), np.empty((1, 3), np.uint8), np.empty((1, 3), np.float32))
    except Exception as err:  # noqa: BLE001 - a broken numba or llvmlite: the NumPy route gives the same result
        log.warning("colours and frame mapping run in NumPy: numba fails to compile them (%s)", err)
        _broken = True


#: Set when the compiled loop failed at warm-up: the NumPy route from then on.
_broken = False


def _compiled():
    """The compiled loop (:mod:`realtime_vrn.surface._colour_numba`), or None where numba does not import or
    failed to compile it (the NumPy route then gives the same result)."""
    if _broken:
        return None
    try:
        from . import _colour_numba
    except ImportError:
        return None
    return _colour_numba
