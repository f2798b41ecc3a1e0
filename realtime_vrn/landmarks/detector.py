"""Every face in a still image, small and distant ones included: MediaPipe's full-range face detector, then the
Face Mesh on each face's own crop.

Face Mesh alone runs its short-range detector on the whole image scaled to 128 px: faces of ~100 px in a group
photo (or a black-and-white portrait) are below what it sees, and the run said "no face was found". The
full-range detector (192 px input, trained for faces up to ~5 m away) runs on the whole image and, for a long
image, also on overlapping square tiles (a face keeps more of its pixels in a tile); overlapping boxes are merged
(non-maximum suppression). Each box becomes a square crop of CROP_SCALE times its side, where the Face Mesh (one
face, static mode) finds the 478 points, mapped back to frame pixels. The Face Mesh with its own detector runs on
the whole image first: the faces it finds keep exactly the landmarks they had before (large poses too, which the
full-range detector misses); the detector only adds the faces it did not find.

MediaPipe's Solutions API (mediapipe 0.10.21) only; with the Tasks backend the Face Landmarker's own detector
is used (``FaceMeshBackend`` with several faces).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from realtime_vrn.landmarks.base import WARM_UP_SIZE, FaceMeshBackend, native_output_to_log, normalized_to_pixels

log = logging.getLogger(__name__)

#: MediaPipe's default detection threshold.
MIN_DETECTION_CONFIDENCE = 0.5
#: Side of the crop the Face Mesh sees, in detector box sides: the box is the inner face; the mesh's own
#: detector needs forehead, chin and some background around it.
CROP_SCALE = 2.0
#: Boxes overlapping more than this (intersection over union) are one face.
NMS_IOU = 0.3
#: Images longer than this (long side / short side) are also searched in overlapping square tiles.
TILE_ASPECT = 1.2
#: Two meshes whose nose tips are closer than this fraction of the face size are the same face.
SAME_FACE_FRACTION = 0.3
#: Crops smaller than this (pixels) are not searched (a box at the image's corner).
MIN_CROP = 8
#: MediaPipe Face Mesh point 1 is the nose tip (where two results of one face agree best).
NOSE_TIP = 1
#: Faces the Face Mesh also looks for with its own (short-range) detector on the whole image: it finds the
#: large poses (profile faces) the full-range detector misses.
WHOLE_FACES = 4


def square_tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of overlapping square tiles covering a long image (side = the short side, overlapping by
    at least half a tile); the whole image alone when it is nearly square."""
    side = min(width, height)
    long_side = max(width, height)
    if long_side <= TILE_ASPECT * side:
        return []
    count = int(np.ceil(2 * long_side / side)) - 1  # steps of at most half a tile
    starts = np.linspace(0, long_side - side, count).round().astype(int)
    return [(int(s), 0, side) if width >= height else (0, int(s), side) for s in starts]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Indices of the boxes kept, best score first. boxes: (N, 4) float x0, y0, x1, y1 (frame pixels)."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = np.array(order, int)
        if not len(rest):
            break
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
        overlap = inter / (area(boxes[i]) + area(boxes[rest]) - inter)
        order = [j for j, o in zip(order, overlap) if o <= iou]
    return keep


