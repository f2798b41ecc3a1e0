"""Recorded landmarks: write a run's tracker output to a file, and replay it instead of running MediaPipe.

Why: the GPU machines we benchmark on have no MediaPipe (it runs on the CPU anyway, on its own thread in the
pipelined loop), and a recorded run makes later runs reproducible landmark for landmark.

File (``.npz``): ``points`` (N, 478, 3) float32 frame pixels (``FaceLandmarks.points``, NaN rows where no face
was found), ``points68`` (N, 68, 2) float32, ``n_faces`` (N,) int32, ``frame_size`` (2,) int32 (width, height),
``version`` () int32, and since version 2 the identity of the source it was recorded from: ``source_name`` ()
str (file name), ``source_frames`` () int32 (the source's frame count, -1 when unknown) and ``fingerprint``
(K, 16, 16) uint8, the first K = FINGERPRINT_FRAMES frames shrunk to 16x16 grey (area average, so the same clip
decoded by another FFmpeg still matches). Replay refuses a source whose frame count or fingerprint differs
(a recording of another clip of the same size used to replay silently); version-1 files replay unchecked, with
a note in the log. Frame k of the recording is the k-th frame the tracker processed, i.e. frame k of a
video file read without dropping frames (a run cut short by ``--max-frames`` may have recorded a frame or two
that the pipelined loop prepared ahead). Replay serves them in that order (wrapping around for ``--loop``) and
refuses frames of another size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from realtime_vrn.errors import ConfigError
from realtime_vrn.landmarks.base import N_POINTS, FaceLandmarks

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: Frames of the source kept (as 16x16 grey thumbnails) to recognise it at replay.
FINGERPRINT_FRAMES = 3
FINGERPRINT_SIZE = 16
#: Mean absolute difference (grey levels, 0-255) above which a thumbnail is another picture. Re-decoding the same
#: file differs by < 1 level; two different faces' clips differ by tens.
FINGERPRINT_TOLERANCE = 6.0


def fingerprint(image_rgb: np.ndarray) -> np.ndarray:
    """(16, 16) uint8 grey thumbnail of an (H, W, 3) uint8 RGB frame (area average)."""
    import cv2

    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (FINGERPRINT_SIZE, FINGERPRINT_SIZE), interpolation=cv2.INTER_AREA)


def source_identity(source) -> dict:
    """What a recording stores about a source: its name and frame count (fingerprints are added per frame)."""
    count = source.frame_count
    return {"name": str(source.name), "frames": -1 if count is None else int(count)}


class RecordingTracker:
    """Wraps a tracker and keeps every result; :meth:`close` writes them to ``path`` (atomically)."""

    def __init__(self, tracker, path: str | Path, source: dict | None = None) -> None:
        """source: :func:`source_identity` of the source being recorded (name and frame count)."""
        self.tracker = tracker
        self.path = Path(path)
        self._source = source or {"name": "", "frames": -1}
        self._fingerprint: list[np.ndarray] = []
        self._points: list[np.ndarray] = []
        self._points68: list[np.ndarray] = []
        self._n_faces: list[int] = []
        self._size: tuple[int, int] | None = None
        self._warned_faces = False

    def __getattr__(self, name: str):  # frames_with_face, lost_events, ... of the wrapped tracker
        return getattr(self.tracker, name)

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None:
        found = self.tracker.process(image_rgb, timestamp)
        self._record(image_rgb, found)
        return found

    def process_all(self, image_rgb: np.ndarray, timestamp: float) -> list[FaceLandmarks]:
        """Every face (``--faces all`` on photos); the recording keeps the largest, as :meth:`process` would."""
        faces = self.tracker.process_all(image_rgb, timestamp)
        if len(faces) > 1 and not self._warned_faces:
            log.info("the landmark recording keeps the largest face of each picture (%d found here)", len(faces))
            self._warned_faces = True
        self._record(image_rgb, faces[0] if faces else None)
        return faces

    def _record(self, image_rgb: np.ndarray, found: FaceLandmarks | None) -> None:
        self._size = (image_rgb.shape[1], image_rgb.shape[0])
        if len(self._fingerprint) < FINGERPRINT_FRAMES:
            self._fingerprint.append(fingerprint(image_rgb))
        if found is None:
            self._points.append(np.full((N_POINTS, 3), np.nan, np.float32))
            self._points68.append(np.full((68, 2), np.nan, np.float32))
            self._n_faces.append(0)
        else:
            self._points.append(np.asarray(found.points, np.float32))
            self._points68.append(np.asarray(found.points68, np.float32))
            self._n_faces.append(int(found.n_faces))

    def close(self) -> None:
        from realtime_vrn.fileio import write_atomic

        if self._size is None:
            log.warning("no frames were processed: no landmarks recorded to %s", self.path)
        else:
            import io

            buffer = io.BytesIO()
            np.savez_compressed(buffer, points=np.stack(self._points), points68=np.stack(self._points68),
                                n_faces=np.asarray(self._n_faces, np.int32),
                                frame_size=np.asarray(self._size, np.int32),
                                version=np.int32(FORMAT_VERSION), source_name=np.str_(self._source["name"]),
                                source_frames=np.int32(self._source["frames"]),
                                fingerprint=np.stack(self._fingerprint))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, buffer.getvalue())
            log.info("recorded landmarks of %d frames to %s", len(self._n_faces), self.path)
        self.tracker.close()

    def __enter__(self) -> "RecordingTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayTracker:
    """The tracker interface (:class:`~realtime_vrn.landmarks.base.Tracker`) over a recording of one face per
    frame."""

    #: A recording holds one face per frame and follows no face tracks.
    faces_followed = 0
    most_faces = 0

    def __init__(self, path: str | Path, source: dict | None = None) -> None:
        """source: :func:`source_identity` of the source to replay on; refused when it is not the recorded one."""
        self.path = Path(path)
        self._fingerprint: np.ndarray | None = None
        self._source_name = "this input"
        try:
            with np.load(self.path) as data:
                version = int(data["version"])
                self._points = data["points"].astype(np.float32)
                self._points68 = data["points68"].astype(np.float32)
                self._n_faces = data["n_faces"].astype(np.int32)
                self._size = tuple(int(v) for v in data["frame_size"])
                if version >= 2:
                    self._source = {"name": str(data["source_name"]), "frames": int(data["source_frames"])}
                    self._fingerprint = data["fingerprint"].astype(np.uint8)
        except FileNotFoundError as err:
            raise ConfigError(f"landmark recording {self.path} does not exist") from err
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"{self.path} is not a landmark recording of realtime-vrn ({err}); record one with "
                              "`realtime-vrn --video CLIP --record-landmarks FILE.npz`") from err
        n = len(self._n_faces)
        if version not in (1, FORMAT_VERSION) or n == 0 or self._points.shape != (n, N_POINTS, 3) \
                or self._points68.shape != (n, 68, 2):
            raise ConfigError(f"{self.path}: unsupported or empty landmark recording (version {version}, "
                              f"{n} frames)")
        if source is not None:
            self._check_source(source)
        self._next = 0
        self.frames_with_face = 0
        self.frames_without_face = 0
        self.lost_events = 0

    def __len__(self) -> int:
        return len(self._n_faces)

    def _check_source(self, source: dict) -> None:
        if self._fingerprint is None:
            log.info("%s was recorded by an older realtime-vrn without the identity of its clip: not checked",
                     self.path)
            return
        recorded = self._source
        if recorded["frames"] >= 0 and source["frames"] >= 0 and recorded["frames"] != source["frames"]:
            raise ConfigError(f"{self.path} was recorded on {recorded['name']} ({recorded['frames']} frames), this "
                              f"input {source['name']} has {source['frames']}: replay it on the clip it was "
                              f"recorded from")
        if recorded["name"] != source["name"]:
            log.info("%s was recorded on %s, replaying it on %s (same frame count; frames are compared)", self.path,
                     recorded["name"], source["name"])
        self._source_name = source["name"]

    def _check_frame(self, k: int, image_rgb: np.ndarray) -> None:
        """The first frames must look like the recorded ones (same clip), compared as 16x16 grey thumbnails."""
        difference = float(np.abs(fingerprint(image_rgb).astype(np.float32) - self._fingerprint[k]).mean())
        if difference > FINGERPRINT_TOLERANCE:
            raise ConfigError(f"{self.path} was recorded on {self._source['name']}, and frame {k} of "
                              f"{self._source_name} is another picture (mean difference {difference:.0f} grey "
                              f"levels): replay it on the clip it was recorded from")

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None:
        size = (image_rgb.shape[1], image_rgb.shape[0])
        if size != self._size:
            raise ConfigError(f"{self.path} was recorded on {self._size[0]}x{self._size[1]} frames, this input is "
                              f"{size[0]}x{size[1]}: replay it on the video it was recorded from")
        k = self._next % len(self)
        if self._fingerprint is not None and self._next < len(self._fingerprint):
            self._check_frame(k, image_rgb)
        self._next += 1
        if self._n_faces[k] == 0:
            self.frames_without_face += 1
            return None
        self.frames_with_face += 1
        return FaceLandmarks(points=self._points[k], points68=self._points68[k], n_faces=int(self._n_faces[k]))

    def process_all(self, image_rgb: np.ndarray, timestamp: float) -> list[FaceLandmarks]:
        """The recorded face, as a list (a recording holds one face per frame)."""
        found = self.process(image_rgb, timestamp)
        return [] if found is None else [found]

    def close(self) -> None:
        pass

    def __enter__(self) -> "ReplayTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
