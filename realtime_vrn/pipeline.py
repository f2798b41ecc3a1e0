"""The per-frame reconstruction and the loop that drives a whole run.

``Reconstructor.process`` turns one frame into a coloured mesh in frame coordinates:
landmarks (MediaPipe, 478 -> 68 points) -> VRN crop -> network backend (low-res logits) -> surface
(iso-surface at p = 0.5) -> colours from the crop -> inverse crop to frame pixels.
``run`` opens the source, model, renderer and outputs from a :class:`RunConfig` and loops until the source
ends, the user quits or ``max_frames`` is reached.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from realtime_vrn.config import RunConfig
from realtime_vrn.crop import CropTransform, warm_up as warm_up_crop
from realtime_vrn.model.guidance import NetworkInputs, mediapipe_in_crop, uses_mediapipe_depth
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.smoothing import LogitSmoother
from realtime_vrn.bench.timing import LatencyStats
from realtime_vrn.surface.colour import coloured_in_image_frame, warm_up as warm_up_colours
from realtime_vrn.surface.fusion import DepthFusion
from realtime_vrn.surface.extract import SurfaceExtractor
from realtime_vrn.surface.mesh import Mesh

if TYPE_CHECKING:
    from realtime_vrn.backends.base import Backend
    from realtime_vrn.landmarks.base import FaceLandmarks, Tracker
    from realtime_vrn.sinks.outputs import OutputsReport
    from realtime_vrn.surface.extractors import SurfaceStage

log = logging.getLogger(__name__)

#: RSS is sampled after this many frames (warm) and then every RSS_EVERY frames; the trace keeps at most
#: RSS_TRACE_MAX samples (every other one is dropped when full), so it stays bounded on endless runs.
WARM_FRAMES = 100
RSS_EVERY = 1000
RSS_TRACE_MAX = 200
#: Frames decoded ahead of the pipeline for video files (a bounded queue: decoding overlaps processing).
VIDEO_PREFETCH = 4
#: Faces reconstructed per photo or video frame with --faces all (a crowd photo beyond this keeps its largest
#: faces; a video follows the first this many, and the Face Mesh looks for more while fewer are in view).
MAX_FACES = 32


@dataclass
class Reconstruction:
    """What one frame produced.

    mesh: coloured Mesh in frame='image' (frame pixels, y down), or None when no face was found.
    crop_image: (S, S, 3) uint8 RGB network input crop, or None.
    timings: seconds per stage for this frame.
    """

    frame: Any  # a sources.Frame, or a stand-in with image, index, timestamp (and name)
    landmarks: FaceLandmarks | None = None
    crop: CropTransform | None = None
    crop_image: np.ndarray | None = None
    logits: Any = None  # (D, g, g) float32 network output (g = cfg.grid_size): NumPy, or CuPy with a GPU surface stage
    mesh: Mesh | None = None
    batch: np.ndarray | None = None  # (1, C, S, S) float32 network input, between prepare() and finish()
    timings: dict[str, float] = field(default_factory=dict)
    others: list["Reconstruction"] = field(default_factory=list)  # --faces all: the frame's other faces

    @property
    def faces(self) -> list["Reconstruction"]:
        """Every face of this frame with a mesh (empty meshes left out): photos largest first, video in
        ascending track number (``track``)."""
        return [r for r in [self, *self.others] if r.mesh is not None and not r.mesh.is_empty]

    @property
    def meshes(self) -> list[Mesh]:
        """Every face's mesh in this frame, in the order of :attr:`faces`."""
        return [r.mesh for r in self.faces]

    @property
    def track(self) -> int | None:
        """This face's number in a video with every face followed (1, 2, ... by first appearance), else None."""
        return None if self.landmarks is None else self.landmarks.track

    @property
    def has_face(self) -> bool:
        return self.landmarks is not None


