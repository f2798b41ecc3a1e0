"""Choosing and opening an inference backend: the stage's entry (``open_backend``, ``backend_names``).

The built-in backend modules register themselves in :data:`realtime_vrn.backends.base._REGISTRY` when this
module imports them (none imports its runtime at import time); ``auto`` tries them from the highest priority
down and reports every failure together when none starts. They import :mod:`.base`, never this module, so the
import graph has no cycle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from realtime_vrn.backends import base
from realtime_vrn.backends.base import InferenceBackend
from realtime_vrn.errors import BackendError, ConfigError

log = logging.getLogger(__name__)


def backend_names() -> list[str]:
    _load_builtin_backends()
    return [e.name for e in sorted(base._REGISTRY.values(), key=lambda e: -e.priority)]


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
        backend = base._REGISTRY[candidate].factory(Path(checkpoint), device)
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
