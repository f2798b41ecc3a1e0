"""Per-frame face landmarks: a face-mesh backend, the largest face, One Euro smoothing, lost/found counters."""

from __future__ import annotations

import logging
from functools import partial
from typing import Callable

import numpy as np

from realtime_vrn.contracts import check_image
from realtime_vrn.landmarks.base import N_POINTS, FaceLandmarks, FaceMeshBackend, native_output_to_log
from realtime_vrn.landmarks.ibug68 import to_ibug68
from realtime_vrn.landmarks.one_euro import OneEuroFilter, OneEuroParams
from realtime_vrn.landmarks.registry import open_backend
from realtime_vrn.landmarks.tracks import FaceTracks

log = logging.getLogger(__name__)

#: Faces to look for. 2 lets the tracker keep the largest face when someone walks behind the user (the
#: nearest face is the one to reconstruct). Face Mesh in video mode with max_num_faces=2 runs its detector on
#: every frame while it tracks one face (+1.8 ms per frame on our 2-core CPU: 6.4 vs 4.6 ms median), so a video
#: tracker follows one face and takes a census of all faces every CENSUS_EVERY frames (one static-mode pass,
#: ~0.2 ms per frame amortised); it tracks several only while several are in view.
DEFAULT_MAX_FACES = 2
#: Frames between two face counts in single-face mode, and single-face frames before leaving several-face mode
#: (one second at 30 FPS: a second face is noticed within a second).
CENSUS_EVERY = 30

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

    With ``follow_all`` (a video backend looking for several faces) ``process_all`` follows every face as a
    numbered track (:class:`~realtime_vrn.landmarks.tracks.FaceTracks`: one filter per face, "face 2 appeared /
    lost" logged) and ``faces_followed`` / ``most_faces`` count them.
    """

    def __init__(self, backend: FaceMeshBackend, *, smoothing: bool = True,
                 smoothing_params: OneEuroParams = SMOOTHING,
                 several: Callable[[bool], FaceMeshBackend] | None = None, follow_all: bool = False) -> None:
        """several: for a single-face video backend, a factory ``several(static) -> backend`` of the same kind
        looking for several faces: the static one counts faces every CENSUS_EVERY frames, the video one tracks
        while several faces are in view (see DEFAULT_MAX_FACES)."""
        if follow_all and (backend.static or several is not None):
            raise ValueError("follow_all needs a video backend that looks for every face itself (no census)")
        self.backend = backend
        self._several = several
        self._census: FaceMeshBackend | None = None
        self._multi: FaceMeshBackend | None = None
        self._single_streak = 0
        self.smoothing = smoothing and not backend.static
        self._filter = OneEuroFilter(smoothing_params)
        self._tracks = FaceTracks(smoothing_params if self.smoothing else None) if follow_all else None
        # with tracks, "face 2 appeared / lost" says it per face; "face found / lost" only under -vv
        self._announce = log.debug if follow_all else log.info
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
            for extra in (self._census, self._multi):
                if extra is not None:
                    extra.close()
            self._census = self._multi = None
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
        faces = self._faces(image_rgb, timestamp)
        if not faces:
            return None
        points = faces[0]
        if self.smoothing:
            points = self._filter(points, timestamp, scale=_face_size(to_ibug68(points)))
        return FaceLandmarks(points=points, points68=to_ibug68(points), n_faces=len(faces))

    def process_all(self, image_rgb: np.ndarray, timestamp: float) -> list[FaceLandmarks]:
        """Landmarks of every face found (up to the backend's ``max_faces``); [] when none.

        Still images: largest first, ``track`` None. A ``follow_all`` video tracker: every face with its track
        number (``FaceLandmarks.track``), in ascending number, points smoothed by their own track's filter. Same
        image and point conventions as :meth:`process`.
        """
        if self._tracks is None and self.smoothing:
            raise RuntimeError("process_all on video needs a tracker that follows every face "
                               "(open_tracker(every_face=True))")
        faces = self._faces(image_rgb, timestamp)
        if self._tracks is None:
            return [FaceLandmarks(points=p, points68=to_ibug68(p), n_faces=len(faces)) for p in faces]
        return [FaceLandmarks(points=p, points68=to_ibug68(p), n_faces=len(faces), track=number)
                for number, p in self._tracks.update(faces, timestamp, self._frames - 1)]

    @property
    def faces_followed(self) -> int:
        """Face tracks started so far (``follow_all``; 0 otherwise)."""
        return self._tracks.started if self._tracks is not None else 0

    @property
    def most_faces(self) -> int:
        """The most faces followed in one frame (``follow_all``; 0 otherwise)."""
        return self._tracks.most_at_once if self._tracks is not None else 0

    def _faces(self, image_rgb: np.ndarray, timestamp: float) -> list[np.ndarray]:
        """Every face's (478, 3) points, largest first; counts frames with and without a face."""
        check_image(image_rgb)
        if not self._opened:
            raise RuntimeError("open the tracker first (use it in a with block)")
        if self._frames == 0:  # the first frame: MediaPipe's start-up chatter (census and multi-face backends
            # are warmed up by open_backend under the same capture when they are created)
            with native_output_to_log():
                faces = self._detect(np.ascontiguousarray(image_rgb), timestamp)
        else:
            faces = self._detect(np.ascontiguousarray(image_rgb), timestamp)
        self._frames += 1
        if not faces:
            self._no_face()
            return []
        for points in faces:
            if points.shape != (N_POINTS, 3):
                raise RuntimeError(f"backend {self.backend.name} returned points of shape {points.shape}, "
                                   f"expected ({N_POINTS}, 3)")
        self._face_found()
        return sorted(faces, key=_box_area, reverse=True)

    def _detect(self, image: np.ndarray, timestamp: float) -> list[np.ndarray]:
        """Every face's points; one face tracked cheaply unless a census found several (see DEFAULT_MAX_FACES)."""
        if self._several is None:
            return self.backend.detect(image, timestamp)
        if self._multi is not None:
            faces = self._multi.detect(image, timestamp)
            self._single_streak = self._single_streak + 1 if len(faces) <= 1 else 0
            if self._single_streak >= CENSUS_EVERY:
                log.info("one face in view again: tracking a single face")
                self._multi.close()
                self._multi = None
            return faces
        faces = self.backend.detect(image, timestamp)
        if self._frames % CENSUS_EVERY == 0:
            if self._census is None:
                self._census = self._several(True)
                self._census.open()
            everyone = self._census.detect(image, timestamp)
            if len(everyone) > 1:
                log.info("%d faces in view: tracking all of them and reconstructing the largest", len(everyone))
                self._multi = self._several(False)
                self._multi.open()
                self._single_streak = 0
                return everyone
        return faces

    def _no_face(self) -> None:
        self.frames_without_face += 1
        if self._had_face:
            self._had_face = False
            self.lost_events += 1
            self._missing_since = self._frames
            self._filter.reset()
            self._announce("face lost at frame %d", self._frames - 1)

    def _face_found(self) -> None:
        self.frames_with_face += 1
        if self._had_face:
            return
        self._had_face = True
        if self.lost_events:
            self._announce("face found again at frame %d after %d frame(s) without", self._frames - 1,
                           self._frames - self._missing_since)
        else:
            self._announce("face found at frame %d", self._frames - 1)


def open_tracker(backend: str = "auto", static: bool = False, smoothing: bool = True,
                 max_faces: int = DEFAULT_MAX_FACES, every_face: bool = False) -> LandmarkTracker:
    """A tracker on the first face-mesh backend that starts (``backend="auto"``) or on the one named.

    static: True for unrelated still images (detection in each, no smoothing), False for video and cameras.
    every_face: video: the backend tracks up to ``max_faces`` faces itself (MediaPipe video mode with
    max_num_faces = max_faces) and ``process_all`` follows each as a numbered track (``--faces all``).
    Returns an open tracker (use it as a context manager to close it). ConfigError for an unknown backend
    name, BackendError when none starts (each backend's reason in the message).
    """
    if isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1:
        raise ValueError(f"max_faces must be an int >= 1, got {max_faces!r}")
    if static and backend == "auto":
        full_range = _open_full_range(max_faces)
        if full_range is not None:
            return LandmarkTracker(full_range, smoothing=smoothing).open()
    if every_face and not static:
        return LandmarkTracker(open_backend(backend, False, max_faces), smoothing=smoothing, follow_all=True).open()
    if static or max_faces == 1:
        return LandmarkTracker(open_backend(backend, static, max_faces), smoothing=smoothing).open()
    single = open_backend(backend, False, 1)
    several = partial(_create_backend, single.name, max_faces=max_faces)
    return LandmarkTracker(single, smoothing=smoothing, several=several).open()


def _open_full_range(max_faces: int) -> FaceMeshBackend | None:
    """The full-range detector + per-face mesh for still images (sees small and distant faces), or None where
    it cannot start (a mediapipe without the Solutions API): then the Face Mesh's own detector is used."""
    from realtime_vrn.landmarks.detector import FullRangeFaceMesh

    backend = FullRangeFaceMesh(max_faces=max_faces)
    try:
        backend.open()
    except Exception as err:  # noqa: BLE001 - the next choice is tried and says what is wrong with it
        backend.close()
        log.info("full-range face detector unavailable (%s); using the Face Mesh's own detector", err)
        return None
    log.info("face tracker backend: %s (image mode)", backend.name)
    return backend


def _create_backend(name: str, static: bool, max_faces: int) -> FaceMeshBackend:
    return open_backend(name, static, max_faces)


def _box_area(points: np.ndarray) -> float:
    """Area of the (x, y) bounding box of (N, 2+) frame-pixel points, square pixels."""
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])


def _face_size(points68: np.ndarray) -> float:
    """Geometric-mean side of the 68-point box, pixels (the quantity the VRN crop maps to 90 px)."""
    return max(_box_area(points68), 1.0) ** 0.5