class Reconstructor:
    """One frame in, one mesh out. Owns no device resources: the tracker and backend are passed in."""

    def __init__(self, tracker: Tracker, backend: Backend, cfg: VRNConfig, stats: LatencyStats | None = None,
                 media_fps: float | None = None, smoother: LogitSmoother | None = None,
                 extractor: SurfaceStage | None = None, all_faces: bool = False,
                 fusion: DepthFusion | None = None) -> None:
        """media_fps: for offline video, the file's frame rate; the tracker then runs on the media timeline
        (frame index / fps, monotonic even when looping) so smoothing does not depend on processing speed.
        smoother: temporal filter of the network output (video and camera; None for still images).
        extractor: the surface stage (default: the CPU SurfaceExtractor); a GPU one (``on_device`` True, see
        :mod:`realtime_vrn.surface.gpu.extractor`) gets the backend's logits without leaving the GPU, and then the
        "network" time only covers launching the forward pass (the GPU runs it while "surface" waits).
        all_faces: reconstruct every face the tracker finds (``tracker.process_all``), not only the largest. In a
        video the tracker numbers the faces (``FaceLandmarks.track``) and each track gets its own smoother (a
        fresh ``LogitSmoother`` with ``smoother``'s parameters), which never sees another person's face.
        fusion: MediaPipe's relief averaged into the surface (:mod:`realtime_vrn.surface.fusion`; the runs pass
        the configured weight); None leaves the network's surface alone."""
        self.all_faces = all_faces
        self.tracker = tracker
        self.smoother = smoother
        self._track_smoothers: dict[int, LogitSmoother] = {}  # track number -> its smoother (tracks in view)
        self.media_fps = media_fps
        self.backend = backend
        self.cfg = cfg
        self.extractor = extractor or SurfaceExtractor(cfg)
        self.fusion = fusion if fusion is not None and fusion.weight > 0 else None
        self.on_device = self.extractor.on_device
        self.stats = stats or LatencyStats()
        # the network input's arrays, reused frame after frame; its heatmaps' loop, the crop's and the surface
        # stage's last step compiled now, not on the first frame
        self.inputs = NetworkInputs(cfg).warm_up()
        warm_up_crop(cfg.input_size)
        warm_up_colours()

    def process(self, frame: Any) -> Reconstruction:
        """frame: a sources.Frame (image (H, W, 3) uint8 RGB, timestamp). Never raises for a missing face."""
        return self.finish(self.prepare(frame))

    def prepare(self, frame: Any) -> Reconstruction:
        """The CPU front half: landmarks, crop and the network input (``rec.batch``, (1, C, S, S) float32).
        With ``all_faces`` the first face (photos: the largest; video: the lowest track number) is ``rec`` and
        every other face of the frame one of ``rec.others``.

        Touches only the tracker, so it may run on another thread than :meth:`finish` (see :class:`Pipelined`).
        """
        rec = Reconstruction(frame=frame)
        t = rec.timings
        faces: list[FaceLandmarks] = []
        with self.stats.time("landmarks", t):
            clock = frame.index / self.media_fps if self.media_fps else frame.timestamp
            if self.all_faces:
                faces = self.tracker.process_all(frame.image, clock)
                rec.landmarks = faces[0] if faces else None
            else:
                rec.landmarks = self.tracker.process(frame.image, clock)
        if rec.landmarks is None:
            return rec
        with self.stats.time("crop", t):
            self._prepare_face(rec)
            rec.others = [self._prepare_face(Reconstruction(frame=frame, landmarks=f)) for f in faces[1:]]
        self.stats.add("landmarks+crop", t["landmarks"] + t["crop"])
        return rec

    def _prepare_face(self, rec: Reconstruction) -> Reconstruction:
        rec.crop = CropTransform.from_landmarks(rec.landmarks.points68, size=self.cfg.input_size)
        rec.crop_image = rec.crop.warp(rec.frame.image)
        points_crop = rec.crop.to_crop(rec.landmarks.points68) if self.cfg.guided else None
        mp_crop = mediapipe_in_crop(rec.landmarks.points, rec.crop) if uses_mediapipe_depth(self.cfg) else None
        rec.batch = self.inputs.build(rec.crop_image, points_crop, mp_crop)
        return rec

    def finish(self, rec: Reconstruction) -> Reconstruction:
        """The back half: network, temporal filter, surface, colours, frame mapping. Touches only the backend,
        the smoother and the extractor; frames must arrive in order (the smoother is stateful)."""
        if rec.landmarks is None:
            if self.smoother is not None:
                self.smoother.reset()
            self._track_smoothers.clear()
            return rec
        if rec.track is None:  # one face, or the faces of a still image (no smoother there)
            for face in (rec, *rec.others):
                self._finish_face(face, self.smoother)
            return rec
        # numbered faces of a video: each through its own track's smoother; a track not in this frame restarts
        smoothers = {face.track: self._track_smoother(face.track) for face in (rec, *rec.others)}
        self._track_smoothers = smoothers
        for face in (rec, *rec.others):
            self._finish_face(face, smoothers[face.track])
        return rec

    def _track_smoother(self, track: int) -> LogitSmoother | None:
        if self.smoother is None:
            return None
        known = self._track_smoothers.get(track)
        return known if known is not None else LogitSmoother(self.smoother.alpha_min, self.smoother.change_follow)

    def _finish_face(self, rec: Reconstruction, smoother: LogitSmoother | None) -> None:
        t = rec.timings
        with self.stats.time("network", t):
            # on the GPU the logits stay there: a CuPy view of the backend's output
            out = self.backend.infer_device(rec.batch) if self.on_device else self.backend.infer(rec.batch)
            self.inputs.release(rec.batch)  # every backend has read (or copied) its host input when it returns
            rec.batch = None
            logits = self.extractor.asarray(out)[0]
            if smoother is not None:
                logits = smoother(logits, rec.crop)
            rec.logits = logits
        # "surface" is issue 14's stage (iso-surface, colours, frame mapping); the fusion is timed on its own
        start = time.perf_counter()
        mesh = self.extractor.extract(rec.logits)
        surface = time.perf_counter() - start
        if self.fusion is not None:
            with self.stats.time("fusion", t):
                mesh = self.fusion(mesh, rec.landmarks.points, rec.crop)
        start = time.perf_counter()
        rec.mesh = coloured_in_image_frame(mesh, rec.crop_image, rec.crop)
        t["surface"] = surface + time.perf_counter() - start
        self.stats.add("surface", t["surface"])


