"""Recorded landmarks: write a run's tracker output to a file, and replay it instead of running MediaPipe.

Why: the GPU machines we benchmark on have no MediaPipe (it runs on the CPU anyway, on its own thread in the
pipelined loop), and a recorded run makes later runs reproducible landmark for landmark.

File (``.npz``): ``points`` (N, 478, 3) float32 frame pixels (``FaceLandmarks.points``, NaN rows where no face
was found), ``points68`` (N, 68, 2) float32, ``n_faces`` (N,) int32, ``frame_size`` (2,) int32 (width, height),
``version`` () int32. Frame k of the recording is the k-th frame the tracker processed, i.e. frame k of a
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

FORMAT_VERSION = 1


class RecordingTracker:
    """Wraps a tracker and keeps every result; :meth:`close` writes them to ``path`` (atomically)."""

    def __init__(self, tracker, path: str | Path) -> None:
        self.tracker = tracker
        self.path = Path(path)
        self._points: list[np.ndarray] = []
        self._points68: list[np.ndarray] = []
        self._n_faces: list[int] = []
        self._size: tuple[int, int] | None = None

    def __getattr__(self, name: str):  # frames_with_face, lost_events, ... of the wrapped tracker
        return getattr(self.tracker, name)

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None:
        found = self.tracker.process(image_rgb, timestamp)
        self._size = (image_rgb.shape[1], image_rgb.shape[0])
        if found is None:
            self._points.append(np.full((N_POINTS, 3), np.nan, np.float32))
            self._points68.append(np.full((68, 2), np.nan, np.float32))
            self._n_faces.append(0)
        else:
            self._points.append(np.asarray(found.points, np.float32))
            self._points68.append(np.asarray(found.points68, np.float32))
            self._n_faces.append(int(found.n_faces))
        return found

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
                                version=np.int32(FORMAT_VERSION))
            write_atomic(self.path, buffer.getvalue())
            log.info("recorded landmarks of %d frames to %s", len(self._n_faces), self.path)
        self.tracker.close()

    def __enter__(self) -> "RecordingTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayTracker:
    """The tracker interface (``process(image, timestamp) -> FaceLandmarks | None``) over a recording."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path) as data:
                version = int(data["version"])
                self._points = data["points"].astype(np.float32)
                self._points68 = data["points68"].astype(np.float32)
                self._n_faces = data["n_faces"].astype(np.int32)
                self._size = tuple(int(v) for v in data["frame_size"])
        except FileNotFoundError as err:
            raise ConfigError(f"landmark recording {self.path} does not exist") from err
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"{self.path} is not a landmark recording of realtime-vrn ({err}); record one with "
                              "`realtime-vrn --video CLIP --record-landmarks FILE.npz`") from err
        n = len(self._n_faces)
        if version != FORMAT_VERSION or n == 0 or self._points.shape != (n, N_POINTS, 3) \
                or self._points68.shape != (n, 68, 2):
            raise ConfigError(f"{self.path}: unsupported or empty landmark recording (version {version}, "
                              f"{n} frames)")
        self._next = 0
        self.frames_with_face = 0
        self.frames_without_face = 0
        self.lost_events = 0

    def __len__(self) -> int:
        return len(self._n_faces)

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None:
        size = (image_rgb.shape[1], image_rgb.shape[0])
        if size != self._size:
            raise ConfigError(f"{self.path} was recorded on {self._size[0]}x{self._size[1]} frames, this input is "
                              f"{size[0]}x{size[1]}: replay it on the video it was recorded from")
        k = self._next % len(self)
        self._next += 1
        if self._n_faces[k] == 0:
            self.frames_without_face += 1
            return None
        self.frames_with_face += 1
        return FaceLandmarks(points=self._points[k], points68=self._points68[k], n_faces=int(self._n_faces[k]))

    def close(self) -> None:
        pass

    def __enter__(self) -> "ReplayTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
