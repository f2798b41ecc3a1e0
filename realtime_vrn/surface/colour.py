"""From the crop-frame mesh to what the viewer sees (vrn-reference.md §1, steps 6-7).

``sample_colours``: each vertex takes the colour of the crop pixel under it (nearest pixel at its x, y).
``to_image_frame``: vertices back to frame pixels through the crop's inverse transform, z by the same scale.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .mesh import Mesh


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
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (S, S, 3) uint8 RGB crop, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    # Nearest pixel centre; np.rint rounds halves to even, immaterial for colours.
    x = np.clip(np.rint(mesh.vertices[:, 0]).astype(np.intp), 0, w - 1)
    y = np.clip(np.rint(mesh.vertices[:, 1]).astype(np.intp), 0, h - 1)
    return image[y, x]


def _linear_part(crop: InverseCrop) -> tuple[np.ndarray, np.ndarray]:
    """to_frame as uv -> J @ uv + t, read off three points (exact for the affine crop transform)."""
    probe = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = np.asarray(crop.to_frame(probe), np.float64)
    jac = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)  # columns: images of the x and y unit steps
    return jac, p[0]


def to_image_frame(mesh: Mesh, crop: InverseCrop) -> Mesh:
    """Crop-frame mesh -> image-frame mesh (a new Mesh; faces and colours are shared, not copied).

    x, y: ``crop.to_frame`` (crop pixels -> frame pixels). z: crop z / ``crop.scale``, so depth keeps the same
    metric as x and y (zero stays at the volume's back plane, larger z nearer the camera). Normals transform
    with the inverse transpose of that linear map (unchanged for a similarity without rotation) and winding is
    reversed if the map were to flip handedness. An empty mesh gives an empty image-frame mesh.
    """
    if mesh.frame != "crop":
        raise ValueError(f"expected a mesh in the crop frame, got frame={mesh.frame!r}")
    scale = float(crop.scale)
    if not scale > 0:
        raise ValueError(f"expected a positive crop scale, got {scale}")
    if len(mesh.vertices) == 0:
        return Mesh.empty(frame="image")
    jac, _ = _linear_part(crop)
    linear = np.zeros((3, 3))
    linear[:2, :2] = jac
    linear[2, 2] = 1.0 / scale
    vertices = np.empty_like(mesh.vertices, dtype=np.float32)
    vertices[:, :2] = crop.to_frame(mesh.vertices[:, :2].astype(np.float64))
    vertices[:, 2] = mesh.vertices[:, 2] / scale
    normals = mesh.normals @ np.linalg.inv(linear).astype(np.float32)  # rows: n^T A^-1 = (A^-T n)^T
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), np.float32(1e-12))
    faces = mesh.faces if np.linalg.det(linear) > 0 else np.ascontiguousarray(mesh.faces[:, ::-1])
    return Mesh(
        vertices=vertices,
        faces=faces,
        normals=normals.astype(np.float32),
        colors=mesh.colors,
        frame="image",
    )
