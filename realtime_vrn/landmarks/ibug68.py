"""MediaPipe Face Mesh (478 points) -> the 68-point iBUG 300-W layout that the VRN crop is defined on.

``MEDIAPIPE_TO_IBUG68[i]`` is the Face Mesh index used for iBUG point ``i`` (0-16 jaw, 17-26 brows, 27-35
nose, 36-47 eyes, 48-67 mouth): the correspondence commonly used in public code
(shared/docs/vrn-reference.md §1), one mesh vertex per iBUG point, no interpolation.

Known bias, measured on the five photos of the official VRN demo (``tests/data/faces``) against the 68 FAN
points the official pipeline computed for them (AaronJackson/vrn ``examples/*.txt``, integer pixels):

- mean point distance 2.5-2.9 % of the landmark box side (geometric mean of width and height); the jaw
  (points 0-16) differs most, 3.9-5.5 %, because Face Mesh's silhouette vertices are fixed on the 3D face
  while FAN's jaw follows the visible contour; the inner points (17-67) differ by 1.9-2.4 %.
- the box side (which sets the crop scale) is 0.95-1.025x FAN's, 0.98x on average: our crops show the face
  about 2 % larger than the official pipeline's. Not corrected (five photos are too few to calibrate).
- the landmark mean (which sets the crop centre) is within 2.6 px of FAN's (<= 1.4 % of the box side), with
  no consistent direction.

The two layouts define some points differently (above all the jaw), so this bias is systematic, not noise.
``tests/test_landmarks.py`` checks the box-size and mean figures (what the crop uses) on the five photos.
"""

from __future__ import annotations

import numpy as np

#: Face Mesh vertex index for each of the 68 iBUG points, in iBUG order.
MEDIAPIPE_TO_IBUG68: tuple[int, ...] = (
    # jaw 0-16
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    # right brow 17-21, left brow 22-26 (subject's right/left)
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    # nose bridge 27-30, lower nose 31-35
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41, left eye 42-47
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lips 48-59, inner lips 60-67
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)

_INDEX = np.asarray(MEDIAPIPE_TO_IBUG68, dtype=np.intp)


def to_ibug68(points: np.ndarray) -> np.ndarray:
    """The 68 iBUG points of a Face Mesh.

    points: (478, 2 or 3) float, frame pixels (x right, y down); only x, y are used.
    returns (68, 2) float32, frame pixels, iBUG 300-W order.
    """
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] < 2:
        raise ValueError(f"expected (478, 3) Face Mesh points, got shape {points.shape}")
    return np.ascontiguousarray(points[_INDEX, :2], dtype=np.float32)
