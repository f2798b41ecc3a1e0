"""Per-frame face landmarks: a face-mesh backend, the largest face, One Euro smoothing, lost/found counters."""

from __future__ import annotations

import logging

import numpy as np

from realtime_vrn.landmarks.base import N_POINTS, FaceLandmarks, FaceMeshBackend, open_backend
from realtime_vrn.landmarks.ibug68 import to_ibug68
from realtime_vrn.landmarks.one_euro import OneEuroFilter, OneEuroParams

log = logging.getLogger(__name__)

#: Faces to look for. 2 lets the tracker keep the largest face when someone walks behind the user (the
#: nearest face is the one to reconstruct); Face Mesh in video mode then runs its detector on every frame
#: while fewer faces are tracked, about +1 ms per frame on our 2-core CPU.
DEFAULT_MAX_FACES = 2

#: One Euro parameters for landmark points in pixels, speed normalised by the face size (one face size =
#: the geometric-mean side of the 68-point box, 90 px in the model's crop).
#: - min_cutoff 1.0 Hz: a still face's points are averaged over ~0.16 s, which removes most of Face Mesh's
#:   frame-to-frame jitter;
#: - beta 20 Hz per (face size / s): at a slow nod (0.2 face sizes / s) the cutoff is already 5 Hz, at a
#:   normal head turn (1 face size / s) 21 Hz, so moving landmarks lag by about a pixel;
#: - d_cutoff 1.0 Hz: the paper's default for the speed estimate.
#: Measured: on the demo clip (face 247 px) the frame-to-frame acceleration
#: of the crop centre and size halves (2.5 -> 1.3 px) for a mean deviation of 1.4 px from the raw points; on a
#: still photo with camera-like noise the point jitter drops from 0.17 to 0.05 px. beta 40 follows faster
#: (0.9 px) but smooths less (1.5 px).
SMOOTHING = OneEuroParams(min_cutoff=1.0, beta=20.0, d_cutoff=1.0)


class LandmarkTracker:
    """Landmarks of the largest face in each frame, optionally smoothed over time.

    Construction is cheap; ``open()`` (or ``with``) loads the backend's model. ``process`` returns None for a
    frame without a face, logs (INFO) when the face is lost and found again, and counts
    ``frames_with_face``, ``frames_without_face`` and ``lost_events``. Smoothing is causal (no added frame of
    delay), restarts whenever the face is lost, and is off for still images (``backend.static``).
    """

    def __init__(self, backend: FaceMeshBackend, *, smoothing: bool = True,
                 smoothing_params: OneEuroParams = SMOOTHING) -> None:
        self.backend = backend
        self.smoothing = smoothing and not backend.static
        self._filter = OneEuroFilter(smoothing_params)
        self.frames_with_face = 0
        self.frames_without_face = 0
        self.lost_events = 0
        self._had_face = False
        self._frames = 0
        self._missing_since = 0
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    def open(self) -> "LandmarkTracker":
        if not self._opened:
            self.backend.open()
            self._opened = True
        return self

    def close(self) -> None:
        """Release the backend. Safe to call twice."""
        if self._opened:
            self._opened = False
            self.backend.close()
            log.debug("tracker: %d frames with a face, %d without, face lost %d times", self.frames_with_face,
                      self.frames_without_face, self.lost_events)

    def __enter__(self) -> "LandmarkTracker":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- per frame -----------------------------------------------------------------------------------------

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None:
        """Landmarks of the largest face in ``image_rgb``, or None when there is no face.

        image_rgb: (H, W, 3) uint8 RGB (frame pixels). timestamp: seconds (``Frame.timestamp``), increasing;
        it drives the smoothing filter. Returns a ``FaceLandmarks`` in frame pixels (see its docstring).
        """
        _check_image(image_rgb)
        if not self._opened:
            raise RuntimeError("open the tracker first (use it in a with block)")
        faces = self.backend.detect(np.ascontiguousarray(image_rgb), timestamp)
        self._frames += 1
        if not faces:
            self._no_face()
            return None
        points = max(faces, key=_box_area)
        if points.shape != (N_POINTS, 3):
            raise RuntimeError(f"backend {self.backend.name} returned points of shape {points.shape}, "
                               f"expected ({N_POINTS}, 3)")
        self._face_found()
        if self.smoothing:
            points = self._filter(points, timestamp, scale=_face_size(to_ibug68(points)))
        return FaceLandmarks(points=points, points68=to_ibug68(points), n_faces=len(faces))

    def _no_face(self) -> None:
        self.frames_without_face += 1
        if self._had_face:
            self._had_face = False
            self.lost_events += 1
            self._missing_since = self._frames
            self._filter.reset()
            log.info("face lost at frame %d", self._frames - 1)

    def _face_found(self) -> None:
        self.frames_with_face += 1
        if self._had_face:
            return
        self._had_face = True
        if self.lost_events:
            log.info("face found again at frame %d after %d frame(s) without", self._frames - 1,
                     self._frames - self._missing_since)
        else:
            log.info("face found at frame %d", self._frames - 1)


def open_tracker(backend: str = "auto", static: bool = False, smoothing: bool = True,
                 max_faces: int = DEFAULT_MAX_FACES) -> LandmarkTracker:
    """A tracker on the first face-mesh backend that starts (``backend="auto"``) or on the one named.

    static: True for unrelated still images (detection in each, no smoothing), False for video and cameras.
    Returns an open tracker (use it as a context manager to close it). ConfigError for an unknown backend
    name, BackendError when none starts (each backend's reason in the message).
    """
    if isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1:
        raise ValueError(f"max_faces must be an int >= 1, got {max_faces!r}")
    return LandmarkTracker(open_backend(backend, static, max_faces), smoothing=smoothing).open()


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")


def _box_area(points: np.ndarray) -> float:
    """Area of the (x, y) bounding box of (N, 2+) frame-pixel points, square pixels."""
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])


def _face_size(points68: np.ndarray) -> float:
    """Geometric-mean side of the 68-point box, pixels (the quantity the VRN crop maps to 90 px)."""
    return max(_box_area(points68), 1.0) ** 0.5