class Pipelined:
    """Frames through a :class:`Reconstructor` in two overlapping stages.

    A worker thread runs :meth:`Reconstructor.prepare` (MediaPipe, crop) on frame N+1 while the caller's thread
    runs :meth:`Reconstructor.finish` (network, surface) on frame N and then the outputs. MediaPipe, OpenVINO,
    ONNX Runtime, torch and the surface's NumPy / scikit-image work release the GIL, so on two or more cores the
    stages really overlap; on a GPU the CPU front half hides behind the network. The queue between the stages
    holds ``depth`` prepared frames, so memory is bounded and at most ``depth`` + 1 frames are in flight; order
    is kept. An exception in the worker (a bad frame, a source error) is raised in the caller's thread.

    Use as a context manager and iterate: ``for rec in Pipelined(rec, source): ...``; leaving the loop early
    (quit, max frames) stops the worker.
    """

    _END = object()

    def __init__(self, reconstructor: Reconstructor, frames: Any, depth: int = 1) -> None:
        self.reconstructor = reconstructor
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="vrn-prepare", daemon=True)

    def start(self) -> "Pipelined":
        self._thread.start()
        return self

    def __enter__(self) -> "Pipelined":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started
            return
        while self._thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for frame in self._frames:
                if self._stop.is_set() or not self._put(self.reconstructor.prepare(frame)):
                    return
        except BaseException as err:  # handed to the caller's thread, raised there
            self._put(err)
            return
        self._put(self._END)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield self.reconstructor.finish(item)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class RunSummary:
    frames: int = 0
    frames_with_face: int = 0
    frames_without_face: int = 0
    face_lost_events: int = 0
    faces_followed: int = 0  # --faces all on video: face tracks started (face1 ... faceN)
    most_faces: int = 0  # --faces all on video: the most faces in one frame
    dropped_frames: int = 0
    meshes_exported: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0  # after WARM_FRAMES frames: models loaded, buffers grown
    rss_end_mb: float = 0.0
    rss_trace: list[tuple[int, float]] = field(default_factory=list)  # (frame, MiB) every RSS_EVERY frames
    time_trace: list[tuple[int, float]] = field(default_factory=list)  # (frame, s since the loop began), same frames
    fps_start: float | None = None  # FPS over the first tenth of the run (from time_trace; None: too short)
    fps_end: float | None = None  # FPS over the last tenth: a run that slows down shows it here
    backend: str = ""
    loop: str = ""  # "sequential" or "pipelined" (see default_pipelined)
    model: str = ""
    outputs: list[str] = field(default_factory=list)  # files and folders completed and in place
    failed_outputs: list[str] = field(default_factory=list)  # "path: why" of every output that is not complete
    skipped_inputs: list[str] = field(default_factory=list)  # "path: why" of input files that could not be read
    stopped_by: str = "end of input"  # "end of input", "user", "max frames" or "interrupted"
    signal: str | None = None  # "SIGINT" / "SIGTERM" when a stop signal ended the run
    exit_code: int = 0  # 0, or 128 + the signal number for an interrupted run

    @property
    def interrupted(self) -> bool:
        return self.stopped_by == "interrupted"


