"""The ``realtime-vrn`` command tree.

    realtime-vrn [run] [--camera N | --video FILE | --image FILE|DIR] [options]   reconstruct (default: the demo clip)
    realtime-vrn bench [same options] [--json FILE]                              benchmark the pipeline
    realtime-vrn bench backends CHECKPOINT | gpu --json FILE | render            one stage alone
    realtime-vrn weights fetch | convert FILE | list                             official / installed models
    realtime-vrn engine build | recipes                                          TensorRT engines
    realtime-vrn data | train | eval                                              our synthetic-data models
    realtime-vrn batch INPUTS... --out DIR [--workers N] [--address ADDR]         many videos / photos (Ray)

``run`` is the default command: a command line without a command name runs it (``realtime-vrn --camera 0``);
likewise ``bench`` without a command name runs ``bench pipeline`` (``realtime-vrn bench --max-frames 300``).
Every command, at every level, takes the common options ``-v`` / ``-q`` / ``--debug``, before or after its name.
A module that adds commands has ``add_parser(subparsers)``; each command sets ``func`` to its handler,
``_cmd_<command>(args) -> int``. The choices of the options are declared in :mod:`realtime_vrn.config` and
checked by argparse (:mod:`realtime_vrn.argtypes`), so a bad value is refused before anything heavy loads.

Exit status: 0 done; 1 the run finished but did not do everything asked (no face found, an output could not be
completed, input files skipped: the summary names them); 2 a user error, one line (``realtime-vrn: error: ...``)
and no traceback unless ``--debug`` is given; 130 / 143 stopped by SIGINT / SIGTERM (every output finished up to
the last frame, the summary says "interrupted after N frames").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

from realtime_vrn import __version__
from realtime_vrn.argtypes import backend_list, backend_name, camera_index, device_name, output_path, positive_int, \
    unit_float
from realtime_vrn.config import FACE_CHOICES, FUSION_WEIGHT, MESH_FORMATS, OUTPUT_IMAGE_SUFFIXES, \
    OUTPUT_VIDEO_SUFFIXES, SURFACE_KINDS, VIEWS
from realtime_vrn.errors import VRNError

log = logging.getLogger("realtime_vrn")

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USER_ERROR = 2
#: Default outputs of the demo run (no input given), relative to the working directory.
DEMO_OUTPUT_DIR = Path("realtime-vrn-output")
PROG = "realtime-vrn"
#: What a command line without a command name runs.
DEFAULT_COMMAND = "run"
#: The common options (``-v`` counts, ``-q`` and ``--debug`` are flags) and their values when not given.
_COMMON_DEFAULTS = {"verbose": 0, "quiet": False, "debug": False}
#: A command-line word that is only common options (``-v``, ``-vv``, ``-vq``, ``--debug``): it may come before
#: the command name.
_COMMON_WORD = re.compile(r"-[vq]+|--verbose|--quiet|--debug")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit status 2 (no usage block), and its subcommands
    (at any depth) are :class:`_Commands`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{PROG}: error: {message} (see {self.prog} --help)\n")


class _Commands(argparse._SubParsersAction):
    """Subcommands that each take the common options, before or after their name: ``-v weights list -v`` is -vv.

    argparse parses a subcommand's words into a fresh namespace and copies it over the parent's, which would drop
    a ``-v`` given before the name; so the subcommands' common options have no default and the values of the
    levels are combined here (counts add up, a flag given anywhere holds).

    A command made with ``default_command=NAME`` runs its subcommand NAME when none is named, as the tree runs
    ``run``: ``bench --max-frames 30`` is ``bench pipeline --max-frames 30``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._default_commands: dict[str, str] = {}

    def add_parser(self, name: str, default_command: str | None = None, **kwargs) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), _common_options(suppress=True)]
        if default_command is not None:
            self._default_commands[name] = default_command
        return super().add_parser(name, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values[0] in self._default_commands:
            sub = self._name_parser_map[values[0]]
            values = [values[0], *_with_command(list(values[1:]), _command_names(sub),
                                                self._default_commands[values[0]])]
        before = {dest: getattr(namespace, dest, default) for dest, default in _COMMON_DEFAULTS.items()}
        for dest, default in _COMMON_DEFAULTS.items():
            setattr(namespace, dest, default)
        super().__call__(parser, namespace, values, option_string)
        extra = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extra:  # refused by the command that was given them, whose --help lists its options
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extra)}")
        namespace.verbose += before["verbose"]
        namespace.quiet = namespace.quiet or before["quiet"]
        namespace.debug = namespace.debug or before["debug"]


