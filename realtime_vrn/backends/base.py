"""One interface for every inference backend, and the table backends register themselves in.

A backend runs a VRN checkpoint on a batch of crops and returns the network's low-resolution logits (the
release's last bilinear x4 upsample and sigmoid are evaluated by the surface stage, only where needed).
Backends are registered by name with a priority (the pyvirtualcam ``Backend`` / ``register_backend``
pattern); :mod:`realtime_vrn.backends.registry` loads the built-in ones and opens one. Heavy imports
(onnxruntime, openvino, tensorrt) happen inside ``open()``, never at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from realtime_vrn.model.network import VRNConfig


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