def run(config: RunConfig, on_frame: Callable[[Reconstruction], None] | None = None) -> RunSummary:
    """Run the whole pipeline as configured. Raises VRNError subclasses for anything the user can fix."""
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.surface.extractors import open_surface
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.sinks.outputs import check_run_paths
    from realtime_vrn.weights.registry import resolve_weights

    check_run_paths(config, _inputs(config))  # before anything loads: never overwrite an input
    _check_sources(config)  # a missing video or image folder: one line now, not after the models load
    weights = resolve_weights(config.model, config.weights)  # before any device is opened: fail fast
    cfg = read_checkpoint_header(weights).cfg
    summary = RunSummary(model=str(weights), rss_start_mb=rss_mb())
    with open_backend(config.backend, weights, config.device) as backend:
        summary.backend = backend.describe()
        extractor = open_surface(config.surface, cfg, backend)  # before the camera and MediaPipe: fail fast
        summary.backend += f" + {extractor.describe()}"
        if config.mediapipe_weight > 0:
            summary.backend += f" + MediaPipe depth (weight {config.mediapipe_weight:g})"
        _run_loop(config, cfg, backend, extractor, summary, on_frame)
    summary.rss_end_mb = rss_mb()
    return summary


def _check_sources(config: RunConfig) -> None:
    """SourceError for a --video that is not a file or an --image path without images, as opening them would."""
    from realtime_vrn.sources.images import list_images
    from realtime_vrn.sources.video import check_video_path

    if config.video is not None:
        check_video_path(Path(config.video))
    if config.image is not None:
        list_images(Path(config.image))


def _inputs(config: RunConfig) -> dict[str, Path]:
    """Every file or folder the run reads, by the option that names it."""
    from realtime_vrn.assets import demo_clip_path

    inputs = {"--video": config.video or (demo_clip_path() if config.is_demo else None),
              "--image": config.image, "--landmarks": config.landmarks, "--weights": config.weights}
    return {flag: Path(path) for flag, path in inputs.items() if path is not None}


