"""Where the tasks of a batch run: in this process one after another, or on Ray workers (actors).

Both executors take the same task list and yield a :class:`TaskOutcome` per task as it finishes (in finishing
order); ``skip(task)`` is asked just before a task is handed out (the driver skips the remaining parts of an
input that already failed). A task that fails yields its reason and never stops the others. Ray is imported
only by :class:`RayExecutor` (the ``cluster`` extra).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from realtime_vrn.batch.options import ClusterSettings
from realtime_vrn.batch.worker import ChunkResult, ChunkTask, Worker, WorkerActor, limit_threads
from realtime_vrn.errors import BackendError, ConfigError, VRNError

log = logging.getLogger(__name__)

#: How long a TCP connection to ``--address`` may take before the cluster is called unreachable (ray.init
#: itself would retry for minutes, printing native warnings).
ADDRESS_TIMEOUT_S = 5.0
#: How long the Ray workers may take to start and load the model (a cluster may first have to make room).
WORKER_START_TIMEOUT_S = 600.0
#: Workers that die (a crash in native code, a killed node) are replaced this many times in all.
MAX_WORKER_RESTARTS = 4
#: ray.wait returns at least this often, so that Ctrl-C / SIGTERM reach the driver's Python code promptly.
WAIT_POLL_S = 0.5
#: What a user installs for Ray.
RAY_HINT = "pip install 'realtime-vrn[cluster]'"


@dataclass(frozen=True)
class WorkerArgs:
    """How every worker loads its model (see :class:`Worker`)."""

    model: str | None
    weights: str | None
    backend: str
    device: str
    expected_sha256: str


@dataclass(frozen=True)
class TaskOutcome:
    task: ChunkTask
    result: ChunkResult | None
    error: str | None


def reason(err: BaseException) -> str:
    """One line saying why a task failed."""
    if isinstance(err, VRNError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {err}"


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class InProcessExecutor:
    """Every task in this process, one after another, on one worker (models loaded at the first task)."""

    kind = "in-process"

    def __init__(self, args: WorkerArgs, threads: int | None = None) -> None:
        """threads: network threads (None: the backends' default, every core)."""
        self.args = args
        self.threads = threads
        self._worker: Worker | None = None
        self._saved: tuple[str | None, int] | None = None
        self.workers = 1

    def __enter__(self) -> "InProcessExecutor":
        if self.threads is not None:
            import torch

            self._saved = (os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())
            limit_threads(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        if self._saved is not None:  # the process's own thread settings again
            import torch

            env, torch_threads = self._saved
            if env is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = env
            torch.set_num_threads(torch_threads)
            self._saved = None

    def run(self, tasks: list[ChunkTask], skip: Callable[[ChunkTask], bool],
            on_frames: Callable[[int], None]) -> Iterator[TaskOutcome]:
        for task in tasks:
            if skip(task):
                continue
            if self._worker is None:  # a model or backend that cannot load is a user error for the whole batch
                a = self.args
                self._worker = Worker(a.model, a.weights, a.backend, a.device, a.expected_sha256).open()
            try:
                result = self._worker.run(task, on_frame=on_frames)
            except Exception as err:  # noqa: BLE001 - one input's failure is reported, the batch goes on
                log.debug("task %s failed", task, exc_info=True)
                yield TaskOutcome(task, None, reason(err))
                continue
            yield TaskOutcome(task, result, None)


class RayExecutor:
    """Tasks spread over Ray actors, each holding the model once; a local Ray is started unless ``address``
    names a cluster (or Ray is already initialised in this process: then it is used and left running)."""

    kind = "ray"

    def __init__(self, args: WorkerArgs, cluster: ClusterSettings, verbose: bool = False) -> None:
        self.args = args
        self.cluster = cluster
        self.verbose = verbose
        self.workers = 0
        self._ray: Any = None
        self._started_ray = False
        self._actor_class: Any = None
        self._actors: list[Any] = []
        self._restarts = 0

    # -- start and stop -----------------------------------------------------------------------------------

    def __enter__(self) -> "RayExecutor":
        import ray

        self._ray = ray
        try:
            if not ray.is_initialized():
                self._init_ray()
            self._start_actors()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _init_ray(self) -> None:
        ray, c = self._ray, self.cluster
        options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR,
                                       log_to_driver=self.verbose)
        if c.address is not None:
            check_reachable(c.address)
            options["address"] = c.address
        else:
            from realtime_vrn.backends.common import cpu_threads

            wanted = math.ceil((c.workers or 1) * c.ray_cpus)
            options["num_cpus"] = max(cpu_threads(), wanted)
            options["address"] = "local"  # a new Ray on this machine, also when RAY_ADDRESS names a cluster
        with _keep_signal_handlers():  # ray.init replaces SIGTERM's handler with a sys.exit
            try:
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as err:
                where = f"the Ray cluster at {c.address}" if c.address else "a local Ray"
                first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0].rstrip(".")
                raise ConfigError(f"cannot start or join {where}: {first}"
                                  + (" (leave out --address to run on this machine)" if c.address else "")) from err
        self._started_ray = True

    def _start_actors(self) -> None:
        ray, c = self._ray, self.cluster
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        self.workers = c.workers or max(1, int(cpus // c.ray_cpus))
        if self.workers * c.ray_cpus > cpus + 1e-9 or self.workers * c.gpus_per_worker > gpus + 1e-9:
            raise ConfigError(f"{self.workers} workers x ({c.ray_cpus:g} CPU, {c.gpus_per_worker:g} GPU) do "
                              f"not fit the Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs); use fewer --workers or "
                              f"smaller --cpus-per-worker / --gpus-per-worker")
        self._actor_class = ray.remote(WorkerActor).options(num_cpus=c.ray_cpus, num_gpus=c.gpus_per_worker,
                                                            max_restarts=0)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        try:
            started = ray.get([a.describe.remote() for a in self._actors], timeout=WORKER_START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as err:
            raise BackendError(f"the Ray workers did not start within {WORKER_START_TIMEOUT_S:g} s "
                               f"(not enough free CPUs / GPUs in the cluster?)") from err
        except ray.exceptions.RayError as err:
            raise BackendError(f"the Ray workers could not load the model: {_ray_reason(err)}") from err
        for name, backend in started:
            log.info("Ray worker %s: %s", name, backend)

    def _new_actor(self) -> Any:
        a = self.args
        return self._actor_class.remote(a.model, a.weights, a.backend, a.device, a.expected_sha256,
                                        self.cluster.threads)

    def __exit__(self, *exc: object) -> None:
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                log.debug("could not kill a Ray worker", exc_info=True)
        self._actors = []
        if self._started_ray:
            with _keep_signal_handlers():
                ray.shutdown()
            self._started_ray = False

    # -- the work -----------------------------------------------------------------------------------------

    def run(self, tasks: list[ChunkTask], skip: Callable[[ChunkTask], bool],
            on_frames: Callable[[int], None]) -> Iterator[TaskOutcome]:
        ray = self._ray
        queue = deque(tasks)
        idle = list(self._actors)
        pending: dict[Any, tuple[ChunkTask, Any]] = {}
        while queue or pending:
            while idle and queue:
                task = queue.popleft()
                if not skip(task):
                    actor = idle.pop()
                    pending[actor.run.remote(task)] = (task, actor)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_POLL_S)
            for ref in ready:
                task, actor = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    yield TaskOutcome(task, None, f"the worker died ({_ray_reason(err)})")
                    actor = self._replace(actor)
                except ray.exceptions.RayTaskError as err:
                    yield TaskOutcome(task, None, _ray_reason(err))
                else:
                    on_frames(result.frames)
                    yield TaskOutcome(task, result, None)
                if actor is not None:
                    idle.append(actor)
            if not idle and not pending and queue:
                raise BackendError("every Ray worker died; see the failures above")

    def _replace(self, dead: Any) -> Any:
        """A new actor in place of a dead one (None once MAX_WORKER_RESTARTS is used up)."""
        self._actors.remove(dead)
        if self._restarts >= MAX_WORKER_RESTARTS:
            log.warning("a Ray worker died; %d left", len(self._actors))
            return None
        self._restarts += 1
        log.warning("a Ray worker died; starting another (%d of %d restarts)", self._restarts, MAX_WORKER_RESTARTS)
        actor = self._new_actor()
        self._actors.append(actor)
        return actor


def _ray_reason(err: BaseException) -> str:
    """The original exception's one-line reason for a Ray error (RayTaskError wraps the worker's exception)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return reason(cause)
    return str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def check_reachable(address: str) -> None:
    """ConfigError (one line, with what to do) unless a TCP connection to ``HOST:PORT`` opens quickly.
    ``auto`` and ``ray://`` addresses are left to ray.init (which answers those at once)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379) or "
                          f"'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as err:
        why = err.strerror or type(err).__name__.replace("Error", " error").strip()
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({why}): start one there with "
                          f"'ray start --head --port {port}', or leave out --address to run on this machine") from err


class _keep_signal_handlers:
    """Restore SIGINT / SIGTERM handlers after a call that replaces them (ray.init, ray.shutdown)."""

    def __enter__(self) -> None:
        self._main = threading.current_thread() is threading.main_thread()
        self._saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if self._main else {}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            if handler is not None:
                signal.signal(sig, handler)