def _add_run_options(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("input (default: the bundled demo clip)")
    src.add_argument("--camera", type=camera_index, metavar="N", help="camera index (0 = default webcam)")
    src.add_argument("--video", type=Path, metavar="FILE", help="video file")
    src.add_argument("--image", type=Path, metavar="FILE|DIR", help="image file or folder of images")
    src.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    src.add_argument("--loop", action="store_true", default=None,
                     help="replay a video file or folder until --max-frames (soak tests)")
    src.add_argument("--realtime", action="store_true", default=None,
                     help="video files: drop frames when slower than the file's frame rate (as a camera)")
    out = p.add_argument_group("output")
    out.add_argument("--output", type=output_path, metavar="FILE|DIR",
                     help=f"video file ({' '.join(OUTPUT_VIDEO_SUFFIXES)}), image file "
                          f"({' '.join(OUTPUT_IMAGE_SUFFIXES)}) or folder (no suffix) with the reconstruction drawn in")
    out.add_argument("--export", type=Path, metavar="DIR", help="write meshes into DIR (new or empty)")
    out.add_argument("--overwrite", action="store_true", default=None,
                     help="allow --export into a folder that already holds files")
    out.add_argument("--export-every", type=positive_int, metavar="N", help="export every N-th mesh (default 1)")
    out.add_argument("--mesh-format", choices=MESH_FORMATS, help="mesh file format (default obj)")
    out.add_argument("--y-up", action="store_true", default=None,
                     help="export meshes with y up (MeshLab/Blender); default is frame pixels, y down")
    out.add_argument("--headless", action="store_true", default=None, help="never open a window")
    out.add_argument("--faces", choices=FACE_CHOICES,
                     help="reconstruct every face or the largest (default: all in photos, largest in video and "
                          "cameras; with all, video faces are followed as face1, face2, ...)")
    out.add_argument("--view", choices=VIEWS, help="what to draw (default overlay)")
    out.add_argument("--blend", type=unit_float, metavar="A", help="mesh opacity over the frame, 0-1")
    out.add_argument("--virtual-camera", action="store_true", default=None,
                     help="send the picture to a virtual camera (extra 'vcam': pyvirtualcam, GPL-2.0)")
    out.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="no progress bar")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", metavar="NAME", help="installed model name (realtime-vrn weights list)")
    mdl.add_argument("--weights", type=Path, metavar="FILE", help="checkpoint file (ours or converted)")
    mdl.add_argument("--backend", type=backend_name, metavar="NAME",
                     help="inference backend: auto (default), torch, onnxruntime, openvino, ...")
    mdl.add_argument("--device", type=device_name, metavar="DEV", help="auto (default), cpu, cuda or cuda:N")
    mdl.add_argument("--surface", choices=SURFACE_KINDS, default=None,
                     help="marching cubes: auto (default: on the GPU when the network runs there), cpu, cuda, or "
                          "a CPU implementation: numba (the fastest), skimage")
    mdl.add_argument("--mediapipe-weight", type=unit_float, metavar="W",
                     help="MediaPipe's share of the surface's depth, 0-1: the network's surface and MediaPipe's "
                          f"mesh averaged (default {FUSION_WEIGHT:g}; 0: the network's surface alone)")
    p.add_argument("--no-smoothing", dest="smoothing", action="store_false", default=None,
                   help="no temporal smoothing of the landmarks")
    p.add_argument("--landmarks", type=Path, metavar="FILE.npz", default=None,
                   help="replay landmarks recorded with --record-landmarks instead of running MediaPipe "
                        "(machines without MediaPipe, reproducible runs)")
    p.add_argument("--record-landmarks", type=Path, metavar="FILE.npz", default=None,
                   help="write the landmarks of every frame to FILE.npz (replay with --landmarks)")
    p.add_argument("--pipeline", dest="pipelined", action="store_true", default=None,
                   help="find the landmarks of the next frame on a worker thread while this one is reconstructed "
                        "(default: on with a GPU, and for video files on two or more CPUs)")
    p.add_argument("--no-pipeline", dest="pipelined", action="store_false", default=None,
                   help="process each frame start to end before reading the next (default for cameras, "
                        "--realtime and images on the CPU: the shortest capture-to-output latency)")
    p.add_argument("--benchmark", type=Path, metavar="FILE", help="write the run's timing summary as JSON")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file with defaults for these options")