def _open_source(config: RunConfig):
    from realtime_vrn.assets import demo_clip_path
    from realtime_vrn.sources import open_source

    if config.camera is not None:
        return open_source(camera=config.camera)
    if config.image is not None:
        return open_source(image=config.image, loop=config.loop)
    return open_source(video=config.video or demo_clip_path(), drop_frames=config.realtime, loop=config.loop,
                       prefetch=VIDEO_PREFETCH)


def _run_loop(config: RunConfig, cfg: VRNConfig, backend: Backend, extractor: SurfaceStage, summary: RunSummary,
              on_frame: Callable[[Reconstruction], None] | None) -> None:
    from realtime_vrn.sinks.outputs import Outputs
    from realtime_vrn.signals import GracefulStop, Interrupted, as_interrupted, signal_name

    stats = LatencyStats()
    # A stop signal from here on finishes the outputs (GracefulStop is left after Outputs has closed them).
    with _open_source(config) as source, _open_tracker(config, source) as tracker, GracefulStop() as stop, \
            Outputs(config, source) as outputs:
        offline_video = not source.is_live and not source.is_still and not config.realtime
        smoother = LogitSmoother() if config.smoothing and not source.is_still else None
        rec = Reconstructor(tracker, backend, cfg, stats, media_fps=source.fps if offline_video else None,
                            smoother=smoother, extractor=extractor, all_faces=config.all_faces(source.is_still),
                            fusion=DepthFusion(cfg.input_size, config.mediapipe_weight).warm_up())
        total = source.frame_count
        if config.max_frames is not None:
            total = min(total, config.max_frames) if total else config.max_frames
        progress = _progress(config, source, total)
        start = time.perf_counter()
        pipelined = config.pipelined if config.pipelined is not None else default_pipelined(rec.on_device,
                                                                                            offline_video)
        summary.loop = "pipelined" if pipelined else "sequential"
        if config.loop and config.max_frames is None and not source.is_live:
            log.info("--loop without --max-frames: replaying %s until stopped (Ctrl-C or SIGTERM)", source.name)
        frames: Any = None
        try:
            # with --max-frames the pipelined worker stops there too (no frame prepared, or recorded, beyond it)
            wanted = source if config.max_frames is None else itertools.islice(source, config.max_frames)
            frames = Pipelined(rec, wanted).start() if pipelined else _sequential(rec, wanted)
            for result in frames:
                frame = result.frame
                if on_frame is not None:
                    on_frame(result)
                with stats.time("output"):
                    keep_going = outputs.push(result, stats)
                stats.add("end_to_end", time.perf_counter() - frame.timestamp)
                summary.frames += 1
                _sample_rss(summary, time.perf_counter() - start)
                if result.has_face:
                    summary.frames_with_face += 1
                else:
                    summary.frames_without_face += 1
                if progress is not None:
                    progress.update(1)
                if not keep_going:
                    summary.stopped_by = "user"
                    break
                if config.max_frames is not None and summary.frames >= config.max_frames:
                    summary.stopped_by = "max frames"
                    break
                if stop.requested is not None:
                    raise Interrupted(stop.requested)
        except KeyboardInterrupt as err:  # Interrupted, or a KeyboardInterrupt raised by a library
            stop_signal = as_interrupted(err)
            summary.stopped_by, summary.signal = "interrupted", signal_name(stop_signal.signum)
            summary.exit_code = stop_signal.exit_code
        finally:
            if isinstance(frames, Pipelined):
                frames.close()
            if progress is not None:
                progress.close()
        summary.wall_s = time.perf_counter() - start
        summary.fps = summary.frames / summary.wall_s if summary.wall_s > 0 else 0.0
        summary.fps_start, summary.fps_end = fps_at_ends(summary.time_trace)
        summary.dropped_frames = int(getattr(source, "dropped", 0))
        summary.skipped_inputs = [f"{path}: {why}" for path, why in getattr(source, "skipped", [])]
        summary.face_lost_events = tracker.lost_events
        summary.faces_followed = tracker.faces_followed
        summary.most_faces = tracker.most_faces
        summary.stages = stats.summary_ms()
    _record_outputs(summary, outputs.report)


