"""Latency statistics: bounded memory, and on-screen figures over the recent samples only."""

from __future__ import annotations

import pytest

from realtime_vrn.bench.timing import RECENT_SAMPLES, LatencyStats


def test_recent_median_follows_the_last_samples_while_the_run_median_keeps_all():
    stats = LatencyStats(max_samples=1000)
    assert stats.recent_median_ms("network") is None and stats.median_ms("network") is None
    for _ in range(900):
        stats.add("network", 0.020)  # a long run at 20 ms
    for _ in range(RECENT_SAMPLES):
        stats.add("network", 0.005)  # then the last RECENT_SAMPLES frames at 5 ms
    assert stats.recent_median_ms("network") == pytest.approx(5.0)
    assert stats.median_ms("network") == pytest.approx(20.0)
    stats.add("network", 0.020)
    assert stats.recent_median_ms("network", window=3) == pytest.approx(5.0)  # 5, 5, 20
    assert stats.recent_median_ms("network", window=1) == pytest.approx(20.0)


def test_samples_are_bounded():
    stats = LatencyStats(max_samples=50)
    for k in range(500):
        stats.add("surface", k / 1000)
    summary = stats.summary_ms()["surface"]
    assert summary["count"] == 50
    assert summary["median_ms"] == pytest.approx(474.5)  # the last 50: 450..499 ms


def test_fps_at_the_ends_of_a_run_reads_the_time_trace():
    from realtime_vrn.pipeline import fps_at_ends

    steady = [(k * 1000, k * 50.0) for k in range(21)]          # 20 FPS throughout
    assert fps_at_ends(steady) == (20.0, 20.0)
    slowing = steady[:11] + [(10_000 + k * 1000, 500.0 + k * 100.0) for k in range(1, 11)]  # then 10 FPS
    start, end = fps_at_ends(slowing)
    assert start == 20.0 and end == 10.0
    assert fps_at_ends(steady[:2]) == (None, None)
