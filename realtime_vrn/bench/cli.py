"""``realtime-vrn bench backends | gpu | render``: one stage benchmark alone.

The main CLI (``realtime_vrn/cli.py``) makes ``bench`` with its default command ``pipeline`` (``realtime-vrn
bench [options]``, :mod:`.run`) and calls :func:`add_parser` on bench's sub-parsers for these. Each command sets
``func`` to its handler ``_cmd_<command>(args) -> int``; the benchmark modules are imported in the handlers, so
building the command tree loads no runtime, GPU or OpenGL library. Every result JSON is written by
:func:`write_json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from realtime_vrn.argtypes import backend_list, device_name, positive_int
from realtime_vrn.config import RASTERIZERS, VIEWS
from realtime_vrn.errors import ConfigError

EXIT_OK = 0


def add_parser(bench_commands) -> None:
    """Add ``backends``, ``gpu`` and ``render`` to ``bench_commands`` (bench's argparse sub-parsers action)."""
    backends = bench_commands.add_parser(
        "backends", help="the network alone per inference backend, against torch float32",
        description="Time every inference backend (or --backends) on one checkpoint, batch 1, against the torch "
                    "float32 reference on a real face (median, p95, agreement of the logits).")
    backends.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint file (ours or converted)")
    backends.add_argument("--backends", type=backend_list, metavar="LIST", default="all",
                          help="comma separated backends (default all registered)")
    backends.add_argument("--runs", type=positive_int, default=20, metavar="N", help="timed calls per backend")
    backends.add_argument("--device", type=device_name, default="cpu", metavar="DEV",
                          help="cpu (default), cuda or cuda:N")
    backends.add_argument("--json", type=Path, metavar="FILE", help="also write the result here")
    backends.set_defaults(func=_cmd_backends)

    gpu = bench_commands.add_parser(
        "gpu", help="the network on CUDA and the CuPy marching cubes against their CPU references",
        description="GPU benchmark: the network on CUDA (FP32, FP16 + channels_last, + CUDA graph) and the CuPy "
                    "marching cubes, each checked before it is timed, beside the CPU references of the same run.")
    gpu.add_argument("--json", "--out", dest="json", type=Path, required=True, metavar="FILE",
                     help="JSON file to write")
    gpu.add_argument("--runs", type=positive_int, default=200, metavar="N", help="timed runs per GPU measurement")
    gpu.add_argument("--cpu-only", action="store_true", help="only the CPU references (no GPU needed)")
    gpu.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    gpu.set_defaults(func=_cmd_gpu)

    render = bench_commands.add_parser(
        "render", help="render + read-back of a face-sized mesh, offscreen",
        description="Time the renderer (mesh upload, rasterisation, read-back, compositing) on a 1280x720 frame "
                    "with a face-sized ellipsoid, after checking its silhouette.")
    render.add_argument("--triangles", type=positive_int, default=150_000, metavar="N", help="mesh size")
    render.add_argument("--view", choices=VIEWS, default="overlay", help="what to draw (default overlay)")
    render.add_argument("--rasterizer", choices=RASTERIZERS, default="auto",
                        help="auto (default: compute with OpenGL 4.3), compute or pipeline")
    render.add_argument("--runs", type=positive_int, default=100, metavar="N", help="timed renders")
    render.add_argument("--json", type=Path, metavar="FILE", help="also write the result here")
    render.set_defaults(func=_cmd_render)


def write_json(path: Path, data: dict) -> None:
    """Write a benchmark result atomically and say so; a path that cannot be written is a ConfigError."""
    from realtime_vrn.fileio import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from err
    print(f"  wrote {path}")


def _cmd_backends(args: argparse.Namespace) -> int:
    from realtime_vrn.bench.backends import benchmark_backends, format_table

    names = None if args.backends in ("", "all") else [n.strip() for n in args.backends.split(",") if n.strip()]
    result = benchmark_backends(args.checkpoint, names, args.runs, args.device)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return EXIT_OK


def _cmd_gpu(args: argparse.Namespace) -> int:
    from realtime_vrn.bench.gpu import run

    result = run(args.runs, args.cpu_only, args.compile)
    print(json.dumps(result, indent=2))
    write_json(args.json, result)
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    from realtime_vrn.bench.render import benchmark_render

    result = benchmark_render(triangles=args.triangles, view=args.view, rasterizer=args.rasterizer,
                              repeats=args.runs)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return EXIT_OK
