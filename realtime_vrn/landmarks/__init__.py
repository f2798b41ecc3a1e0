"""Face landmarks: MediaPipe Face Mesh (478 points) -> the 68 iBUG points the VRN crop needs.

``open_tracker(backend="auto", static=False, smoothing=True)`` returns a ``LandmarkTracker``;
``tracker.process(image_rgb, timestamp)`` returns ``FaceLandmarks`` (frame pixels) or None. Backends:
``mediapipe_solutions`` (mediapipe 0.10.21, models bundled, Python <= 3.12) and ``mediapipe_tasks``
(Tasks API, newer mediapipe, model downloaded once). MediaPipe is imported only when a backend opens.
"""

from realtime_vrn.landmarks.base import FaceLandmarks, FaceMeshBackend, register_backend
from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68, to_ibug68
from realtime_vrn.landmarks.one_euro import OneEuroFilter, OneEuroParams
from realtime_vrn.landmarks.registry import backend_names
from realtime_vrn.landmarks.tracker import DEFAULT_MAX_FACES, SMOOTHING, LandmarkTracker, open_tracker

__all__ = [
    "FaceLandmarks", "FaceMeshBackend", "LandmarkTracker", "open_tracker", "backend_names", "register_backend",
    "MEDIAPIPE_TO_IBUG68", "to_ibug68", "OneEuroFilter", "OneEuroParams", "SMOOTHING", "DEFAULT_MAX_FACES",
]
