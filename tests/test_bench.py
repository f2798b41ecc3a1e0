"""The benchmarks' shared parts: one timing summary, one environment record, one command."""

from __future__ import annotations

import json

import pytest

from realtime_vrn.bench.__main__ import main
from realtime_vrn.bench.environment import environment_info
from realtime_vrn.bench.timing import LatencyStats, summarize
from realtime_vrn.cli import main as cli_main


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


#: bench's commands: the pipeline (the default) and one stage alone each.
BENCH_COMMANDS = ("pipeline", "backends", "gpu", "render")


def test_the_module_is_an_alias_of_the_bench_command(capsys):
    """`python -m realtime_vrn.bench ARGS` is `realtime-vrn bench ARGS`: one command tree, one parser each."""
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("realtime-vrn: error: "), err
    assert all(f"'{name}'" in err for name in BENCH_COMMANDS), err


@pytest.mark.parametrize("name", BENCH_COMMANDS, ids=lambda name: f"{name}-command")
def test_each_subcommand_reaches_its_parser(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"realtime-vrn bench {name}" in out and "--debug" in out


def test_a_stage_benchmark_writes_its_json(monkeypatch, tmp_path, capsys):
    import realtime_vrn.bench.render as render

    asked = {}
    monkeypatch.setattr(render, "benchmark_render", lambda **kw: asked.update(kw) or {"median_ms": 1.5})
    out = tmp_path / "deep" / "render.json"
    assert cli_main(["bench", "render", "--runs", "3", "--view", "mesh3d", "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"median_ms": 1.5}
    assert asked == {"triangles": 150_000, "view": "mesh3d", "rasterizer": "auto", "repeats": 3}
    assert f"wrote {out}" in capsys.readouterr().out


def test_an_unwritable_json_is_one_line(monkeypatch, tmp_path, capsys):
    import realtime_vrn.bench.render as render

    monkeypatch.setattr(render, "benchmark_render", lambda **kw: {"median_ms": 1.5})
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["bench", "render", "--json", str(blocker / "render.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"realtime-vrn: error: cannot write {blocker / 'render.json'}") and len(err.splitlines()) == 1
