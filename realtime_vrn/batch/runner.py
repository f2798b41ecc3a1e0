"""The driver of a batch: plan, skip what is finished, run the rest, put finished inputs in place, report.

For each input the driver decides: *skipped* (its ``summary.json`` says done with the same model SHA-256 and
settings), or to do. Each input to do gets a staging folder ``OUT/<name>.incomplete/`` where its parts write;
when all its parts are done the driver joins their per-frame records in frame order, writes ``frames.npz``
(``faces.npz`` for a photo) and ``summary.json`` there, and renames the folder to ``OUT/<name>/``. A failed
or interrupted input's staging folder is removed; a stale one (a killed run) is removed before it is redone. So
every ``OUT/<name>/`` is complete, and ``OUT/batch-report.json`` lists every input with its status.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from realtime_vrn.batch.inputs import BatchInput, expand_inputs
from realtime_vrn.batch.options import ClusterSettings, ModelChoice, OutputSettings
from realtime_vrn.batch.worker import ChunkResult, ChunkTask
from realtime_vrn.errors import ConfigError, OutputError

log = logging.getLogger(__name__)

REPORT_NAME = "batch-report.json"
SUMMARY_NAME = "summary.json"
STAGING_SUFFIX = ".incomplete"
#: Settings that only concern videos (a photo is not redone when they change).
VIDEO_ONLY = ("video_out", "chunk_frames", "max_frames", "smoothing")


@dataclass
class InputReport:
    """One input's line in the report: status "done", "skipped", "failed", "interrupted" (Ctrl-C / SIGTERM)
    or "not run" (the batch stopped on an error of its own, e.g. a model that does not load)."""

    input: str
    output: str
    kind: str
    status: str = "pending"
    reason: str | None = None
    frames: int = 0
    frames_with_face: int = 0
    meshes: int = 0
    chunks: int = 0


@dataclass
class WorkerReport:
    name: str
    chunks: int = 0
    frames: int = 0
    busy_s: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class BatchReport:
    out: str
    executor: str = ""
    workers: int = 0
    model: str = ""
    model_sha256: str = ""
    settings: dict = field(default_factory=dict)
    inputs: list[InputReport] = field(default_factory=list)
    worker_stats: dict[str, WorkerReport] = field(default_factory=dict)
    wall_s: float = 0.0
    signal: str | None = None
    exit_code: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.inputs)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.inputs if r.status == "done")

    def as_json(self) -> dict:
        data = asdict(self)
        data["worker_stats"] = [dict(asdict(w), fps=round(w.fps, 2)) for w in self.worker_stats.values()]
        data["totals"] = {s: self.count(s) for s in ("done", "skipped", "failed", "interrupted")}
        data["frames"] = self.frames
        return data


@dataclass
class _Pending:
    """An input being processed: its tasks and the results that came back."""

    item: BatchInput
    report: InputReport
    key: dict
    staging: Path
    final: Path
    tasks: int
    results: dict[int, ChunkResult] = field(default_factory=dict)


def run_batch(inputs: list[str], out: Path, settings: OutputSettings, model: ModelChoice,
              cluster: ClusterSettings, progress: bool = True, verbose: bool = False) -> BatchReport:
    """Run the batch (contract in the module docstring). Raises VRNError for what stops the whole batch before
    it starts (no input, bad output folder, no model, Ray unreachable); returns the report otherwise (also
    after Ctrl-C / SIGTERM: ``report.signal`` and ``exit_code`` say so)."""
    from realtime_vrn.fileio import file_sha256
    from realtime_vrn.weights.registry import resolve_weights

    started = time.perf_counter()
    out = Path(out).expanduser().absolute()
    items = [i for i in expand_inputs(inputs) if not _inside(i.path, out)]
    if not items:
        raise ConfigError(f"every input matched lies inside the output folder {out}")
    prepare_out(out)
    weights = resolve_weights(model.model, None if model.weights is None else str(model.weights))
    report = BatchReport(out=str(out), model=str(weights), model_sha256=file_sha256(weights),
                         settings=settings.as_dict())
    todo = _plan(items, out, settings, report)
    try:
        if todo:
            _execute(todo, settings, model, cluster, report, progress, verbose)
    except KeyboardInterrupt as err:
        from realtime_vrn.signals import as_interrupted, signal_name

        stop = as_interrupted(err)
        report.signal, report.exit_code = signal_name(stop.signum), stop.exit_code
    finally:
        for pending in todo.values():  # what did not finish leaves nothing behind
            if pending.report.status == "pending":
                pending.report.status = "interrupted" if report.signal else "not run"
            if pending.report.status != "done":
                shutil.rmtree(pending.staging, ignore_errors=True)
        report.wall_s = time.perf_counter() - started
        write_report(out / REPORT_NAME, report)
    if report.signal is None:
        report.exit_code = 1 if report.count("failed") else 0
    return report


def prepare_out(out: Path) -> Path:
    """The output folder, created and writable (ConfigError in one line otherwise)."""
    from realtime_vrn.config import check_writable_folder

    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the output folder {out}: {err.strerror or err}") from err
    check_writable_folder("--out", out)
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def input_key(item: BatchInput, settings: OutputSettings, model_sha256: str) -> dict:
    """What an input's outputs depend on: model, settings, and the input file's size and modification time."""
    values = settings.as_dict()
    if item.kind == "image":
        values = {k: v for k, v in values.items() if k not in VIDEO_ONLY}
    stat = item.path.stat()
    key = {"model_sha256": model_sha256, "settings": values,
           "input": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}}
    return json.loads(json.dumps(key, default=str))  # as it reads back from the summary


def is_finished(final: Path, key: dict) -> bool:
    try:
        summary = json.loads((final / SUMMARY_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("status") == "done" and summary.get("key") == key


def _plan(items: list[BatchInput], out: Path, settings: OutputSettings, report: BatchReport) -> dict[int, _Pending]:
    todo: dict[int, _Pending] = {}
    for i, item in enumerate(items):
        final = out / item.name
        entry = InputReport(str(item.path), str(item.name), item.kind)
        report.inputs.append(entry)
        if item.problem is not None:
            entry.status, entry.reason = "failed", item.problem
            continue
        try:
            key = input_key(item, settings, report.model_sha256)
        except OSError as err:  # gone since it was listed
            entry.status, entry.reason = "failed", f"cannot read it: {err.strerror or err}"
            continue
        if is_finished(final, key):
            entry.status = "skipped"
            log.debug("skipping %s: done with the same model and settings", item.path)
            continue
        staging = final.with_name(final.name + STAGING_SUFFIX)
        todo[i] = _Pending(item, entry, key, staging, final, tasks=0)
    return todo


def plan_chunks(pending: dict[int, _Pending], settings: OutputSettings) -> list[ChunkTask]:
    """The tasks: one per photo; per video one per ``chunk_frames`` frames (one for the whole video with
    ``video_out`` or when its length is unknown), the last one reading to the end."""
    tasks = []
    for input_id, p in pending.items():
        ranges: list[tuple[int, int | None]] = [(0, settings.max_frames)]
        if p.item.kind == "video" and not settings.video_out:
            count = video_frame_count(p.item.path)
            if count is not None:
                total = min(count, settings.max_frames or count)
                starts = list(range(0, total, settings.chunk_frames)) or [0]
                last = settings.max_frames if settings.max_frames and settings.max_frames <= count else None
                ranges = [(s, min(s + settings.chunk_frames, total) if s != starts[-1] else last) for s in starts]
        p.tasks = len(ranges)
        p.report.chunks = len(ranges)
        tasks.extend(ChunkTask(input_id, k, str(p.item.path), p.item.kind, start, stop, str(p.staging), settings)
                     for k, (start, stop) in enumerate(ranges))
    return tasks


def video_frame_count(path: Path) -> int | None:
    """The frame count in a video's header (None when unreadable or unknown: it then runs as one part, and the
    worker says what is wrong with it)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()
    return count if count > 0 else None


