"""Several faces followed through a video: which face of this frame is which face of the last ones.

``FaceTracks.update(faces, timestamp, frame)`` matches the faces the face-mesh backend found in a frame (in the
backend's order, which may change from frame to frame) to the tracks of the frames before, by the distance between
the centres of their landmark boxes (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``), and returns
each face with its track's number. Numbers count up from 1 in order of first appearance (faces new in the same
frame: from left to right) and are never reused in a run. Each track has its own One Euro filter of the points: a
filter only ever sees one person's face. A track that finds no face keeps its number for TRACK_GRACE_FRAMES frames
(Face Mesh misses a face for a frame or two when it re-detects) and is then dropped. New and dropped tracks are
logged once: "face 2 appeared at frame 31", "face 2 lost at frame 58" (the first frame without it; logged when the
grace has passed).

No appearance is compared: a different person who steps into the place of a face lost less than the grace ago
continues its track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from realtime_vrn.landmarks.ibug68 import to_ibug68
from realtime_vrn.landmarks.one_euro import OneEuroFilter, OneEuroParams

log = logging.getLogger(__name__)

#: Frames a track waits for its face before it is dropped (0.2 s at 30 FPS: Face Mesh's own re-detection gaps
#: are 1-3 frames; a longer grace would hand a lost face's number to a newcomer in its place).
TRACK_GRACE_FRAMES = 6
#: A face matches a track only if its box centre moved less than this, in track face sizes (geometric-mean box
#: side), since the track was last seen: a head turn moves a face about one face size per second (0.03 per frame
#: at 30 FPS); two faces side by side are at least one face size apart.
MAX_CENTRE_SHIFT = 0.5
#: ... and if its size changed by less than this factor (someone passing in front of a face is another face).
MAX_SIZE_RATIO = 1.5


def landmark_box(points: np.ndarray) -> np.ndarray:
    """(4,) float64 x0, y0, x1, y1 of the (x, y) of (N, 2+) frame-pixel points."""
    xy = np.asarray(points)[:, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float64)


def match_cost(track_boxes: np.ndarray, face_boxes: np.ndarray) -> np.ndarray:
    """(T, F) cost of giving face f to track t: the centre shift in track face sizes; inf where the shift or the
    size change is too large (MAX_CENTRE_SHIFT, MAX_SIZE_RATIO). Boxes: (T, 4) / (F, 4) x0, y0, x1, y1."""
    def centre_size(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extent = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        return (boxes[:, :2] + boxes[:, 2:]) / 2, np.sqrt(extent[:, 0] * extent[:, 1])

    track_centre, track_size = centre_size(np.asarray(track_boxes, np.float64).reshape(-1, 4))
    face_centre, face_size = centre_size(np.asarray(face_boxes, np.float64).reshape(-1, 4))
    shift = np.linalg.norm(track_centre[:, None] - face_centre[None], axis=2) / track_size[:, None]
    ratio = face_size[None] / track_size[:, None]
    far = (shift >= MAX_CENTRE_SHIFT) | (ratio > MAX_SIZE_RATIO) | (ratio < 1 / MAX_SIZE_RATIO)
    return np.where(far, np.inf, shift)


def associate(track_boxes: np.ndarray, face_boxes: np.ndarray) -> list[tuple[int, int]]:
    """(track index, face index) pairs of the cheapest one-to-one matching under :func:`match_cost`; pairs whose
    cost is inf are left out (that track found no face, that face starts a track)."""
    from scipy.optimize import linear_sum_assignment

    cost = match_cost(track_boxes, face_boxes)
    if cost.size == 0:
        return []
    finite = np.isfinite(cost)
    rows, cols = linear_sum_assignment(np.where(finite, cost, 1e6))  # inf is not allowed: a prohibitive cost
    return [(int(r), int(c)) for r, c in zip(rows, cols) if finite[r, c]]


@dataclass
class _Track:
    number: int
    box: np.ndarray  # landmark box where the face was last seen (raw points), frame pixels
    filter: OneEuroFilter | None
    last_frame: int


class FaceTracks:
    """The face tracks of one video (see the module docstring). ``smoothing``: One Euro parameters of the points,
    or None for none."""

    def __init__(self, smoothing: OneEuroParams | None, grace_frames: int = TRACK_GRACE_FRAMES) -> None:
        if grace_frames < 0:
            raise ValueError(f"grace_frames must be >= 0, got {grace_frames}")
        self.smoothing = smoothing
        self.grace_frames = grace_frames
        self._tracks: list[_Track] = []
        self.started = 0  # tracks started so far; the last number given
        self.most_at_once = 0  # the most faces seen in one frame

    @property
    def numbers(self) -> list[int]:
        """Numbers of the live tracks (seen within the grace), ascending."""
        return [t.number for t in self._tracks]

    def update(self, faces: list[np.ndarray], timestamp: float, frame: int) -> list[tuple[int, np.ndarray]]:
        """faces: one (478, 3) float32 frame-pixel array per face found in frame ``frame`` (any order);
        timestamp: seconds, increasing (drives the filters). Returns (track number, points) per face, points
        smoothed by that track's filter, in ascending track number."""
        pairs = associate(np.array([t.box for t in self._tracks]).reshape(-1, 4),
                          np.array([landmark_box(f) for f in faces]).reshape(-1, 4))
        track_of = {face: self._tracks[track] for track, face in pairs}
        newcomers = sorted(set(range(len(faces))) - set(track_of), key=lambda k: float(faces[k][:, 0].mean()))
        track_of.update({k: self._start(frame) for k in newcomers})  # faces new in one frame: left to right
        out = []
        for k, points in enumerate(faces):
            track = track_of[k]
            track.box, track.last_frame = landmark_box(points), frame
            if track.filter is not None:
                points = track.filter(points, timestamp, scale=_face_size(to_ibug68(points)))
            out.append((track.number, points))
        self._drop_stale(frame)
        self.most_at_once = max(self.most_at_once, len(faces))
        return sorted(out, key=lambda item: item[0])

    def _start(self, frame: int) -> _Track:
        self.started += 1
        track = _Track(self.started, np.zeros(4), OneEuroFilter(self.smoothing) if self.smoothing else None, frame)
        self._tracks.append(track)
        log.info("face %d appeared at frame %d", track.number, frame)
        return track

    def _drop_stale(self, frame: int) -> None:
        for track in [t for t in self._tracks if frame - t.last_frame > self.grace_frames]:
            log.info("face %d lost at frame %d", track.number, track.last_frame + 1)
            self._tracks.remove(track)


def _face_size(points68: np.ndarray) -> float:
    """Geometric-mean side of the 68-point box, pixels: the One Euro speed normaliser, as for a single face."""
    box = landmark_box(points68)
    return float(max((box[2] - box[0]) * (box[3] - box[1]), 1.0) ** 0.5)
