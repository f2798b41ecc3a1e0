"""Everything a run writes or shows: rendering, window, video/image files, meshes, virtual camera.

``Outputs.push(reconstruction)`` renders once per frame (only if something consumes the picture) and hands
the picture to every sink. Returns False when the user asked to stop (window closed, q / Esc).
``Outputs.close()`` finishes every output and returns what it did, an :class:`OutputsReport`, which the caller
records (the pipeline in its ``RunSummary``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime_vrn.config import RunConfig, check_writable_folder, output_kind
from realtime_vrn.errors import ConfigError, OutputError
from realtime_vrn.bench.timing import LatencyStats

log = logging.getLogger(__name__)

#: While paused, wait this long for input between redraws (responsive without spinning a core).
PAUSED_WAIT_S = 1 / 30
#: Stages shown on the HUD, in pipeline order.
HUD_STAGES = ("landmarks", "crop", "network", "surface", "render")


def check_run_paths(config: RunConfig, inputs: dict[str, Path]) -> None:
    """Refuse, before anything loads, a run that would overwrite its own input or mix a new run into old files.

    inputs: flag -> path of every file or folder the run reads (``--video``, ``--image``, ``--landmarks``, ...).
    Every output (``--output``, ``--export``, ``--record-landmarks``, ``--benchmark``) must differ from every
    input (same file through another name, symlink or hard link included) and from the other outputs; a
    non-empty ``--export`` folder needs ``--overwrite``; the folders ``--output`` and ``--export`` write into must
    take a new file.
    """
    if config.output is not None:
        output_kind(config.output)
    outputs = {flag: Path(p) for flag, p in (("--output", config.output), ("--export", config.export),
                                             ("--record-landmarks", config.record_landmarks),
                                             ("--benchmark", config.benchmark)) if p is not None}
    for out_flag, out_path in outputs.items():
        for in_flag, in_path in inputs.items():
            if _same_path(out_path, Path(in_path)):
                raise ConfigError(f"{out_flag} {out_path} is the input {in_flag} {in_path}: it would be "
                                  f"overwritten while it is read; write to another name")
    flags = list(outputs)
    for i, a in enumerate(flags):
        for b in flags[i + 1:]:
            if _same_path(outputs[a], outputs[b]):
                raise ConfigError(f"{a} and {b} are the same path {outputs[a]}; give each output its own name")
    export = config.export
    if export is not None and export.is_dir() and not config.overwrite:
        old = [p.name for p in export.iterdir()]
        if old:
            raise ConfigError(f"--export folder {export} already holds {len(old)} file(s) (e.g. {sorted(old)[0]}); "
                              f"new meshes would mix with them: use a new folder, or add --overwrite")
    # writable, before the models load (seconds earlier than the writers would find out): a video or an image is
    # written into its folder, image frames and meshes into the path itself (or, still to be made, its parent)
    if config.output is not None:
        folder = Path(config.output)
        check_writable_folder("--output", folder if output_kind(folder) == "folder" else folder.parent)
    if export is not None:
        check_writable_folder("--export", Path(export))


def _same_path(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (existing: same inode; else the same resolved path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def merge_meshes(meshes: list[Any]) -> Any:
    """One Mesh holding several (same frame, e.g. every face of a photo; colours kept when all have them), so
    that the renderer draws every face's overlay in one pass."""
    import numpy as np

    from realtime_vrn.surface.mesh import Mesh

    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    colors = None if any(m.colors is None for m in meshes) else np.concatenate([m.colors for m in meshes])
    return Mesh(vertices=np.concatenate([m.vertices for m in meshes]),
                faces=np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int32),
                normals=np.concatenate([m.normals for m in meshes]), colors=colors, frame=meshes[0].frame)


def output_name(frame: Any) -> str:
    """What a frame's outputs are called: the photo's name (``IMG_1234``), else ``frame_<index>``."""
    return frame.name if getattr(frame, "name", None) else f"frame_{frame.index:06d}"


