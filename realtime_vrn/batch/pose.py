"""Head pose from MediaPipe's 478 face-mesh points: a rotation and yaw / pitch / roll angles.

The head's axes are read off the points themselves (no 3D model fit): x from the right eye's outer corner to
the left one's (points 33 -> 263), y from the forehead to the chin (10 -> 152) made orthogonal to x, z = x cross y.
The points are in MediaPipe's camera frame: x right, y down (frame pixels), z away from the camera (MediaPipe's
depth, scaled like x): right-handed, the OpenCV camera convention. A face looking straight into the camera,
upright, has the identity rotation and zero angles.
"""

from __future__ import annotations

import numpy as np

#: MediaPipe face-mesh indices: outer eye corners (subject's right, left), forehead top and chin bottom.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD, CHIN = 33, 263, 10, 152


def head_rotation(points: np.ndarray) -> np.ndarray:
    """(3, 3) float64 rotation whose columns are the head's x, y, z axes in the camera frame (see the module).

    points: (478, 3) (or at least 264 points) float, frame pixels x right, y down, z away from the camera.
    Raises ValueError for another shape or a degenerate face (eye corners or forehead and chin coinciding).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] <= LEFT_EYE_OUTER:
        raise ValueError(f"expected MediaPipe points of shape (478, 3), got {p.shape}")
    x = p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]
    down = p[CHIN] - p[FOREHEAD]
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        raise ValueError("degenerate face points: the eye corners coincide")
    x /= nx
    y = down - x * (down @ x)  # Gram-Schmidt: y orthogonal to x
    ny = np.linalg.norm(y)
    if ny < 1e-9:
        raise ValueError("degenerate face points: forehead and chin lie on the eye line")
    y /= ny
    return np.stack([x, y, np.cross(x, y)], axis=1)


def euler_angles(rotation: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) float64 degrees of ``rotation`` ((3, 3), ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``).

    In the camera frame (x right, y down, z away): yaw turns about y (positive: the face turns towards the image's
    left, its nose moving to smaller x), pitch about x (positive: the chin moves away from the camera, face looks
    up), roll about z (positive: clockwise in the image).
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) rotation, got {r.shape}")
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll])
