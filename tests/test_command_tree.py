"""The command tree: the common options work with every command in either position, the default command is
``run``, every documented command line parses, and a bad choice is refused by argparse before anything loads."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_vrn import cli, config
from realtime_vrn.cli import main, parse_args

ROOT = Path(__file__).resolve().parents[1]
#: The arguments each command needs to parse (its required positionals and options). A new command must be added
#: here: test_every_command_is_covered fails until it is.
REQUIRED = {
    ("run",): [],
    ("bench", "pipeline"): [],
    ("bench", "backends"): ["model.safetensors"],
    ("bench", "gpu"): ["--json", "gpu.json"],
    ("bench", "render"): [],
    ("weights", "fetch"): [],
    ("weights", "convert"): ["model.t7"],
    ("weights", "list"): [],
    ("weights", "quantize"): ["m.safetensors", "--data", "shards"],
    ("engine", "build"): [],
    ("engine", "recipes"): [],
    ("batch",): ["clips/", "--out", "out"],
    ("data", "render"): ["out"],
    ("data", "skin"): ["bank.npz", "photos/"],
    ("data", "fit"): ["out/", "photos/"],
    ("data", "preview"): ["sheet.png"],
    ("data", "speed"): [],
    ("data", "annotate"): ["shards/"],
    ("data", "convert-facekit"): ["FaceXModel/", "ict.npz"],
    ("train",): [],
    ("eval",): ["--heldout", "shards/"],
}


def _commands(parser: argparse.ArgumentParser,
              path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every leaf command of the tree: path of names -> its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    out = {}
    for name, sub in subs[0].choices.items():
        out.update(_commands(sub, (*path, name)))
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("realtime-vrn: error: "), err
    return err.strip()


@pytest.fixture()
def nothing_runs(monkeypatch):
    """No command handler may run: a bad option must be refused while parsing, before any model, MediaPipe or
    camera could load."""

    def refuse(func, args):
        raise AssertionError(f"{func.__name__} ran: the bad option was not refused by the parser")

    monkeypatch.setattr(cli, "_guarded", refuse)


def test_every_command_is_covered():
    tree, _ = cli._command_tree()
    assert set(_commands(tree)) == set(REQUIRED)


@pytest.mark.parametrize("path", sorted(REQUIRED), ids=" ".join)
def test_common_options_before_and_after_the_command_name(path):
    """`weights list -v` was refused and `-v weights list` was parsed by the run parser."""
    required = REQUIRED[path]
    plain = parse_args([*path, *required])
    assert (plain.verbose, plain.quiet, plain.debug) == (0, False, False)
    placements = [
        lambda c: [*c, *path, *required],  # before the command name
        lambda c: [*path, *required, *c],  # after the command's own arguments
        lambda c: [path[0], *c, *path[1:], *required],  # right after the first name
    ]
    for place in placements:
        for common, expected in ((["-v"], (1, False, False)), (["-q"], (0, True, False)),
                                 (["--debug"], (0, False, True)), (["-vv", "--quiet"], (2, True, False))):
            args = parse_args(place(common))
            assert (args.verbose, args.quiet, args.debug) == expected, place(common)
            assert args.func.__name__.startswith("_cmd_"), args.func
    both = parse_args(["-v", *path, *required, "-v", "--debug"])
    assert (both.verbose, both.debug) == (2, True)


def test_nested_levels_add_up():
    args = parse_args(["-v", "weights", "-v", "list", "-v", "-q"])
    assert (args.command, args.weights_command, args.verbose, args.quiet) == ("weights", "list", 3, True)


def test_every_handler_follows_one_naming_scheme():
    tree, _ = cli._command_tree()
    for path, parser in _commands(tree).items():
        func = parser.get_default("func")
        assert func is not None and func.__name__.startswith("_cmd_"), (path, func)


@pytest.mark.parametrize("argv, expected", [
    ([], {}),
    (["--camera", "0"], {"camera": 0}),
    (["--max-frames", "30"], {"max_frames": 30}),
    (["-v", "--max-frames", "30"], {"max_frames": 30, "verbose": 1}),
    (["--video", "in.mp4", "-q", "--output", "out.mp4"], {"video": Path("in.mp4"), "quiet": True,
                                                          "output": Path("out.mp4")}),
    (["--debug", "-vv", "--headless"], {"headless": True, "debug": True, "verbose": 2}),
    (["run", "--camera", "1"], {"camera": 1}),
])
def test_the_default_command_is_run(argv, expected):
    args = parse_args(argv)
    assert args.command == "run" and args.func is cli._cmd_run
    for name, value in expected.items():
        assert getattr(args, name) == value, name


@pytest.mark.parametrize("argv, expected", [
    ([], {}),
    (["--max-frames", "30"], {"max_frames": 30}),
    (["-v", "--backends", "all", "-q"], {"backends": "all", "verbose": 1, "quiet": True}),
    (["--json", "b.json", "--video", "in.mp4"], {"json": Path("b.json"), "video": Path("in.mp4")}),
    (["pipeline", "--render"], {"render": True}),
])
def test_the_default_bench_command_is_the_pipeline(argv, expected):
    """`realtime-vrn bench [options]` does what it did before bench had commands."""
    args = parse_args(["bench", *argv])
    assert (args.command, args.bench_command) == ("bench", "pipeline") and args.func is cli._cmd_bench
    for name, value in expected.items():
        assert getattr(args, name) == value, name


def test_an_unknown_bench_command_lists_them(capsys):
    assert main(["bench", "frobnicate"]) == 2
    line = _error_line(capsys)
    assert all(f"'{name}'" in line for name in ("frobnicate", "pipeline", "backends", "gpu", "render")), line


def test_run_options_go_without_another_command(capsys):
    assert main(["--camera", "0", "weights", "list"]) == 2
    assert "unrecognized arguments: weights list" in _error_line(capsys)


def test_an_unknown_command_lists_the_commands(capsys):
    assert main(["frobnicate"]) == 2
    line = _error_line(capsys)
    assert "'frobnicate'" in line and "'weights'" in line and "'run'" in line


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("run", "bench", "weights", "batch", "eval", "--verbose"))
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--camera" in out and "--debug" in out
    assert main(["weights", "list", "--help"]) == 0
    assert "--quiet" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("realtime-vrn ")


#: Shell words that end a command.
_SHELL_OPERATORS = {"&", "&&", ";", "|", "||"}


def _documented_command_lines() -> list[str]:
    """The arguments of every `realtime-vrn` command in the fenced code blocks of README.md and docs/
    (continuations joined, comments dropped; also after `nice -n 10`, `timeout ...` or `.venv/bin/`)."""
    lines = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", doc.read_text(), flags=re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                starts = [i for i, w in enumerate(words) if w == "realtime-vrn" or w.endswith("/realtime-vrn")]
                for start in starts:
                    args = []
                    for word in words[start + 1:]:
                        if word in _SHELL_OPERATORS:
                            break
                        args.append(word)
                    lines.append(" ".join(shlex.quote(w) for w in args))
    return lines


DOCUMENTED = _documented_command_lines()


def test_the_docs_have_command_lines():
    assert len(DOCUMENTED) >= 20 and "weights list" in DOCUMENTED


@pytest.mark.parametrize("line", DOCUMENTED)
def test_every_documented_command_line_parses(line):
    args = parse_args(shlex.split(line))
    assert args.func.__name__.startswith("_cmd_")


@pytest.mark.parametrize("argv, needle", [
    (["--output", "x.mkv"], "argument --output: unknown output type '.mkv'; use a video file (.mp4"),
    (["--view", "sideways"], "argument --view: invalid choice: 'sideways'"),
    (["--surface", "gpu"], "argument --surface: invalid choice: 'gpu'"),
    (["--mesh-format", "stl"], "argument --mesh-format: invalid choice: 'stl'"),
    (["--faces", "some"], "argument --faces: invalid choice: 'some'"),
    (["--device", "tpu"], "argument --device: unknown device 'tpu'"),
    (["--backend", "magic"], "argument --backend: unknown backend 'magic'; choose one of: auto, "),
    (["-v", "--camera", "0", "--backend", "magic"], "unknown backend 'magic'"),
    (["bench", "--output", "x.mkv"], "unknown output type '.mkv'"),
    (["bench", "--backends", "torch,magic"], "unknown backend 'magic' in --backends"),
    (["bench", "backends", "m.safetensors", "--backends", "magic"], "unknown backend 'magic' in --backends"),
    (["bench", "backends", "m.safetensors", "--device", "tpu"], "unknown device 'tpu'"),
    (["bench", "backends", "m.safetensors", "--runs", "0"], "argument --runs: expected a whole number >= 1"),
    (["bench", "backends"], "the following arguments are required: CHECKPOINT"),
    (["bench", "gpu"], "the following arguments are required: --json"),
    (["bench", "gpu", "--json", "g.json", "--runs", "x"], "argument --runs: expected a whole number >= 1"),
    (["bench", "render", "--view", "sideways"], "argument --view: invalid choice: 'sideways'"),
    (["bench", "render", "--rasterizer", "gpu"], "argument --rasterizer: invalid choice: 'gpu'"),
    (["bench", "render", "--video", "in.mp4"], "unrecognized arguments: --video in.mp4"),
    (["batch", "clips/", "--out", "out", "--backend", "magic"], "unknown backend 'magic'"),
    (["batch", "clips/", "--out", "out", "--device", "tpu"], "unknown device 'tpu'"),
    (["batch", "clips/", "--out", "out", "--mesh-format", "stl"], "invalid choice: 'stl'"),
    (["eval", "--real", "photos/", "--backend", "magic"], "unknown backend 'magic'"),
])
def test_bad_choices_are_refused_by_the_parser(nothing_runs, argv, needle, capsys):
    assert main(argv) == 2
    assert needle in _error_line(capsys)


def test_bad_output_fails_before_anything_heavy_loads(tmp_path):
    """`--output x.mkv` used to fail only after the model and MediaPipe had loaded."""
    code = ("import sys; from realtime_vrn.cli import main; code = main(['--output', 'x.mkv', '--max-frames', '30']); "
            "heavy = [m for m in ('mediapipe', 'cv2', 'moderngl', 'onnxruntime', 'openvino', 'numba') "
            "if m in sys.modules]; print(code, heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr
    assert done.stderr.startswith("realtime-vrn: error: argument --output: unknown output type '.mkv'")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "x.mkv").exists() and not (tmp_path / "realtime-vrn-output").exists()


def test_an_import_error_while_building_the_tree_is_not_hidden(monkeypatch):
    """The weights and training commands were dropped silently when their modules did not import."""
    import realtime_vrn.training

    monkeypatch.delattr(realtime_vrn.training, "cli", raising=False)
    monkeypatch.setitem(sys.modules, "realtime_vrn.training.cli", None)  # `import` raises ImportError
    with pytest.raises(ImportError):
        parse_args(["weights", "list"])


@pytest.mark.parametrize("env, needle", [
    ({"REALTIME_VRN_OUTPUT": "x.mkv"}, "--output x.mkv: unknown output type '.mkv'"),
    ({"REALTIME_VRN_BACKEND": "magic"}, "unknown backend 'magic'"),
    ({"REALTIME_VRN_DEVICE": "tpu"}, "unknown device 'tpu'"),
])
def test_the_same_checks_hold_for_the_environment(env, needle):
    from realtime_vrn.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        config.load_config({}, environ=env)
    assert needle in str(info.value)


def test_choices_are_declared_once():
    from realtime_vrn.render.renderer import RASTERIZERS, VIEWS
    from realtime_vrn.surface.extractors import EXTRACTORS

    assert tuple(EXTRACTORS) == config.SURFACE_EXTRACTORS
    assert VIEWS is config.VIEWS and RASTERIZERS is config.RASTERIZERS
    run = _commands(cli._command_tree()[0])[("run",)]
    choices = {a.dest: a.choices for a in run._actions if a.choices}
    assert choices == {"view": config.VIEWS, "mesh_format": config.MESH_FORMATS, "faces": config.FACE_CHOICES,
                       "surface": config.SURFACE_KINDS}
    render = _commands(cli._command_tree()[0])[("bench", "render")]
    choices = {a.dest: a.choices for a in render._actions if a.choices}
    assert choices == {"view": config.VIEWS, "rasterizer": config.RASTERIZERS}
