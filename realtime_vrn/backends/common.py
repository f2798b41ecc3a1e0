"""Helpers shared by the backends: CPU thread count, device strings for CPU runtimes (the ``infer`` checks are
the base class's, :mod:`realtime_vrn.backends.base`)."""

from __future__ import annotations

import os

from realtime_vrn.errors import BackendError

#: Device strings every backend accepts; GPU backends also take "cuda" / "cuda:N".
CPU_DEVICES = ("auto", "cpu")


def cpu_threads() -> int:
    """Cores this process may run on (affinity-aware; ``os.cpu_count()`` counts the whole machine), at most
    ``OMP_NUM_THREADS`` when that is set: Ray sets it to a worker's CPUs, so that workers sharing a machine do
    not each start a thread per core."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(limit)) if limit.isdigit() and int(limit) >= 1 else cores


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (torch is a core dependency; no other GPU runtime is imported)."""
    import torch

    return torch.cuda.is_available()


def require_cpu_device(backend: str, device: str) -> None:
    """For CPU-only runtimes: accept "cpu"; accept "auto" only when no CUDA GPU is present.

    With a GPU, "auto" must not settle on a CPU runtime just because it has a higher CPU priority, so the CPU
    backends step aside and a GPU backend (torch CUDA, TensorRT) is picked; ``--device cpu`` forces them.
    """
    if device not in CPU_DEVICES:
        raise BackendError(f"{backend} runs on the CPU only, got device {device!r}; use --device cpu")
    if device == "auto" and cuda_available():
        raise BackendError(f"{backend} (CPU) steps aside for a GPU backend; use --device cpu to force it")
