"""Choosing and opening a face-mesh backend (``open_backend``, ``backend_names``, ``candidate_backends``).

The built-in backend modules register themselves in :data:`realtime_vrn.landmarks.base._REGISTRY` when this
module imports them (none imports MediaPipe at import time). They import :mod:`.base`, never this module, so
the import graph has no cycle.
"""

from __future__ import annotations

import logging

import numpy as np

from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.landmarks import base
from realtime_vrn.landmarks.base import WARM_UP_SIZE, FaceMeshBackend, native_output_to_log

log = logging.getLogger(__name__)


def backend_names() -> list[str]:
    """Registered backends, highest priority first."""
    _load_builtin_backends()
    return [e.name for e in sorted(base._REGISTRY.values(), key=lambda e: -e.priority)]


def candidate_backends(name: str) -> tuple[list[str], list[str]]:
    """The backends to try for ``name`` ("auto" or a registered name), and why the others were skipped.

    Returns (names to try in order, ["name: reason", ...] for the unavailable ones). ConfigError for an
    unknown name.
    """
    names = backend_names()
    if name != "auto" and name not in names:
        raise ConfigError(f"unknown face tracker backend {name!r}; choose one of: auto, {', '.join(names)}")
    usable: list[str] = []
    skipped: list[str] = []
    for candidate in names if name == "auto" else [name]:
        reason = base._REGISTRY[candidate].probe()
        if reason is None:
            usable.append(candidate)
        else:
            skipped.append(f"{candidate}: {reason}")
    return usable, skipped


def open_backend(name: str, static: bool, max_faces: int) -> FaceMeshBackend:
    """Create and open backend ``name`` (the first that starts, for "auto"). BackendError if none does."""
    usable, errors = candidate_backends(name)
    for candidate in usable:
        backend = base._REGISTRY[candidate].factory(static, max_faces)
        try:
            with native_output_to_log():
                backend.open()
                # MediaPipe opens its calculators on its own threads after open() returns; one small blank frame
                # waits for them, so that their start-up chatter is caught here and not printed mid-run.
                backend.detect(np.zeros((WARM_UP_SIZE, WARM_UP_SIZE, 3), np.uint8), 0.0)
        except Exception as err:  # noqa: BLE001 - every failure is reported, the next backend is tried
            backend.close()
            log.info("face tracker backend %s could not start: %s", candidate, err)
            errors.append(f"{candidate}: {err}".splitlines()[0])
            continue
        log.info("face tracker backend: %s (%s mode)", candidate, "image" if static else "video")
        return backend
    raise BackendError("no face tracker could start: " + "; ".join(errors))


def _load_builtin_backends() -> None:
    """Import the built-in backend modules (each registers itself; none imports mediapipe at import time)."""
    from realtime_vrn.landmarks import mediapipe_solutions, mediapipe_tasks  # noqa: F401
