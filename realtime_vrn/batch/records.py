"""Per-frame (video) or per-face (photo) data of one input: landmarks, head pose and crop, as NumPy arrays.

One row per video frame (``face`` = 0; a frame without a face has ``has_face`` False and NaN in the float
fields) or per face of a photo (``face`` = 0 for the largest, 1, 2, ...). Fields, N rows:

    frame          (N,) int64     frame number in the video (0-based), 0 for a photo
    face           (N,) int16     face index (largest first)
    has_face       (N,) bool
    points         (N, 478, 3) float32  MediaPipe points: frame pixels x right, y down; z away from the camera
    points68       (N, 68, 2) float32   iBUG 68 landmarks, frame pixels
    rotation       (N, 3, 3) float32    head axes in the camera frame (``pose.head_rotation``)
    yaw_pitch_roll (N, 3) float32       degrees (``pose.euler_angles``)
    crop_centre    (N, 2) float32       frame pixel at the middle of the network's crop
    crop_scale     (N,) float32         crop pixels per frame pixel (crop side: ``crop_size``)
    crop_size      (N,) int32           side of the square network input, pixels
    vertices       (N,) int32           vertices of the reconstructed mesh (0: none)
    mesh_saved     (N,) bool            whether this row's mesh was written to the input's meshes

Written as ``frames.npz`` (videos) or ``faces.npz`` (photos) in the input's output folder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from realtime_vrn.batch.pose import euler_angles, head_rotation

N_POINTS = 478
FIELDS = {
    "frame": ((), np.int64), "face": ((), np.int16), "has_face": ((), np.bool_),
    "points": ((N_POINTS, 3), np.float32), "points68": ((68, 2), np.float32),
    "rotation": ((3, 3), np.float32), "yaw_pitch_roll": ((3,), np.float32),
    "crop_centre": ((2,), np.float32), "crop_scale": ((), np.float32), "crop_size": ((), np.int32),
    "vertices": ((), np.int32), "mesh_saved": ((), np.bool_),
}


class FrameRecords:
    """Rows collected while an input (or a chunk of a video) is reconstructed; :meth:`arrays` stacks them."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, frame: int, face: int, rec: Any, mesh_saved: bool) -> None:
        """One row from a ``pipeline.Reconstruction`` (``rec.landmarks`` None: a frame without a face)."""
        row: dict[str, Any] = {"frame": frame, "face": face, "has_face": rec.landmarks is not None,
                               "mesh_saved": mesh_saved, "crop_size": 0, "vertices": 0}
        if rec.landmarks is not None:
            rotation = head_rotation(rec.landmarks.points)
            row.update(points=rec.landmarks.points, points68=rec.landmarks.points68, rotation=rotation,
                       yaw_pitch_roll=euler_angles(rotation))
        if rec.crop is not None:
            row.update(crop_centre=rec.crop.centre, crop_scale=rec.crop.scale, crop_size=rec.crop.size)
        if rec.mesh is not None:
            row["vertices"] = len(rec.mesh.vertices)
        self._rows.append(row)

    def arrays(self) -> dict[str, np.ndarray]:
        """Field name -> (N, ...) array (shapes and dtypes in the module docstring); float fields NaN where unset."""
        out = {}
        for name, (shape, dtype) in FIELDS.items():
            fill = np.nan if np.issubdtype(dtype, np.floating) else 0
            array = np.full((len(self._rows), *shape), fill, dtype=dtype)
            for i, row in enumerate(self._rows):
                if name in row:
                    array[i] = row[name]
            out[name] = array
        return out


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of consecutive chunks joined in order (every field present in each part)."""
    if not parts:
        return FrameRecords().arrays()
    return {name: np.concatenate([p[name] for p in parts]) for name in FIELDS}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as a compressed NPZ, complete or not at all (built in memory, then written atomically)."""
    from realtime_vrn.fileio import write_atomic

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
