"""Timing: the one summary of durations (median, p95) every benchmark reports, and the pipeline's bounded
per-stage latency statistics built on it."""

from __future__ import annotations

import itertools
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np

#: Samples kept per stage. Bounded so that a run of any length keeps constant memory; 20k samples cover
#: over ten minutes at 30 FPS, enough for stable percentiles.
MAX_SAMPLES = 20_000
#: Samples behind the on-screen figures (about 2 s at 30 FPS): what the user sees now, at a cost that does not
#: grow with the run (the median of all kept samples, twice per stage per frame, took 3.8 ms once full).
RECENT_SAMPLES = 64


def summarize(samples_s: Iterable[float]) -> dict[str, float]:
    """{median_ms, p95_ms, mean_ms, min_ms, count} of durations given in seconds (at least one)."""
    a = np.fromiter(samples_s, dtype=np.float64) * 1e3
    return {
        "median_ms": float(np.median(a)),
        "p95_ms": float(np.percentile(a, 95)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "count": int(a.size),
    }


class LatencyStats:
    """Per-stage durations in seconds, most recent MAX_SAMPLES of each."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._max = max_samples

    def add(self, stage: str, seconds: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self._max)).append(seconds)

    @contextmanager
    def time(self, stage: str, into: dict[str, float] | None = None) -> Iterator[None]:
        """Time the block with ``perf_counter``; also record it into ``into`` (this frame's timings)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.add(stage, elapsed)
            if into is not None:
                into[stage] = elapsed

    def summary_ms(self) -> dict[str, dict[str, float]]:
        """{stage: :func:`summarize` of its kept samples}."""
        return {stage: summarize(values) for stage, values in self._samples.items()}

    def recent_median_ms(self, stage: str, window: int = RECENT_SAMPLES) -> float | None:
        """Median in ms of the stage's last ``window`` samples (None before the first): O(window) per call."""
        values = self._samples.get(stage)
        if not values:
            return None
        recent = np.fromiter(itertools.islice(reversed(values), window), dtype=np.float64)
        return float(np.median(recent)) * 1e3

    def median_ms(self, stage: str) -> float | None:
        values = self._samples.get(stage)
        if not values:
            return None
        return float(np.median(np.fromiter(values, dtype=np.float64))) * 1e3
