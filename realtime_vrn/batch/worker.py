"""The work of one batch worker: a model loaded once, then parts of videos and photos reconstructed on request.

A :class:`Worker` reuses the pipeline's pieces (backend, surface stage, face tracker, :class:`Reconstructor`,
``MeshWriter``, ``Outputs`` for the annotated video). It writes the meshes (and the annotated video) of a task
into the input's staging folder, which the driver renames into place once every part is done, and returns the
per-frame records to the driver. :class:`WorkerActor` is the same worker as a Ray actor (``ray.remote`` is
applied by :mod:`realtime_vrn.batch.executors`; this module does not import Ray).

A video part gets a new face tracker and smoother (the first part of a video starts them on its first frame,
later parts CHUNK_WARMUP_FRAMES early), so its results depend on its frame range only, never on which worker
ran it or what that worker did before: the same batch gives the same files on one process or on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from realtime_vrn.batch.options import CHUNK_WARMUP_FRAMES, OutputSettings
from realtime_vrn.batch.records import FrameRecords
from realtime_vrn.errors import OutputError, WeightsError

log = logging.getLogger(__name__)

#: Video frames decoded ahead of the reconstruction (as in a normal run: pipeline.VIDEO_PREFETCH).
VIDEO_PREFETCH = 4
#: Environment of a worker process: keep MediaPipe's / TFLite's / FFmpeg's native start-up lines quiet (the
#: CLI sets the same for itself, see cli._setup_logging).
QUIET_NATIVE_LOGS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "OPENCV_FFMPEG_LOGLEVEL": "-8"}


@dataclass(frozen=True)
class ChunkTask:
    """Frames ``start`` to ``stop`` (exclusive; None = to the end) of a video, or a photo (start 0, stop None).

    staging: the input's staging folder (shared by its parts; meshes are named by frame number, so parts
    never write the same file).
    """

    input_id: int
    chunk: int
    path: str
    kind: str
    start: int
    stop: int | None
    staging: str
    settings: OutputSettings


@dataclass
class ChunkResult:
    """What a task produced: counts, the per-frame records (``records.FIELDS``), who ran it and how long."""

    input_id: int
    chunk: int
    frames: int = 0
    frames_with_face: int = 0
    meshes: int = 0
    records: dict[str, np.ndarray] = field(default_factory=dict)
    wall_s: float = 0.0
    worker: str = ""
    outputs: list[str] = field(default_factory=list)  # files the task completed (relative to its staging)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Holds the network and the surface stage; :meth:`run` reconstructs one task. Context manager."""

    def __init__(self, model: str | None, weights: str | None, backend: str = "auto", device: str = "auto",
                 expected_sha256: str | None = None) -> None:
        """expected_sha256: the model the batch was planned with; a worker that finds another file under the
        same name (a cluster node with another install) refuses to start instead of mixing models."""
        self.model, self.weights = model, weights
        self.backend_name, self.device = backend, device
        self.expected_sha256 = expected_sha256
        self.name = worker_name()
        self._backend: Any = None
        self._extractor: Any = None
        self._cfg: Any = None
        self._still_tracker: Any = None

    def open(self) -> "Worker":
        from realtime_vrn.backends.registry import open_backend
        from realtime_vrn.surface.extractors import open_surface
        from realtime_vrn.fileio import file_sha256
        from realtime_vrn.model.checkpoint import read_checkpoint_header
        from realtime_vrn.weights.registry import resolve_weights

        path = resolve_weights(self.model, self.weights)
        if self.expected_sha256 is not None and file_sha256(path) != self.expected_sha256:
            raise WeightsError(f"worker {self.name}: {path} is not the model the batch was started with "
                               f"(SHA-256 differs); install the same model on every machine")
        self._cfg = read_checkpoint_header(path).cfg
        self._backend = open_backend(self.backend_name, path, self.device)
        self._extractor = open_surface("auto", self._cfg, self._backend)
        log.info("worker %s: %s", self.name, self.describe())
        return self

    def describe(self) -> str:
        return self._backend.describe() if self._backend is not None else "not open"

    def _fusion(self, settings: OutputSettings) -> Any:
        """The surface's MediaPipe fusion at the batch's weight (at 0 the Reconstructor leaves it out)."""
        from realtime_vrn.surface.fusion import DepthFusion

        return DepthFusion(self._cfg.input_size, settings.mediapipe_weight).warm_up()

    def close(self) -> None:
        """Release the models. Safe to call twice."""
        tracker, self._still_tracker = self._still_tracker, None
        if tracker is not None:
            tracker.close()
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> "Worker":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, task: ChunkTask, on_frame: Callable[[int], None] | None = None) -> ChunkResult:
        """Reconstruct ``task``; ``on_frame(1)`` is called after each output frame (progress). Raises VRNError
        subclasses (SourceError for an unreadable file, OutputError) with a one-line reason."""
        if self._backend is None:
            raise RuntimeError("open the worker first (use it in a with block)")
        start = time.perf_counter()
        result = ChunkResult(task.input_id, task.chunk, worker=self.name)
        Path(task.staging).mkdir(parents=True, exist_ok=True)
        if task.kind == "video":
            self._run_video(task, result, on_frame or (lambda n: None))
        else:
            self._run_image(task, result)
        result.wall_s = time.perf_counter() - start
        return result

    # -- videos -------------------------------------------------------------------------------------------

    def _run_video(self, task: ChunkTask, result: ChunkResult, on_frame: Callable[[int], None]) -> None:
        from realtime_vrn.landmarks import open_tracker
        from realtime_vrn.sinks.outputs import MeshWriter
        from realtime_vrn.pipeline import Reconstructor
        from realtime_vrn.sources.video import VideoFileSource
        from realtime_vrn.surface.smoothing import LogitSmoother
        from realtime_vrn.bench.timing import LatencyStats

        s = task.settings
        staging = Path(task.staging)
        first = max(0, task.start - CHUNK_WARMUP_FRAMES) if task.start else 0
        records = FrameRecords()
        stats = LatencyStats()
        writer = MeshWriter(s.y_up)
        if s.mesh_every is not None:
            (staging / "meshes").mkdir(exist_ok=True)
        try:
            with VideoFileSource(task.path, start=first, prefetch=VIDEO_PREFETCH) as source, \
                    open_tracker(static=False, smoothing=s.smoothing) as tracker, \
                    _annotated_video(task, source) as annotated:
                rec = Reconstructor(tracker, self._backend, self._cfg, stats, media_fps=source.fps,
                                    smoother=LogitSmoother() if s.smoothing else None, extractor=self._extractor,
                                    fusion=self._fusion(s))
                for frame in source:
                    if task.stop is not None and frame.index >= task.stop:
                        break
                    out = rec.process(frame)
                    if frame.index < task.start:
                        continue  # warm-up: settles the tracker and the smoother, writes nothing
                    saved = (s.mesh_every is not None and frame.index % s.mesh_every == 0 and out.mesh is not None
                             and not out.mesh.is_empty)
                    if saved:
                        writer.put(out.mesh, staging / "meshes" / f"frame_{frame.index:06d}.{s.mesh_format}")
                    records.add(frame.index, 0, out, saved)
                    if annotated is not None:
                        annotated.push(out, stats)
                    result.frames += 1
                    result.frames_with_face += out.has_face
                    on_frame(1)
            if annotated is not None:
                _check_annotated(annotated)
                result.outputs.append("annotated.mp4")
        finally:
            writer.close()  # raises OutputError for a mesh that could not be written
        result.meshes = writer.written
        result.records = records.arrays()

    # -- photos -------------------------------------------------------------------------------------------

    def _run_image(self, task: ChunkTask, result: ChunkResult) -> None:
        from realtime_vrn.pipeline import Reconstructor
        from realtime_vrn.surface.export import export_mesh
        from realtime_vrn.sources.images import read_image_rgb
        from realtime_vrn.sources.base import Frame
        from realtime_vrn.bench.timing import LatencyStats

        s = task.settings
        path = Path(task.path)
        image = read_image_rgb(path)  # SourceError naming the file when it cannot be decoded
        rec = Reconstructor(self._tracker_for_photos(), self._backend, self._cfg, LatencyStats(),
                            extractor=self._extractor, all_faces=True, fusion=self._fusion(s))
        out = rec.process(Frame(image, 0, time.perf_counter(), None, name=path.stem))
        records = FrameRecords()
        faces = [out, *out.others]
        for k, face in enumerate(faces):
            saved = s.mesh_every is not None and face.mesh is not None and not face.mesh.is_empty
            if saved:
                name = f"{path.stem}{f'_face{k}' if k else ''}.{s.mesh_format}"
                try:
                    export_mesh(face.mesh, Path(task.staging) / name, y_up=s.y_up)
                except OSError as err:
                    raise OutputError(f"cannot write {name}: {err.strerror or err}") from err
                result.meshes += 1
                result.outputs.append(name)
            records.add(0, k, face, saved)
        result.frames = 1
        result.frames_with_face = len(faces) if out.has_face else 0
        result.records = records.arrays()

    def _tracker_for_photos(self) -> Any:
        """One still-image tracker per worker (each photo is detected on its own: no state between photos)."""
        from realtime_vrn.landmarks import open_tracker
        from realtime_vrn.pipeline import MAX_FACES

        if self._still_tracker is None:
            self._still_tracker = open_tracker(static=True, smoothing=False, max_faces=MAX_FACES)
        return self._still_tracker


