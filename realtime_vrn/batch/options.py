"""The settings of a batch, in two typed objects: what the outputs are, and where the work runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from realtime_vrn.config import FUSION_WEIGHT, MESH_FORMATS
from realtime_vrn.errors import ConfigError

#: Frames per part of a long video: about 10 s of a 30 fps clip, ~12 s of work for one CPU worker. Small enough
#: to spread one long video over many workers and to show progress, large enough that the part's start-up
#: (seek, face tracker, CHUNK_WARMUP_FRAMES) costs a few percent.
DEFAULT_CHUNK_FRAMES = 300
#: A part of a video after the first one starts this many frames early, without outputs, so that the face
#: tracker and the temporal smoothing have settled when its first frame is reconstructed (their memory is a
#: frame or two: see surface/smoothing.py).
CHUNK_WARMUP_FRAMES = 8
#: Meshes of a video by default: one per second of a 30 fps clip (a mesh is ~1 MB as OBJ).
DEFAULT_MESH_EVERY = 30


@dataclass(frozen=True)
class OutputSettings:
    """What is computed and written for each input. Recorded in every input's summary with the model's SHA-256:
    a re-run with other settings or another model redoes the input.

    mesh_every: a video's mesh of every N-th frame (frame number divisible by N; 1 = all), None = no meshes.
                Photos get their meshes unless None.
    chunk_frames: frames per part of a video (parts run on different workers and are joined in order).
    max_frames: reconstruct at most the first N frames of each video (None: all).
    video_out: write the annotated video too (such a video is then not split into parts: an encoded video
               cannot be joined from parts without re-encoding it).
    """

    mesh_every: int | None = DEFAULT_MESH_EVERY
    mesh_format: str = "obj"
    y_up: bool = False
    video_out: bool = False
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    max_frames: int | None = None
    smoothing: bool = True
    mediapipe_weight: float = FUSION_WEIGHT  # MediaPipe's share of the surface's depth (surface/fusion.py)
    backend: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("mesh_every", "chunk_frames", "max_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if not 0.0 <= self.mediapipe_weight <= 1.0:
            raise ConfigError(f"mediapipe-weight must be in [0, 1], got {self.mediapipe_weight!r}")
        if self.mesh_format not in MESH_FORMATS:
            raise ConfigError(f"unknown mesh format {self.mesh_format!r}; choose one of: {', '.join(MESH_FORMATS)}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelChoice:
    """An installed model's name or a checkpoint file (neither: the default model)."""

    model: str | None = None
    weights: Path | None = None


@dataclass(frozen=True)
class ClusterSettings:
    """Where the work runs.

    use_ray: False runs every input in this process, one after another (also when Ray is not installed).
    workers: Ray workers (actors, each holding the model once); None = as many as the CPUs allow.
    address: an existing Ray cluster (``HOST:PORT``, ``auto``); None starts a local Ray on this machine.
    cpus_per_worker: CPUs a Ray worker reserves, and its network threads (whole CPUs, at least 1); None = 1 on
                     Ray, every core without Ray. Results are identical for the same thread count (another
                     count sums in another order: vertices then differ by ~0.01 px).
    """

    use_ray: bool = True
    workers: int | None = None
    address: str | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float = 0.0

    @property
    def threads(self) -> int | None:
        """Network threads per worker (None: the backends' default, every core this process may use)."""
        if self.cpus_per_worker is None:
            return 1 if self.use_ray else None
        return max(1, int(self.cpus_per_worker))

    @property
    def ray_cpus(self) -> float:
        return 1.0 if self.cpus_per_worker is None else self.cpus_per_worker

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker is not None and not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
