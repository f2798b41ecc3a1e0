"""Face Mesh through MediaPipe's legacy Solutions API (``mp.solutions.face_mesh``), mediapipe 0.10.21.

The models ship inside the mediapipe wheel, so this backend works offline. mediapipe 0.10.21 is the last
release with ``mp.solutions`` and it serves Python <= 3.12 (numpy < 2); newer Pythons use
``mediapipe_tasks``. Video mode tracks the face from the previous frame's landmarks; static mode detects in
every image.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from realtime_vrn.landmarks.base import FaceMeshBackend, normalized_to_pixels, register_backend

log = logging.getLogger(__name__)

#: MediaPipe's own defaults: below this the detector reports no face / the tracker gives the face up.
MIN_DETECTION_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5
#: The model the Solutions API loads for ``refine_landmarks=True`` (478 points), relative to the package.
_BUNDLED_MODEL = Path("modules", "face_landmark", "face_landmark_with_attention.tflite")
_INSTALL_HINT = "pip install mediapipe==0.10.21 (Python <= 3.12)"
#: One ``NormalizedLandmark`` on the wire when it holds x, y and z and nothing else (Face Mesh's output): the
#: field tag and length of the submessage, then each float's tag and its 4 little-endian bytes.
_LANDMARK_RECORD = np.dtype([("head", "u1", 3), ("x", "<f4"), ("tag_y", "u1"), ("y", "<f4"), ("tag_z", "u1"),
                             ("z", "<f4")])
_LANDMARK_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)  # field 1 (landmark), 15 bytes; field 1 (x), fixed32
_TAG_Y, _TAG_Z = 0x15, 0x1D  # fields 2 (y) and 3 (z), fixed32


def probe() -> str | None:
    """Why this backend cannot run here (None if it can), without importing mediapipe."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        return f"mediapipe is not installed ({_INSTALL_HINT})"
    root = Path(spec.origin).parent
    if not (root / "python" / "solutions" / "face_mesh.py").is_file():
        return "this mediapipe has no Solutions API (removed in 0.10.30); use the mediapipe_tasks backend"
    if not (root / _BUNDLED_MODEL).is_file():
        return f"this mediapipe wheel does not bundle the Face Mesh model ({_INSTALL_HINT})"
    return None


class MediaPipeSolutionsBackend(FaceMeshBackend):
    """``mp.solutions.face_mesh.FaceMesh(refine_landmarks=True)``: 478 points per face."""

    name = "mediapipe_solutions"

    def __init__(self, static: bool, max_faces: int) -> None:
        super().__init__(static, max_faces)
        self._mesh: Any = None

    def open(self) -> None:
        if self._mesh is not None:
            return
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as err:
            raise ImportError(f"mediapipe Face Mesh is unavailable ({err}); {_INSTALL_HINT}") from err
        self._mesh = face_mesh.FaceMesh(static_image_mode=self.static, max_num_faces=self.max_faces,
                                        refine_landmarks=True,
                                        min_detection_confidence=MIN_DETECTION_CONFIDENCE,
                                        min_tracking_confidence=MIN_TRACKING_CONFIDENCE)

    def detect(self, image_rgb: np.ndarray, timestamp: float) -> list[np.ndarray]:
        # The Solutions API stamps frames itself (video mode needs only their order).
        result = self._mesh.process(image_rgb)
        faces = result.multi_face_landmarks or []
        height, width = image_rgb.shape[:2]
        return [normalized_to_pixels(landmark_array(face), width, height) for face in faces]

    def close(self) -> None:
        mesh, self._mesh = self._mesh, None
        if mesh is not None:
            mesh.close()


def landmark_array(face: Any) -> np.ndarray:
    """(N, 3) float64 normalised x, y, z of a ``NormalizedLandmarkList``: the values of
    ``[(p.x, p.y, p.z) for p in face.landmark]``, read from its wire format in one NumPy pass when every landmark
    holds exactly x, y and z (as Face Mesh returns them: 0.03 ms for 478 points instead of 0.25 ms), else one
    message at a time."""
    data = face.SerializeToString()
    if len(data) % _LANDMARK_RECORD.itemsize == 0:
        rec = np.frombuffer(data, _LANDMARK_RECORD)
        if (rec["head"] == _LANDMARK_HEAD).all() and (rec["tag_y"] == _TAG_Y).all() and (rec["tag_z"] == _TAG_Z).all():
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)


register_backend(MediaPipeSolutionsBackend.name, MediaPipeSolutionsBackend, priority=20, probe=probe)