def _record_outputs(summary: RunSummary, report: OutputsReport) -> None:
    """What the run's ``Outputs`` did (an ``OutputsReport``, once closed), into the summary."""
    summary.outputs.extend(report.completed)
    summary.failed_outputs.extend(report.failed)
    summary.meshes_exported = report.meshes_exported


def _open_tracker(config: RunConfig, source: Any) -> Tracker:
    """MediaPipe (default), or a recording replayed (``--landmarks``); recorded when ``--record-landmarks``."""
    from realtime_vrn.landmarks import DEFAULT_MAX_FACES, open_tracker
    from realtime_vrn.landmarks.recorded import RecordingTracker, ReplayTracker, source_identity

    if config.landmarks is not None:
        return ReplayTracker(config.landmarks, source=source_identity(source))
    every_face = config.all_faces(source.is_still)
    tracker = open_tracker(static=source.is_still, smoothing=config.smoothing,
                           max_faces=MAX_FACES if every_face else DEFAULT_MAX_FACES,
                           every_face=every_face and not source.is_still)
    if config.record_landmarks:
        return RecordingTracker(tracker, config.record_landmarks, source=source_identity(source))
    return tracker


def default_pipelined(on_device: bool, offline_video: bool, cpus: int | None = None) -> bool:
    """The loop a run gets without --pipeline / --no-pipeline, as measured (docs/benchmarks.md).

    on_device: the network (and surface) run on a GPU: the CPU's front half hides behind it, pipelined.
    offline_video: a video file read as fast as it can be processed (not --realtime): on two or more CPUs the
    front half of frame N + 1 overlaps the back half of frame N, pipelined (2 cores: 1.17-1.22x the FPS; the
    capture-to-output latency, 2.5x longer, does not matter to a file). A camera, --realtime and still images
    stay sequential (a live face's latency: ~21 against ~54 ms), as does one CPU (nothing to overlap).
    cpus: the CPUs this process may use (default ``cpu_threads()``).
    """
    if on_device:
        return True
    if not offline_video:
        return False
    if cpus is None:
        from realtime_vrn.backends.common import cpu_threads

        cpus = cpu_threads()
    return cpus >= 2


def _sequential(rec: Reconstructor, frames: Any):
    for frame in frames:
        yield rec.process(frame)


def _sample_rss(summary: RunSummary, elapsed_s: float) -> None:
    """Every RSS_EVERY frames: memory and time since the loop began (both traces thinned alike, bounded)."""
    n = summary.frames
    if n == WARM_FRAMES:
        summary.rss_warm_mb = rss_mb()
    if n % RSS_EVERY == 0:
        summary.rss_trace.append((n, round(rss_mb(), 1)))
        summary.time_trace.append((n, round(elapsed_s, 3)))
        if len(summary.rss_trace) > RSS_TRACE_MAX:
            del summary.rss_trace[1::2]
            del summary.time_trace[1::2]


def fps_at_ends(trace: list[tuple[int, float]]) -> tuple[float | None, float | None]:
    """FPS over the first and the last tenth of a (frame, seconds) trace (at least one interval each); None
    for both when the trace has fewer than three samples."""
    if len(trace) < 3:
        return None, None
    k = max(1, (len(trace) - 1) // 10)

    def fps(a: tuple[int, float], b: tuple[int, float]) -> float | None:
        return (b[0] - a[0]) / (b[1] - a[1]) if b[1] > a[1] else None

    return fps(trace[0], trace[k]), fps(trace[-1 - k], trace[-1])


def _progress(config: RunConfig, source: Any, total: int | None):
    if not config.progress or source.is_live:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=source.name, dynamic_ncols=True, leave=False)
