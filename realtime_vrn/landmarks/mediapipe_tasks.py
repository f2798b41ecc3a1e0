"""Face Mesh through MediaPipe's Tasks API (``FaceLandmarker``), for Python >= 3.13 and mediapipe >= 0.10.30.

Those releases dropped ``mp.solutions`` and no longer bundle the face models: ``face_landmarker.task`` is
downloaded once from Google's official URL into the user cache (``$REALTIME_VRN_HOME/models``, default the
platform's user cache dir of realtime-vrn, the folder ``weights.registry.models_dir()`` names) by the package's
generic :func:`realtime_vrn.weights.download.download` (progress bar, size check, atomic rename). Where the download
is impossible, save the file there by hand (the error message says where).

Not exercised on our machines: they have no internet, and a model assembled from mediapipe 0.10.21's bundled
files does not load (shared/docs/environment.md). Tests cover the backend choice, the download (from a local
server) and the failure paths.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from realtime_vrn.weights.download import download
from realtime_vrn.landmarks.base import FaceMeshBackend, normalized_to_pixels, register_backend

log = logging.getLogger(__name__)

#: Google's official float16 Face Landmarker model bundle (face detector + 478-point mesh + blendshapes).
MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
             "face_landmarker.task")
MODEL_FILE = "face_landmarker.task"
#: The bundle holds three models (face detector, 478-point mesh, blendshapes), a few MB in float16; a smaller
#: answer is an error page served with status 200, not the model.
MIN_MODEL_BYTES = 1_000_000
#: Environment variable that moves the user cache (as in ``weights.registry``, which imports torch: not here).
HOME_ENV = "REALTIME_VRN_HOME"
#: MediaPipe's defaults, as in the Solutions backend.
MIN_DETECTION_CONFIDENCE = 0.5
MIN_PRESENCE_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5
_INSTALL_HINT = "pip install 'mediapipe>=0.10.30'"


def model_path() -> Path:
    """Where the downloaded ``face_landmarker.task`` lives (or should be saved by hand)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "models" / MODEL_FILE
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("realtime-vrn")) / "models" / MODEL_FILE


def probe() -> str | None:
    """Why this backend cannot run here (None if it can), without importing mediapipe."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        return f"mediapipe is not installed ({_INSTALL_HINT})"
    if not (Path(spec.origin).parent / "tasks" / "python" / "vision" / "face_landmarker.py").is_file():
        return f"this mediapipe has no Tasks FaceLandmarker ({_INSTALL_HINT})"
    return None


class MediaPipeTasksBackend(FaceMeshBackend):
    """``mediapipe.tasks.python.vision.FaceLandmarker``: 478 points per face; ``model`` overrides the cache."""

    name = "mediapipe_tasks"

    def __init__(self, static: bool, max_faces: int, model: Path | None = None) -> None:
        super().__init__(static, max_faces)
        self.model = model
        self._landmarker: Any = None
        self._mp: Any = None
        self._last_ms = -1

    def open(self) -> None:
        if self._landmarker is not None:
            return
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as err:
            raise ImportError(f"mediapipe Tasks API is unavailable ({err}); {_INSTALL_HINT}") from err
        path = self.model if self.model is not None else self._download()
        mode = vision.RunningMode.IMAGE if self.static else vision.RunningMode.VIDEO
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=mode, num_faces=self.max_faces,
            min_face_detection_confidence=MIN_DETECTION_CONFIDENCE,
            min_face_presence_confidence=MIN_PRESENCE_CONFIDENCE,
            min_tracking_confidence=MIN_TRACKING_CONFIDENCE)
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as err:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError for a bad file
            hint = (f"delete it to download it again from {MODEL_URL}" if self.model is None
                    else f"the official model is at {MODEL_URL}")
            raise RuntimeError(f"cannot load the face landmarker model {path} ({err}); {hint}") from err
        self._mp = mp

    @staticmethod
    def _download() -> Path:
        dest = model_path()
        hint = (f"download it by hand and save it as {dest} (set {HOME_ENV} to use another folder), or use "
                f"Python <= 3.12 with mediapipe==0.10.21, whose wheel bundles the model")
        return download(MODEL_URL, dest, min_size=MIN_MODEL_BYTES, progress=True, manual_hint=hint)

    def detect(self, image_rgb: np.ndarray, timestamp: float) -> list[np.ndarray]:
        mp = self._mp
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=image_rgb)
        if self.static:
            result = self._landmarker.detect(image)
        else:
            result = self._landmarker.detect_for_video(image, self._timestamp_ms(timestamp))
        height, width = image_rgb.shape[:2]
        return [normalized_to_pixels(np.array([(p.x, p.y, p.z) for p in face], dtype=np.float64), width, height)
                for face in result.face_landmarks]

    def _timestamp_ms(self, timestamp: float) -> int:
        """Video mode needs strictly increasing integer milliseconds."""
        ms = max(int(round(timestamp * 1000.0)), self._last_ms + 1)
        self._last_ms = ms
        return ms

    def close(self) -> None:
        landmarker, self._landmarker = self._landmarker, None
        if landmarker is not None:
            landmarker.close()


register_backend(MediaPipeTasksBackend.name, MediaPipeTasksBackend, priority=10, probe=probe)
