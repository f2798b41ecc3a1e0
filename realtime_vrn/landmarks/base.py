"""The face-mesh backend interface, the landmark result type, and the table backends register themselves in.

A backend turns an RGB frame into the Face Mesh points (478 per face, frame pixels) of every face it finds.
Backends register themselves by name with a priority and a ``probe`` that says, without loading any model,
why the backend cannot run here (None when it can). ``auto`` tries the available ones from the highest
priority down and reports every failure together (the pyvirtualcam ``register_backend`` pattern):
:mod:`realtime_vrn.landmarks.registry`. MediaPipe is imported inside the backend modules, never at import time
of this package.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)

#: Face Mesh points per face with refined eyes and irises (468 mesh vertices + 10 iris points).
N_POINTS = 478
#: Side of the blank frame a backend sees once when it opens (see ``open_backend``).
WARM_UP_SIZE = 64


@dataclass(frozen=True)
class FaceLandmarks:
    """The landmarks of the face chosen in one frame.

    points:   (478, 3) float32 frame pixels: x right, y down, pixel centres at integers; z is MediaPipe's
              relative depth scaled like x (normalised z * image width), origin near the head centre,
              **smaller z = nearer the camera** (MediaPipe's sign, not the mesh convention).
    points68: (68, 2) float32 frame pixels, the iBUG 300-W layout (see ``ibug68``), taken from ``points``.
    n_faces:  faces detected in the frame (the largest one is reported).
    track:    in a video with every face followed (``LandmarkTracker.process_all``), the face's number in the
              run: 1, 2, ... in order of first appearance, the same for one face over all its frames; else None.
    """

    points: np.ndarray
    points68: np.ndarray
    n_faces: int
    track: int | None = None

    @property
    def box68(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) of the 68 points, frame pixels."""
        lo = self.points68.min(axis=0)
        hi = self.points68.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


class Tracker(Protocol):
    """What the pipeline needs of a landmark tracker: :class:`~realtime_vrn.landmarks.tracker.LandmarkTracker`,
    and the recording and replay of one (:mod:`realtime_vrn.landmarks.recorded`).

    image_rgb: (H, W, 3) uint8 RGB frame pixels; timestamp: seconds, increasing. ``process`` returns the chosen
    (largest) face or None, ``process_all`` every face (photos largest first; a video followed with
    ``every_face`` numbers them, ``FaceLandmarks.track``). The counters are the run summary's.
    """

    lost_events: int

    @property
    def faces_followed(self) -> int: ...

    @property
    def most_faces(self) -> int: ...

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FaceLandmarks | None: ...

    def process_all(self, image_rgb: np.ndarray, timestamp: float) -> list[FaceLandmarks]: ...


class FaceMeshBackend(ABC):
    """Finds faces and their 478 Face Mesh points. Construction is cheap; ``open`` loads the model.

    static:    True for unrelated still images (detect in every image), False for video (track across frames).
    max_faces: how many faces to look for (the tracker keeps the largest).
    """

    name: str = ""

    def __init__(self, static: bool, max_faces: int) -> None:
        self.static = static
        self.max_faces = max_faces

    @abstractmethod
    def open(self) -> None:
        """Load the model; raise with a message a user can act on when it cannot run."""

    @abstractmethod
    def detect(self, image_rgb: np.ndarray, timestamp: float) -> list[np.ndarray]:
        """Faces in one frame.

        image_rgb: (H, W, 3) uint8 RGB, C-contiguous. timestamp: seconds, increasing (video mode).
        returns one (478, 3) float32 array per face, frame pixels (``FaceLandmarks.points`` convention).
        """

    def close(self) -> None:
        """Release the model. Safe to call twice."""

    def __enter__(self) -> "FaceMeshBackend":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def native_output_to_log():
    """Keep what native code writes to stderr (fd 2) off the terminal while the block runs, and log it at DEBUG.

    MediaPipe's C++ side (TFLite's "Created TensorFlow Lite XNNPACK delegate", absl's "W0000 ..." lines) writes
    straight to fd 2 when its graph starts and on its first frames, ignoring GLOG_minloglevel; under ``-q`` that
    chatter came before our one-line messages. With DEBUG logging on (``-vv``) nothing is redirected. Python
    output in the block (sys.stderr) is flushed first and lands in the same log record.
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("native output of the face tracker:\n%s", text)


def normalized_to_pixels(xyz: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised landmarks -> frame pixels.

    xyz: (N, 3) float, x, y in [0, 1] across the image *edges* (0 = left edge of the first pixel), z in
    units of the image width. Returns (N, 3) float32: x, y with pixel centres at integers (hence the
    -0.5), z * width.
    """
    out = np.empty(xyz.shape, dtype=np.float32)
    out[:, 0] = xyz[:, 0] * width - 0.5
    out[:, 1] = xyz[:, 1] * height - 0.5
    out[:, 2] = xyz[:, 2] * width
    return out


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[[bool, int], FaceMeshBackend]
    priority: int
    probe: Callable[[], str | None]


_REGISTRY: dict[str, _Entry] = {}


def register_backend(name: str, factory: Callable[[bool, int], FaceMeshBackend], priority: int,
                     probe: Callable[[], str | None]) -> None:
    """Register a face-mesh backend. ``probe()`` returns why it cannot run here, or None when it can."""
    _REGISTRY[name] = _Entry(name, factory, priority, probe)