def _frames_planned(tasks: list[ChunkTask]) -> int | None:
    total = 0
    for t in tasks:
        if t.kind == "image":
            total += 1
        elif t.stop is not None:
            total += t.stop - t.start
        else:
            count = video_frame_count(Path(t.path))
            if count is None:
                return None
            total += max(0, count - t.start)
    return total


def _execute(todo: dict[int, _Pending], settings: OutputSettings, model: ModelChoice, cluster: ClusterSettings,
             report: BatchReport, progress: bool, verbose: bool) -> None:
    from tqdm import tqdm

    from realtime_vrn.batch.executors import InProcessExecutor, RayExecutor, WorkerArgs

    for p in todo.values():
        shutil.rmtree(p.staging, ignore_errors=True)  # a killed run's leftovers
        p.staging.mkdir(parents=True)
    tasks = plan_chunks(todo, settings)
    args = WorkerArgs(model.model, None if model.weights is None else str(model.weights), settings.backend,
                      settings.device, report.model_sha256)
    executor = RayExecutor(args, cluster, verbose) if cluster.use_ray else InProcessExecutor(args, cluster.threads)
    report.executor = executor.kind
    with executor:  # workers started (a Ray that cannot start stops the batch here, before any bar is drawn)
        report.workers = executor.workers
        bars = [tqdm(total=len(todo), desc="inputs", unit="input", position=0, disable=not progress),
                tqdm(total=_frames_planned(tasks), desc="frames", unit="frame", position=1,
                     disable=not progress, dynamic_ncols=True)]
        try:
            with _logs_above_bars(progress):
                skip = lambda task: todo[task.input_id].report.status != "pending"  # noqa: E731
                for outcome in executor.run(tasks, skip, bars[1].update):
                    if _record(todo[outcome.task.input_id], outcome, report):
                        bars[0].update(1)
        finally:
            for bar in bars:
                bar.close()


