"""One interface for every inference backend, and the registry that picks one.

A backend runs a VRN checkpoint on a batch of crops and returns the network's low-resolution logits (the
release's last bilinear x4 upsample and sigmoid are evaluated by the surface stage, only where needed).
Backends are registered by name with a priority; ``auto`` tries them from the highest priority down and
reports every failure together when none starts (the pyvirtualcam ``Backend`` / ``register_backend`` pattern).
Heavy imports (onnxruntime, openvino, tensorrt) happen inside ``open()``, never at import time.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.model.network import VRNConfig

log = logging.getLogger(__name__)


class InferenceBackend(ABC):
    """Runs one VRN. Construction is cheap; :meth:`open` loads and compiles; :meth:`close` is idempotent.

    ``infer`` contract:
        input  (N, C, S, S) float32, C = cfg.in_channels (RGB in [0, 1], then guidance heatmaps), S = cfg.input_size;
        output (N, D, g, g) float32 C-contiguous logits, g = cfg.grid_size (S/4; S/2 with the refinement
        head), D = cfg.depth_bins, ordered (N, z, y, x), numpy.
    """

    #: registry name, e.g. "torch", "onnxruntime", "openvino", "tensorrt".
    name: str = ""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.cfg: VRNConfig | None = None

    @abstractmethod
    def open(self) -> None:
        """Load the weights and prepare the runtime; raise any exception with a useful message on failure."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Network forward pass (contract in the class docstring)."""

    #: True when :meth:`infer_device` returns logits that stay on the GPU (set by :meth:`open`).
    outputs_on_device: bool = False

    def infer_device(self, batch: np.ndarray):
        """Like :meth:`infer`, but the (N, D, g, g) float32 C-contiguous logits stay on the GPU (a torch CUDA
        tensor or another DLPack array, valid until the next call), for a GPU surface stage. Only backends whose
        :attr:`outputs_on_device` is True implement it."""
        raise NotImplementedError(f"the {self.name} backend returns its logits on the host only")

    def close(self) -> None:
        """Release the runtime. Safe to call twice."""

    def describe(self) -> str:
        """One line for logs and benchmark JSON: backend, device, precision."""
        return f"{self.name} ({self.device})"

    def __enter__(self) -> "InferenceBackend":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[[Path, str], InferenceBackend]
    priority: int


_REGISTRY: dict[str, _Entry] = {}


def register_backend(name: str, factory: Callable[[Path, str], InferenceBackend], priority: int) -> None:
    """Register a backend under ``name``; ``auto`` tries higher priorities first."""
    _REGISTRY[name] = _Entry(name, factory, priority)


def backend_names() -> list[str]:
    _load_builtin_backends()
    return [e.name for e in sorted(_REGISTRY.values(), key=lambda e: -e.priority)]


def open_backend(name: str, checkpoint: Path, device: str = "auto") -> InferenceBackend:
    """Create and open the backend ``name`` (or the first that starts, for ``"auto"``).

    Raises ConfigError for an unknown name (listing the valid ones) and BackendError when nothing starts
    (listing each backend's reason).
    """
    names = backend_names()
    if name != "auto" and name not in names:
        raise ConfigError(f"unknown backend {name!r}; choose one of: auto, {', '.join(names)}")
    candidates = names if name == "auto" else [name]
    errors: list[str] = []
    for candidate in candidates:
        backend = _REGISTRY[candidate].factory(Path(checkpoint), device)
        try:
            backend.open()
        except Exception as err:  # noqa: BLE001 - every failure is reported, the next backend is tried
            backend.close()
            reason = f"{candidate}: {err}".splitlines()[0]
            log.info("backend %s could not start: %s", candidate, err)
            errors.append(reason)
            continue
        log.info("inference backend: %s", backend.describe())
        return backend
    raise BackendError("no inference backend could start: " + "; ".join(errors))


def _load_builtin_backends() -> None:
    """Import the built-in backend modules (each registers itself; none imports its runtime at import time)."""
    from realtime_vrn.backends import onnxruntime_backend, openvino_backend, torch_backend  # noqa: F401
    from realtime_vrn.backends.tensorrt import backend as tensorrt_backend  # noqa: F401
