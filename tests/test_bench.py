"""The benchmarks' shared parts: one timing summary, one environment record, one module command."""

from __future__ import annotations

import pytest

from realtime_vrn.bench.__main__ import COMMANDS, main
from realtime_vrn.bench.environment import environment_info
from realtime_vrn.bench.timing import LatencyStats, summarize


def test_summarize_reports_median_p95_mean_min_count_in_ms():
    s = summarize([0.001 * k for k in range(1, 101)])  # 1..100 ms
    assert s["median_ms"] == pytest.approx(50.5)
    assert s["p95_ms"] == pytest.approx(95.05)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["min_ms"] == pytest.approx(1.0)
    assert s["count"] == 100


def test_latency_stats_summary_is_the_shared_summary():
    stats = LatencyStats()
    for k in range(1, 11):
        stats.add("network", k / 1000)
    assert stats.summary_ms()["network"] == summarize([k / 1000 for k in range(1, 11)])


def test_one_environment_record_for_every_benchmark():
    env = environment_info()
    assert {"date", "commit", "python", "platform", "cpu", "cpu_count", "cores_available", "load_average_1min",
            "gpu", "versions"} <= env.keys()
    assert env["cores_available"] >= 1 and env["versions"]["numpy"]


def test_the_bench_command_names_its_subcommands(capsys):
    assert main([]) == 2
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS), err


@pytest.mark.parametrize("name", sorted(COMMANDS), ids=lambda name: f"{name}-command")
def test_each_subcommand_reaches_its_parser(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"python -m realtime_vrn.bench {name}" in capsys.readouterr().out
