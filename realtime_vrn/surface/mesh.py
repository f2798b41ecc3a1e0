"""The mesh that flows from surface extraction to rendering and export."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """An indexed triangle mesh with per-vertex normals and colours.

    vertices: (V, 3) float32. The coordinate frame is named by ``frame``:
        ``"crop"``  - x, y crop pixels (pixel centres at integers, y down), z = depth voxel index * 0.5
                      (the VRN z stretch undone), larger z nearer the camera;
        ``"image"`` - x, y frame pixels (y down), z in frame pixels (crop z divided by the crop scale), larger
                      z nearer the camera, zero at the crop volume's back plane.
    faces:    (F, 3) int32 vertex indices, ordered so that cross(v1 - v0, v2 - v0) points along the outward
              normal in these very coordinates (out of the head, towards the viewer on the front surface).
              A y flip (image -> y-up export) changes handedness, so it must also reverse the winding.
    normals:  (V, 3) float32 unit outward normals in the same frame.
    colors:   (V, 3) uint8 RGB, or None.

    Meshes from ``surface.extract`` are indexed (no two vertices at the same position) and closed except where
    the solid meets the volume's border (a face cut by the crop edge), exactly as marching cubes on the whole
    volume leaves them.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    colors: np.ndarray | None = None
    frame: str = "crop"

    @classmethod
    def empty(cls, frame: str = "crop") -> "Mesh":
        return cls(
            vertices=np.zeros((0, 3), np.float32),
            faces=np.zeros((0, 3), np.int32),
            normals=np.zeros((0, 3), np.float32),
            colors=np.zeros((0, 3), np.uint8),
            frame=frame,
        )

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0

    def validate(self, frame: str | None = None) -> "Mesh":
        """The Mesh contract, checked at every boundary a mesh crosses (rendering, export); returns ``self``.

        Shapes and dtypes as in the class docstring, colours None or like the vertices, face indices in range,
        and ``frame`` when given ("crop" or "image"). Cheap enough per frame (one pass over the faces for the
        index range). ``ValueError`` with "expected X, got Y" on a violation.
        """
        if frame is not None and self.frame != frame:
            raise ValueError(f"expected a mesh in frame={frame!r}, got frame={self.frame!r}")
        v, f, n, c = self.vertices, self.faces, self.normals, self.colors
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype != np.float32:
            raise ValueError(f"expected vertices (V, 3) float32, got {v.shape} {v.dtype}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype != np.int32:
            raise ValueError(f"expected faces (F, 3) int32, got {f.shape} {f.dtype}")
        if n.shape != v.shape or n.dtype != np.float32:
            raise ValueError(f"expected normals {v.shape} float32 like the vertices, got {n.shape} {n.dtype}")
        if c is not None and (c.shape != v.shape or c.dtype != np.uint8):
            raise ValueError(f"expected (V, 3) uint8 colours like the vertices {v.shape}, got {c.shape} {c.dtype}")
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"expected face indices in [0, {len(v)}), got min {f.min()}, max {f.max()}: out of range")
        return self
