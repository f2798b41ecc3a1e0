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