def _common_options(suppress: bool = False) -> argparse.ArgumentParser:
    """A parent parser with the options every command takes. ``suppress``: no defaults (in subcommands, see
    :class:`_Commands`); else the values of _COMMON_DEFAULTS."""
    p = argparse.ArgumentParser(add_help=False)
    group = p.add_argument_group("common options (before or after the command name)")
    default = {dest: argparse.SUPPRESS if suppress else value for dest, value in _COMMON_DEFAULTS.items()}
    group.add_argument("-v", "--verbose", action="count", default=default["verbose"],
                       help="more log output (-vv: debug)")
    group.add_argument("-q", "--quiet", action="store_true", default=default["quiet"],
                       help="only warnings and errors")
    group.add_argument("--debug", action="store_true", default=default["debug"], help="show tracebacks")
    return p


def _add_run_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "run", help="reconstruct from a camera, video or images (the default command)",
        description="Real-time 3D face reconstruction (VRN) from a camera, video or images. The default command: "
                    "'realtime-vrn [options]' is 'realtime-vrn run [options]'.")
    _add_run_options(p)
    p.set_defaults(func=_cmd_run)


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    """``bench``: the pipeline (its default command ``pipeline``) or one stage alone (:mod:`.bench.cli`)."""
    from realtime_vrn.bench import cli as bench_cli

    bench = commands.add_parser(
        "bench", default_command="pipeline", help="benchmarks: the pipeline headless (default), or one stage alone",
        description="Benchmarks, each written as JSON with the machine's hardware and versions.",
        epilog=f"Without a command, bench runs 'pipeline': '{PROG} bench --max-frames 300' is '{PROG} bench pipeline "
               f"--max-frames 300' (its options: {PROG} bench pipeline --help).")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="{pipeline,backends,gpu,render}")
    p = sub.add_parser("pipeline", help="the pipeline headless (FPS, stage latency) into JSON (the default)",
                       description="Benchmark the pipeline headless and write JSON (FPS, stage latency).")
    _add_run_options(p)
    p.add_argument("--json", type=Path, metavar="FILE", default=Path("benchmark.json"),
                   help="where to write the JSON (default benchmark.json)")
    p.add_argument("--backends", type=backend_list, metavar="LIST", default="",
                   help="also time the network alone with these backends (comma separated, or 'all')")
    p.add_argument("--surface-runs", type=positive_int, default=20, metavar="N",
                   help="runs of the surface comparison against scikit-image's full-volume marching cubes")
    p.add_argument("--render", action="store_true", help="include offscreen rendering in the pipeline timing")
    p.add_argument("--full-network", action="store_true",
                   help="with --backends: also time the full-size (paper) network, 19.2M parameters")
    p.add_argument("--jitter", action="store_true",
                   help="measure surface jitter on a still face with and without temporal smoothing")
    p.add_argument("--compare-pipeline", action="store_true",
                   help="also run the source with the sequential and the pipelined loop, alternating, and "
                        "report both FPS")
    p.set_defaults(func=_cmd_bench)
    bench_cli.add_parser(sub)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("absl", "matplotlib", "PIL", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # MediaPipe / TFLite / glog print C++ log lines at start-up; keep them out unless debugging (what these
    # variables do not reach is kept off the terminal by landmarks.base.native_output_to_log). OpenCV's FFmpeg
    # prints its own errors ("moov atom not found") before ours: -8 = AV_LOG_QUIET, read when FFmpeg is first used.
    os.environ.setdefault("GLOG_minloglevel", "2" if verbose < 2 else "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if verbose < 2 else "0")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8" if verbose < 2 else "32")


def _config_from_args(args: argparse.Namespace):
    from realtime_vrn.config import load_config

    fields = vars(args).copy()
    return load_config(fields, config_file=fields.pop("config", None))


def _cmd_run(args: argparse.Namespace) -> int:
    from realtime_vrn.pipeline import run

    config = _config_from_args(args)
    if config.is_demo:
        _demo_defaults(config)
    summary = run(config)
    if config.benchmark is not None:
        _write_json(config.benchmark, _summary_json(summary), summary)
    _print_summary(summary)
    for failure in summary.failed_outputs:
        print(f"realtime-vrn: error: output not completed: {failure}", file=sys.stderr)
    if summary.skipped_inputs:
        names = ", ".join(Path(s.split(": ", 1)[0]).name for s in summary.skipped_inputs)
        print(f"realtime-vrn: error: skipped {len(summary.skipped_inputs)} unreadable input file(s): {names}",
              file=sys.stderr)
    if summary.interrupted:
        return summary.exit_code
    if summary.frames_with_face == 0 and summary.frames > 0:
        print("no face was found in any frame: use a clip or camera with a visible, roughly frontal face",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_INCOMPLETE if summary.failed_outputs or summary.skipped_inputs else EXIT_OK


def _demo_defaults(config) -> None:
    """No input given: the bundled clip, headless, an annotated video and the last mesh in ./realtime-vrn-output."""
    config.headless = True
    if config.output is None:
        config.output = DEMO_OUTPUT_DIR / "demo.mp4"
    if config.export is None:
        config.export = DEMO_OUTPUT_DIR / "meshes"
        config.export_every = max(config.export_every, 30)
        config.overwrite = True  # the demo's own folder: a second demo run replaces the first one's meshes
    log.info("no input given: reconstructing the bundled demo clip into %s/", DEMO_OUTPUT_DIR)


def _print_summary(summary) -> None:
    stages = summary.stages
    if summary.interrupted:
        print(f"interrupted ({summary.signal}) after {summary.frames} frames: the outputs below hold every frame "
              f"up to there")
    print(f"{summary.frames} frames in {summary.wall_s:.1f} s: {summary.fps:.1f} FPS "
          f"({summary.frames_without_face} without a face, {summary.dropped_frames} dropped) - {summary.backend}, "
          f"{summary.loop} loop")
    if summary.fps_start is not None and summary.fps_end is not None:
        from realtime_vrn.pipeline import WARM_FRAMES

        print(f"  first tenth of the run {summary.fps_start:.1f} FPS, last tenth {summary.fps_end:.1f} FPS; memory "
              f"{summary.rss_warm_mb:.0f} MiB after {WARM_FRAMES} frames, {summary.rss_end_mb:.0f} MiB at the end")
    order = ("landmarks", "crop", "network", "surface", "fusion", "render", "output", "end_to_end")
    for name in order:
        if name in stages:
            s = stages[name]
            print(f"  {name:<11} median {s['median_ms']:7.2f} ms   p95 {s['p95_ms']:7.2f} ms")
    if summary.faces_followed:
        print(f"  {summary.faces_followed} face(s) followed (face1 to face{summary.faces_followed}), at most "
              f"{summary.most_faces} in one frame")
    for path in summary.outputs:
        print(f"  wrote {path}")
    if summary.meshes_exported:
        print(f"  exported {summary.meshes_exported} meshes")
    for failure in summary.failed_outputs:
        print(f"  FAILED {failure}")
    for skipped in summary.skipped_inputs:
        print(f"  skipped {skipped}")


def _summary_json(summary) -> dict:
    from dataclasses import asdict

    from realtime_vrn.bench.environment import environment_info

    return {"pipeline": asdict(summary), "environment": environment_info()}


def _write_json(path: Path, data: dict, summary) -> None:
    """Write ``data`` atomically, a run's output: a failure is recorded in the run's ``summary`` (its other
    outputs are complete and listed), a success listed there."""
    from realtime_vrn.fileio import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
    except OSError as err:
        summary.failed_outputs.append(f"{path}: {err.strerror or err}")
        return
    summary.outputs.append(str(path))


def _cmd_bench(args: argparse.Namespace) -> int:
    """``bench`` / ``bench pipeline``."""
    from realtime_vrn.bench.cli import write_json
    from realtime_vrn.bench.run import run_benchmark

    extra = {name: getattr(args, name) for name in ("json", "backends", "surface_runs", "render", "full_network",
                                                   "jitter", "compare_pipeline")}
    for name in extra:
        delattr(args, name)
    config = _config_from_args(args)
    config.headless = True
    json_path = extra.pop("json")
    result = run_benchmark(config, **extra)
    write_json(json_path, result)
    return EXIT_OK


def _sub_parsers() -> list[ModuleType]:
    """The modules that add the other commands: each has ``add_parser(subparsers)``. An ImportError here is a
    broken installation and is raised, not hidden (the modules import their heavy dependencies in the handlers)."""
    from realtime_vrn.backends.tensorrt import cli as engine_cli
    from realtime_vrn.batch import cli as batch_cli
    from realtime_vrn.training import cli as training_cli
    from realtime_vrn.weights import cli as weights_cli

    return [weights_cli, engine_cli, batch_cli, training_cli]


def _command_tree() -> tuple[_Parser, tuple[str, ...]]:
    """The parser of every command, and the command names."""
    parser = _Parser(prog=PROG, parents=[_common_options()],
                     description="Real-time 3D face reconstruction (VRN) from a camera, video or images.",
                     epilog=f"Without a command, {PROG} runs '{DEFAULT_COMMAND}': '{PROG} --camera 0' is "
                            f"'{PROG} {DEFAULT_COMMAND} --camera 0' (its options: {PROG} {DEFAULT_COMMAND} --help).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    _add_run_command(commands)
    _add_bench_command(commands)
    for module in _sub_parsers():
        module.add_parser(commands)
    return parser, tuple(commands.choices)


def _command_names(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """The names of ``parser``'s subcommands."""
    return tuple(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def _with_command(argv: list[str], commands: Sequence[str], default: str = DEFAULT_COMMAND) -> list[str]:
    """``argv`` with the ``default`` command put where the command name goes when none is given: after the common
    options that come first (``-v --camera 0`` -> ``-v run --camera 0``). Help, version and a word that is no
    command are left to the parser (it lists the commands)."""
    for i, word in enumerate(argv):
        if _COMMON_WORD.fullmatch(word):
            continue
        if word in commands or word in ("-h", "--help", "--version") or not word.startswith("-"):
            return argv
        return [*argv[:i], default, *argv[i:]]
    return [*argv, default]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` (without the program name) parsed by the command tree: ``func`` is the command's handler.

    A user error prints one line on stderr and raises SystemExit(2), before any model or device is opened.
    """
    parser, commands = _command_tree()
    return parser.parse_args(_with_command(list(argv), commands))


def _dispatch(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # a usage error (its one line is printed), --help or --version
        return stop.code if isinstance(stop.code, int) else EXIT_USER_ERROR
    _setup_logging(args.verbose, args.quiet)
    return _guarded(args.func, args)


def _guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(func(args) or 0)
    except VRNError as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as err:
        return _interrupted(err)


def _interrupted(err: KeyboardInterrupt) -> int:
    from realtime_vrn.signals import as_interrupted, signal_name

    stop = as_interrupted(err)
    print(f"realtime-vrn: interrupted ({signal_name(stop.signum)})", file=sys.stderr)
    return stop.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    from realtime_vrn.signals import raise_on_stop_signals

    try:
        with raise_on_stop_signals():  # SIGTERM too: a summary and 143 instead of a silent kill
            return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as err:  # during start-up (imports, argument parsing)
        return _interrupted(err)


if __name__ == "__main__":
    sys.exit(main())