class FullRangeFaceMesh(FaceMeshBackend):
    """Static images: every face (up to ``max_faces``, largest first) via the full-range detector + per-face mesh.

    ``detect`` returns one (478, 3) float32 array per face, frame pixels (``FaceLandmarks.points`` convention; z
    in pixels as x).
    """

    name = "mediapipe_full_range"

    def __init__(self, static: bool = True, max_faces: int = 64) -> None:
        super().__init__(True, max_faces)
        self._detector: Any = None
        self._mesh: Any = None
        self._whole: Any = None  # the Face Mesh with its own detector on the whole image

    def open(self) -> None:
        if self._detector is not None:
            return
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as err:
            raise ImportError(f"the full-range face detector needs mediapipe's Solutions API ({err}); "
                              "pip install mediapipe==0.10.21 (Python <= 3.12)") from err
        with native_output_to_log():
            self._detector = face_detection.FaceDetection(model_selection=1,
                                                          min_detection_confidence=MIN_DETECTION_CONFIDENCE)
            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                            min_detection_confidence=MIN_DETECTION_CONFIDENCE)
            self._whole = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=min(self.max_faces, WHOLE_FACES),
                                             refine_landmarks=True, min_detection_confidence=MIN_DETECTION_CONFIDENCE)
            blank = np.zeros((WARM_UP_SIZE, WARM_UP_SIZE, 3), np.uint8)  # waits for MediaPipe's calculators
            for graph in (self._detector, self._mesh, self._whole):
                graph.process(blank)

    def boxes(self, image_rgb: np.ndarray) -> np.ndarray:
        """(N, 4) float32 face boxes x0, y0, x1, y1 in frame pixels, best first (whole image and tiles, merged)."""
        height, width = image_rgb.shape[:2]
        found: list[tuple[float, float, float, float]] = []
        scores: list[float] = []
        for x0, y0, side in [(0, 0, 0)] + square_tiles(width, height):
            view = image_rgb if side == 0 else np.ascontiguousarray(image_rgb[y0:y0 + side, x0:x0 + side])
            vh, vw = view.shape[:2]
            for d in self._detector.process(view).detections or []:
                b = d.location_data.relative_bounding_box  # normalised to the view's edges
                bx, by = x0 + b.xmin * vw, y0 + b.ymin * vh
                found.append((bx, by, bx + b.width * vw, by + b.height * vh))
                scores.append(float(d.score[0]))
        if not found:
            return np.zeros((0, 4), np.float32)
        boxes = np.asarray(found, np.float32)
        return boxes[nms(boxes, np.asarray(scores))]

    def detect(self, image_rgb: np.ndarray, timestamp: float) -> list[np.ndarray]:
        """The Face Mesh's own result on the whole image (unchanged for the faces it finds), then every face the
        full-range detector adds, found on its own crop; largest first."""
        height, width = image_rgb.shape[:2]
        faces = [normalized_to_pixels(np.array([(p.x, p.y, p.z) for p in face.landmark], np.float64), width, height)
                 for face in self._whole.process(image_rgb).multi_face_landmarks or []]
        for x0, y0, x1, y1 in self.boxes(image_rgb):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            half = CROP_SCALE * max(x1 - x0, y1 - y0) / 2
            left, top = int(max(0, cx - half)), int(max(0, cy - half))
            right, bottom = int(min(width, cx + half)), int(min(height, cy + half))
            if right - left < MIN_CROP or bottom - top < MIN_CROP or _inside_any(faces, (cx, cy)):
                continue
            crop = np.ascontiguousarray(image_rgb[top:bottom, left:right])
            result = self._mesh.process(crop).multi_face_landmarks
            if not result:
                continue
            xyz = np.array([(p.x, p.y, p.z) for p in result[0].landmark], dtype=np.float64)
            points = normalized_to_pixels(xyz, right - left, bottom - top)  # crop pixels (no scaling)
            points[:, 0] += left  # crop -> frame pixels: a shift (z stays in pixels, as x)
            points[:, 1] += top
            if not _seen(points, faces):
                faces.append(points)
        faces.sort(key=lambda p: -_box_area(p))
        return faces[: self.max_faces]

    def close(self) -> None:
        for attr in ("_detector", "_mesh", "_whole"):
            obj = getattr(self, attr)
            setattr(self, attr, None)
            if obj is not None:
                obj.close()


def _box_area(points: np.ndarray) -> float:
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])


def _inside_any(faces: list[np.ndarray], centre: tuple[float, float]) -> bool:
    """Whether a detector box's centre lies in the (x, y) box of a face already found (no second mesh pass)."""
    for f in faces:
        lo, hi = f[:, :2].min(axis=0), f[:, :2].max(axis=0)
        if lo[0] <= centre[0] <= hi[0] and lo[1] <= centre[1] <= hi[1]:
            return True
    return False


def _seen(points: np.ndarray, faces: list[np.ndarray]) -> bool:
    size = _box_area(points) ** 0.5
    return any(np.linalg.norm(points[NOSE_TIP, :2] - f[NOSE_TIP, :2]) < SAME_FACE_FRACTION * size for f in faces)