def _logs_above_bars(progress: bool) -> Any:
    """Log lines printed above the progress bars instead of through them."""
    import contextlib

    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[logging.getLogger("realtime_vrn")]) if progress else contextlib.nullcontext()


def _record(p: _Pending, outcome: Any, report: BatchReport) -> bool:
    """Take one task's outcome; True when its input is now finished (done or failed)."""
    if p.report.status != "pending":
        return False
    if outcome.error is not None:
        task = outcome.task
        where = "" if p.tasks == 1 else f" (frames {task.start}-{'end' if task.stop is None else task.stop - 1})"
        _fail(p, outcome.error + where)
        return True
    result = outcome.result
    stats = report.worker_stats.setdefault(result.worker, WorkerReport(result.worker))
    stats.chunks += 1
    stats.frames += result.frames
    stats.busy_s += result.wall_s
    p.results[result.chunk] = result
    if len(p.results) < p.tasks:
        return False
    try:
        finish_input(p, report)
    except (OSError, OutputError) as err:
        _fail(p, str(err) if isinstance(err, OutputError) else f"cannot finish {p.final}: {err.strerror or err}")
    return True


def _fail(p: _Pending, why: str) -> None:
    p.report.status, p.report.reason = "failed", why
    shutil.rmtree(p.staging, ignore_errors=True)
    log.warning("failed: %s: %s", p.item.path, why)


def finish_input(p: _Pending, report: BatchReport) -> None:
    """Join the parts' records, write the NPZ and the summary into the staging folder, rename it into place."""
    from realtime_vrn import __version__
    from realtime_vrn.batch.records import concatenate, write_npz
    from realtime_vrn.fileio import write_atomic

    results = [p.results[k] for k in sorted(p.results)]
    arrays = concatenate([r.records for r in results])
    write_npz(p.staging / ("frames.npz" if p.item.kind == "video" else "faces.npz"), arrays)
    r = p.report
    r.frames = sum(x.frames for x in results)
    r.frames_with_face = sum(x.frames_with_face for x in results)
    r.meshes = sum(x.meshes for x in results)
    summary = {
        "input": str(p.item.path), "kind": p.item.kind, "status": "done", "key": p.key,
        "frames": r.frames, "frames_with_face": r.frames_with_face, "meshes": r.meshes, "chunks": len(results),
        "workers": sorted({x.worker for x in results}), "busy_s": round(sum(x.wall_s for x in results), 3),
        "model": report.model, "realtime_vrn": __version__,
        "files": sorted(str(f.relative_to(p.staging)) for f in p.staging.rglob("*") if f.is_file()) + [SUMMARY_NAME],
    }
    write_atomic(p.staging / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
    replace_folder(p.staging, p.final)
    r.status = "done"
    if r.frames_with_face == 0:
        log.warning("%s: no face found", p.item.path)


def replace_folder(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``. An older ``final`` (one this command wrote: it holds a summary.json,
    or nothing) is moved aside first and deleted after; anything else there is left alone (OutputError)."""
    old = None
    if final.exists() or final.is_symlink():
        if not final.is_dir() or (any(final.iterdir()) and not (final / SUMMARY_NAME).is_file()):
            raise OutputError(f"{final} exists and was not written by realtime-vrn batch (no {SUMMARY_NAME}); "
                              f"move it away to write this input's outputs there")
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(path: Path, report: BatchReport) -> None:
    from realtime_vrn.fileio import write_atomic

    try:
        write_atomic(path, (json.dumps(report.as_json(), indent=2, default=str) + "\n").encode())
    except OSError as err:
        log.error("cannot write the report %s: %s", path, err.strerror or err)
