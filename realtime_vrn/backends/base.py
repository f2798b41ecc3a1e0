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
from typing import Any, Callable, Protocol

import numpy as np

from realtime_vrn.contracts import check_logits, logits_shape
from realtime_vrn.errors import BackendError
from realtime_vrn.model.network import VRNConfig


class Backend(Protocol):
    """What the pipeline needs of an inference backend (:class:`InferenceBackend` implements it; a test double
    may too): ``infer`` on the host, ``infer_device`` when :attr:`outputs_on_device`, and one line for logs."""

    outputs_on_device: bool

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def infer_device(self, batch: Any) -> Any: ...

    def describe(self) -> str: ...


class InferenceBackend(ABC):
    """Runs one VRN. Construction is cheap; :meth:`open` loads and compiles; :meth:`close` is idempotent.

    ``infer`` contract:
        input  (N, C, S, S) float32, C = cfg.in_channels (RGB in [0, 1], then guidance heatmaps), S = cfg.input_size;
        output (N, D, g, g) float32 C-contiguous logits, g = cfg.grid_size (S/4; S/2 with the refinement
        head), D = cfg.depth_bins, ordered (N, z, y, x), numpy.

    The contract is checked here, once, for every backend (as Polygraphy's runners do): the public methods
    check the open state, the input batch and the output shape, and a subclass implements only the inner
    calls, :meth:`_open`, :meth:`_infer`, :meth:`_close` (and :meth:`_infer_device` on a GPU).
    """

    #: registry name, e.g. "torch", "onnxruntime", "openvino", "tensorrt".
    name: str = ""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.cfg: VRNConfig | None = None
        self._is_open = False

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._is_open

    def open(self) -> None:
        """Load the weights and prepare the runtime (:meth:`_open`, which sets :attr:`cfg`); raise any exception
        with a useful message on failure (the caller then calls :meth:`close`)."""
        self._open()
        if self.cfg is None:
            raise BackendError(f"the {self.name} backend opened without reading the model's configuration")
        self._is_open = True

    def close(self) -> None:
        """Release the runtime (:meth:`_close`). Safe to call twice, and after a failed :meth:`open`."""
        self._is_open = False
        self._close()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Network forward pass (contract in the class docstring)."""
        self._check_batch(batch)
        out = self._infer(batch)
        try:
            return check_logits(out, logits_shape(self.cfg, len(batch)))
        except (TypeError, ValueError) as err:
            raise BackendError(f"the {self.name} backend broke its output contract: {err}") from err

    #: True when :meth:`infer_device` returns logits that stay on the GPU (set by :meth:`_open`).
    outputs_on_device: bool = False

    def infer_device(self, batch: Any) -> Any:
        """Like :meth:`infer`, but the (N, D, g, g) float32 C-contiguous logits stay on the GPU (a torch CUDA
        tensor or another DLPack array, valid until the next call), for a GPU surface stage. ``batch``: the host
        (N, C, S, S) float32 array of :meth:`infer`, or such an array already on the GPU where the backend takes
        one. Only backends whose :attr:`outputs_on_device` is True implement it (:meth:`_infer_device`)."""
        self._require_open()
        if not self.outputs_on_device:
            raise NotImplementedError(f"the {self.name} backend returns its logits on the host only")
        self._check_batch(batch)
        out = self._infer_device(batch)
        expected = logits_shape(self.cfg, len(batch))
        if tuple(out.shape) != expected or _dtype_name(out) != "float32":
            raise BackendError(f"the {self.name} backend broke its output contract: expected {expected} float32 "
                               f"logits on the device, got {tuple(out.shape)} {_dtype_name(out)}")
        return out

    # -- what a backend implements ---------------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Load the weights, prepare the runtime, set :attr:`cfg` (and :attr:`outputs_on_device` on a GPU)."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """The forward pass of a checked, open batch: (N, D, g, g) float32 C-contiguous NumPy logits."""

    def _infer_device(self, batch: Any) -> Any:
        """The forward pass of a checked, open batch, logits left on the GPU: exactly N rows."""
        raise NotImplementedError(f"the {self.name} backend returns its logits on the host only")

    def _close(self) -> None:
        """Release the runtime; called by :meth:`close`, also after a failed or without an :meth:`_open`."""

    def describe(self) -> str:
        """One line for logs and benchmark JSON: backend, device, precision."""
        return f"{self.name} ({self.device})"

    def __enter__(self) -> "InferenceBackend":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if not self._is_open:
            raise RuntimeError(f"the {self.name} backend is not open; call open() or use it as a context manager")

    def _check_batch(self, batch: Any) -> None:
        """The input contract (cheap: no pass over the data): open, and an (N, C, S, S) float32 batch (a NumPy
        array; for :meth:`infer_device`, also a device array)."""
        self._require_open()
        if isinstance(batch, np.ndarray) or not hasattr(batch, "shape"):
            check_batch(batch, self.cfg)
            return
        expected = (self.cfg.in_channels, self.cfg.input_size, self.cfg.input_size)
        if len(batch.shape) != 4 or tuple(batch.shape[1:]) != expected or batch.shape[0] < 1 \
                or _dtype_name(batch) != "float32":
            raise ValueError(f"expected a float32 batch of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(batch.shape)} {_dtype_name(batch)}")


def check_batch(batch: np.ndarray, cfg: VRNConfig) -> None:
    """Reject anything but an (N, C, S, S) float32 NumPy array (the ``infer`` input contract). Cheap: no data pass."""
    expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(batch).__name__}")
    if batch.ndim != 4 or batch.shape[1:] != expected or batch.shape[0] < 1:
        raise ValueError(f"expected a float32 batch of shape (N, {', '.join(map(str, expected))}), got {batch.shape}")
    if batch.dtype != np.float32:
        raise ValueError(f"expected a float32 batch, got {batch.dtype}")


def _dtype_name(array: Any) -> str:
    """"float32" for a NumPy / CuPy float32 array and a torch.float32 tensor alike."""
    return str(array.dtype).rpartition(".")[2]


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[[Path, str], InferenceBackend]
    priority: int


_REGISTRY: dict[str, _Entry] = {}


def register_backend(name: str, factory: Callable[[Path, str], InferenceBackend], priority: int) -> None:
    """Register a backend under ``name``; ``auto`` tries higher priorities first."""
    _REGISTRY[name] = _Entry(name, factory, priority)
