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
        return [normalized_to_pixels(np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64),
                                     width, height) for face in faces]

    def close(self) -> None:
        mesh, self._mesh = self._mesh, None
        if mesh is not None:
            mesh.close()


register_backend(MediaPipeSolutionsBackend.name, MediaPipeSolutionsBackend, priority=20, probe=probe)