def face_suffix(face: Any, k: int) -> str:
    """What a face's mesh name adds to :func:`output_name`: a video face followed as track N gets ``_faceN`` in
    every frame (``frame_000123_face2.obj``); the k-th face of a photo (largest first) ``_face{k}`` after the
    unsuffixed largest (``IMG_1234.obj``, ``IMG_1234_face1.obj``); a single face nothing."""
    track = getattr(face, "track", None)
    if track is not None:
        return f"_face{track}"
    return f"_face{k}" if k else ""


def display_available() -> bool:
    """True when a window can be opened (X11 / Wayland display set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


#: Meshes waiting to be written by the background writer; when full, the pipeline waits (nothing is dropped).
EXPORT_QUEUE = 8
#: A run whose meshes add up to more than this is warned about (with the --export-every that fits) as soon as
#: the first mesh shows their size: 1,500 meshes of one clip once filled 4 GB without a word.
EXPORT_WARN_BYTES = 1_000_000_000


def export_size_warning(mesh_bytes: int, planned: int | None, every: int, written_bytes: int,
                        limit: int | None = None) -> str | None:
    """The warning for a mesh export that will pass ``limit`` bytes, or None.

    mesh_bytes: size of one written mesh file; planned: meshes the run will write (None: unknown, e.g. a camera:
    then the warning comes once ``written_bytes`` passes the limit); every: the current --export-every.
    limit: bytes (default EXPORT_WARN_BYTES).
    """
    limit = EXPORT_WARN_BYTES if limit is None else limit
    if planned is not None:
        total = mesh_bytes * planned
        if total <= limit:
            return None
        factor = -(-total // limit)  # ceil: the smallest --export-every multiple that fits under the limit
        return (f"--export will write about {total / 1e9:.1f} GB ({planned} meshes of {mesh_bytes / 1e6:.1f} MB); "
                f"use --export-every {every * factor} to stay under {limit / 1e9:g} GB")
    if written_bytes <= limit:
        return None
    return (f"--export has written {written_bytes / 1e9:.1f} GB so far ({mesh_bytes / 1e6:.1f} MB per mesh) and "
            f"goes on until the run stops; --export-every N writes every N-th mesh only")


class MeshWriter:
    """Writes meshes on a background thread so that a slow OBJ write (~0.3 s for 80k vertices) does not stall
    the frame loop. The queue is bounded: when the disk is slower than the pipeline, ``put`` waits. The first
    write error is raised (as OutputError) by the next ``put`` or by ``close``.
    """

    def __init__(self, y_up: bool) -> None:
        import queue
        import threading

        self.y_up = y_up
        self.written = 0
        self.bytes_written = 0
        self.first_size: int | None = None  # bytes of the first mesh file, once written
        self.first_done = threading.Event()  # set when the first mesh is written (or failed)
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=EXPORT_QUEUE)
        self._thread = threading.Thread(target=self._work, name="mesh-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        from realtime_vrn.surface.export import export_mesh

        while True:
            item = self._queue.get()
            if item is None:
                return
            mesh, path = item
            if self._error is not None:
                continue
            try:
                export_mesh(mesh, path, y_up=self.y_up)
                size = path.stat().st_size
                self.first_size = self.first_size or size
                self.bytes_written += size
                self.written += 1
            except BaseException as err:  # noqa: BLE001 - handed to the pipeline thread
                self._error = err
            finally:
                self.first_done.set()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, OutputError):
                raise err
            raise OutputError(f"cannot write a mesh: {err}") from err

    def put(self, mesh, path: Path) -> None:
        self._raise()
        self._queue.put((mesh, path))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


@dataclass(frozen=True)
class OutputsReport:
    """What a run's outputs did, once closed.

    completed: files and folders completed and in place; failed: "path: why" of every output that is not
    complete (the run then exits non-zero); meshes_exported: meshes written to the --export folder.
    """

    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    meshes_exported: int = 0


class Outputs:
    """Context manager owning the renderer and sinks of one run; :attr:`report` once closed."""

    def __init__(self, config: RunConfig, source: Any) -> None:
        self.config = config
        self.source = source
        #: What the outputs did (:meth:`close`'s result); None until they are closed.
        self.report: OutputsReport | None = None
        self.view = config.view
        self.blend = config.blend
        self._renderer = None
        self._window = None
        self._sinks: list[Any] = []
        self._meshes = MeshWriter(config.y_up)
        self._size_warned = False
        self._frames_with_face = 0
        self._last_mesh = None
        self._fps_ema: float | None = None
        self._last_t: float | None = None

    # -- set-up -----------------------------------------------------------------------------------------
    def __enter__(self) -> "Outputs":
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def wants_window(self) -> bool:
        c = self.config
        return not c.headless and (c.camera is not None or (display_available() and not c.is_demo and
                                                             c.output is None and c.export is None))

    def _open(self) -> None:
        c = self.config
        width, height = self.source.size
        fps = self.source.fps or 30.0
        if c.export is not None:
            try:
                c.export.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"cannot create the mesh folder {c.export}: {err.strerror}") from err
        if self.wants_window:
            from realtime_vrn.render.window import LiveWindow, ViewState

            self._window = LiveWindow(f"realtime-vrn - {self.source.name}",
                                      state=ViewState(view=c.view, blend=c.blend),
                                      on_export=self._export_current,
                                      screenshot_dir=c.export or Path.cwd()).open()
        if c.output is not None:
            self._sinks.append(self._file_sink(c.output, width, height, fps))
        if c.virtual_camera:
            from realtime_vrn.sinks import VirtualCameraSink

            self._sinks.append(VirtualCameraSink(self._picture_size(width, height), fps).open())
        if self._window is not None or self._sinks or c.render:
            from realtime_vrn.render import Renderer

            self._renderer = Renderer(getattr(self._window, "ctx", None)).open()

    def _picture_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the rendered picture: side-by-side is two frames wide."""
        return (2 * width if self.view == "side_by_side" else width), height

    def _file_sink(self, path: Path, width: int, height: int, fps: float):
        from realtime_vrn.sinks import ImageFolderSink, VideoFileSink

        kind = output_kind(path)
        try:
            (path if kind == "folder" else path.parent).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the output folder for {path}: {err.strerror}") from err
        if kind == "video":
            return VideoFileSink(path, fps, size=self._picture_size(width, height))
        if kind == "image":  # photo.png -> photo_000000.png, photo_000001.png, ... beside it
            return ImageFolderSink(path.parent, prefix=path.stem + "_", suffix=path.suffix,
                                   named_prefix=path.stem + "_")
        return ImageFolderSink(path)

    def close(self) -> OutputsReport:
        """Finish every output and return what they did (also kept in :attr:`report`; a second call returns the
        same): each one that cannot be completed is in ``failed`` (the run then exits non-zero); only completed
        files are in ``completed``."""
        if self.report is not None:
            return self.report
        failed: list[str] = []
        completed: list[str] = []
        try:
            self._meshes.close()
        except OutputError as err:
            failed.append(f"{self.config.export}: {err}")
        finally:
            try:
                self._close_sinks(completed, failed)
            finally:
                self.report = OutputsReport(tuple(completed), tuple(failed), self._meshes.written)
        return self.report

    def _close_sinks(self, completed: list[str], failed: list[str]) -> None:
        for sink in self._sinks:
            path = getattr(sink, "path", None) or getattr(sink, "folder", None)
            try:
                sink.close()
                if path is not None and getattr(sink, "frames_written", 1) > 0:
                    completed.append(getattr(sink, "written", str(path)))
            except Exception as err:  # noqa: BLE001 - close every sink, report each failure
                log.debug("could not finish %s", sink, exc_info=True)
                failed.append(f"{path or sink}: {err}")
        self._sinks = []
        for obj in (self._renderer, self._window):
            if obj is not None:
                obj.close()
        self._renderer = self._window = None

    # -- per frame ----------------------------------------------------------------------------------------
    def push(self, rec: Any, stats: LatencyStats) -> bool:
        c = self.config
        faces = rec.faces if hasattr(rec, "faces") else [r for r in [rec] if r.mesh is not None and not r.mesh.is_empty]
        meshes = [face.mesh for face in faces]
        if meshes:
            self._last_mesh = meshes[0]
            self._frames_with_face += 1
            if c.export is not None and (self._frames_with_face - 1) % c.export_every == 0:
                for k, face in enumerate(faces):
                    name = f"{output_name(rec.frame)}{face_suffix(face, k)}.{c.mesh_format}"
                    self._export(face.mesh, c.export / name)
                self._check_export_size()
        if self._renderer is None:
            return True
        with stats.time("render"):
            drawn = merge_meshes(meshes) if len(meshes) > 1 else (meshes[0] if meshes else rec.mesh)
            picture = self._render(rec.frame.image, drawn, self._hud(rec, stats, len(meshes)))
        for sink in self._sinks:
            if rec.frame.name is not None and hasattr(sink, "prefix"):  # image files named after the photo
                sink.write(picture, name=rec.frame.name)
            else:
                sink.write(picture)
        if self._window is None:
            return True
        return self._show(picture, rec, drawn, stats)

    def _render(self, image, mesh, hud: list[str]):
        if self._window is None:
            return self._renderer.render(image, mesh, view=self.view, blend=self.blend, hud_lines=hud)
        s = self._window.state
        return self._renderer.render(image, mesh, view=s.view, blend=s.blend, hud_lines=hud, camera=s.camera,
                                     shading=s.shading)

    def _show(self, picture, rec: Any, drawn: Any, stats: LatencyStats) -> bool:
        """Show the picture; while paused keep redrawing the last frame (the orbit still turns). False = quit."""
        from realtime_vrn.render.window import WindowEvent

        events = self._window.show(picture)
        while WindowEvent.QUIT not in events and self._window.state.paused:
            hud = self._hud(rec, stats) + ["paused (space to resume)"]
            events = self._window.show(self._render(rec.frame.image, drawn, hud), wait_s=PAUSED_WAIT_S)
        return WindowEvent.QUIT not in events

    def _hud(self, rec: Any, stats: LatencyStats, faces: int = 1) -> list[str]:
        import time

        now = time.perf_counter()
        if self._last_t is not None:
            inst = 1.0 / max(now - self._last_t, 1e-6)
            self._fps_ema = inst if self._fps_ema is None else 0.9 * self._fps_ema + 0.1 * inst
        self._last_t = now
        lines = [f"FPS {self._fps_ema or 0:5.1f}" + ("" if rec.has_face else "   no face")
                 + (f"   {faces} faces" if faces > 1 else "")]
        medians = {s: stats.recent_median_ms(s) for s in HUD_STAGES}  # the last ~2 s: flat cost over hours
        parts = [f"{s} {m:.1f}" for s, m in medians.items() if m is not None]
        if parts:
            lines.append("ms: " + "  ".join(parts))
        return lines

    def _export(self, mesh: Any, path: Path) -> None:
        self._meshes.put(mesh, path)

    def _check_export_size(self) -> None:
        if self._size_warned:
            return
        self._meshes.first_done.wait()  # once, for the first mesh: its size tells what the run will write
        if self._meshes.first_size is None:
            return
        frames = self.source.frame_count
        if self.config.max_frames is not None:
            frames = min(frames, self.config.max_frames) if frames else self.config.max_frames
        planned = None if frames is None else -(-frames // self.config.export_every)
        message = export_size_warning(self._meshes.first_size, planned, self.config.export_every,
                                      self._meshes.bytes_written)
        if message is not None:
            self._size_warned = True
            log.warning(message)

    def _export_current(self) -> Path | None:
        """Window key: save the current mesh next to the run (or into --export)."""
        if self._last_mesh is None:
            log.warning("no mesh to export yet (no face seen)")
            return None
        folder = self.config.export or Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        n = len(list(folder.glob("snapshot_*")))
        path = folder / f"snapshot_{n:04d}.{self.config.mesh_format}"
        self._export(self._last_mesh, path)
        log.info("mesh saved to %s", path)
        return path

