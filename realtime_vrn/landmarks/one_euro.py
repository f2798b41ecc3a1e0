"""The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for landmark arrays.

An adaptive first-order low-pass filter: at low speed its cutoff is ``min_cutoff`` (strong smoothing: jitter
is removed); the cutoff grows with the estimated speed (``beta``), so fast motion is followed with little
lag. It is causal and uses the current measurement in every output: it adds no frame of delay.

The velocity is filtered per coordinate (as in the paper); the speed that sets the cutoff is the norm of one
point's filtered velocity (x, y and z alike, one cutoff per point) divided by ``scale``: the tracker passes
the face size in pixels, so ``beta`` is per face-size-per-second and the same parameters suit a small face
far away and a close one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """min_cutoff (Hz) at rest, beta (Hz per scale-unit/s of speed), d_cutoff (Hz) of the speed estimate."""

    min_cutoff: float
    beta: float
    d_cutoff: float

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(f"One Euro parameters must be min_cutoff > 0, d_cutoff > 0, beta >= 0, got {self}")


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters a stream of (N, D) arrays sampled at increasing times (seconds).

    ``__call__(x, t, scale)``: x (N, D) float, any units; t seconds; scale > 0 in x's units (speed normaliser).
    Returns the filtered (N, D) float32 array. The first sample, and a sample whose time does not increase,
    passes through unchanged and restarts the filter.
    """

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self._x: np.ndarray | None = None  # last filtered value, float64
        self._dx: np.ndarray | None = None  # last filtered velocity, float64 (N, D), x-units per second
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected an (N, D) array, got shape {x.shape}")
        if self._x is None or self._t is None or t <= self._t or self._x.shape != x.shape:
            return self._restart(x, t)
        p = self.params
        dt = t - self._t
        velocity = (x - self._x) / dt
        self._dx = self._dx + _alpha(p.d_cutoff, dt) * (velocity - self._dx)
        speed = np.linalg.norm(self._dx, axis=1, keepdims=True)  # (N, 1): one cutoff per point
        cutoff = p.min_cutoff + p.beta * speed / max(scale, 1e-9)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.astype(np.float32)

    def _restart(self, x: np.ndarray, t: float) -> np.ndarray:
        self._x = x.copy()
        self._dx = np.zeros_like(x)
        self._t = t
        return x.astype(np.float32)