def _annotated_video(task: ChunkTask, source: Any) -> Any:
    """The pipeline's ``Outputs`` drawing the reconstruction into ``annotated.mp4`` (``--video-out``), or a
    context that gives None."""
    if not task.settings.video_out:
        return contextlib.nullcontext()
    from realtime_vrn.config import RunConfig
    from realtime_vrn.sinks.outputs import Outputs

    config = RunConfig(video=Path(task.path), output=Path(task.staging) / "annotated.mp4", headless=True)
    return Outputs(config, source)


def _check_annotated(outputs: Any) -> None:
    """Raise when the annotated video was not completed (``outputs``: closed)."""
    if outputs.report.failed:
        raise OutputError(f"annotated video not completed: {outputs.report.failed[0]}")


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` CPU threads for the network (torch, OpenVINO, ONNX Runtime read
    ``OMP_NUM_THREADS`` through backends.common.cpu_threads): workers sharing a machine must not each start
    one thread per core."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


class WorkerActor:
    """A :class:`Worker` as a Ray actor: models loaded once in ``__init__``, then ``run`` per task."""

    def __init__(self, model: str | None, weights: str | None, backend: str, device: str,
                 expected_sha256: str | None, threads: int) -> None:
        os.environ.update({k: v for k, v in QUIET_NATIVE_LOGS.items() if k not in os.environ})
        limit_threads(threads)
        self._worker = Worker(model, weights, backend, device, expected_sha256).open()

    def describe(self) -> tuple[str, str]:
        """(worker name, backend description): also tells the driver that the models are loaded."""
        return self._worker.name, self._worker.describe()

    def run(self, task: ChunkTask) -> ChunkResult:
        return self._worker.run(task)
