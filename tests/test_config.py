"""The typed run configuration: defaults < file < environment < command line, and its rejections."""

from pathlib import Path

import pytest

from realtime_vrn.config import RunConfig, load_config
from realtime_vrn.errors import ConfigError


def test_defaults():
    c = load_config({}, environ={})
    assert c == RunConfig()
    assert c.is_demo and c.backend == "auto" and c.view == "overlay"


def test_precedence_cli_over_env_over_file(tmp_path):
    f = tmp_path / "vrn.toml"
    f.write_text('backend = "openvino"\nblend = 0.3\nview = "mesh3d"\n')
    env = {"REALTIME_VRN_BACKEND": "onnxruntime", "REALTIME_VRN_BLEND": "0.4"}
    c = load_config({"backend": "torch", "blend": None}, config_file=f, environ=env)
    assert c.backend == "torch"  # command line wins
    assert c.blend == pytest.approx(0.4)  # environment beats the file
    assert c.view == "mesh3d"  # file beats the default


def test_cli_input_replaces_env_input():
    c = load_config({"video": Path("a.mp4")}, environ={"REALTIME_VRN_CAMERA": "0"})
    assert c.video == Path("a.mp4") and c.camera is None


@pytest.mark.parametrize(
    "cli, message",
    [
        ({"camera": 0, "video": Path("a.mp4")}, "give one input"),
        ({"view": "sideways"}, "unknown view"),
        ({"mesh_format": "stl"}, "unknown mesh format"),
        ({"blend": 1.5}, "--blend"),
        ({"export_every": 0}, "--export-every"),
        ({"max_frames": 0}, "--max-frames"),
        ({"camera": -1}, "--camera"),
    ],
)
def test_rejections(cli, message):
    with pytest.raises(ConfigError, match=message):
        load_config(cli, environ={})


def test_bad_environment_value():
    with pytest.raises(ConfigError, match="bad value for blend"):
        load_config({}, environ={"REALTIME_VRN_BLEND": "lots"})


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config({}, config_file=tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("backend = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, config_file=bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("speed = 3\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config({}, config_file=unknown, environ={})


@pytest.mark.parametrize("line, message", [
    ("blend = [1]", "blend must be a number, got [1]"),
    ("video = 5", "video must be a path string, got 5"),
    ("output = {a = 1}", "output must be a path string"),
    ("max_frames = 2.7", "max_frames must be a whole number, got 2.7"),
    ("max_frames = true", "max_frames must be a whole number, got True"),
    ("headless = 1", "headless must be true or false, got 1"),
])
def test_file_values_of_the_wrong_type_are_refused(tmp_path, line, message):
    """Issue 13: these raised TypeError tracebacks (or truncated 2.7 to 2 silently)."""
    f = tmp_path / "vrn.toml"
    f.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config({}, config_file=f, environ={})


def test_file_values_of_the_right_type_are_kept(tmp_path):
    f = tmp_path / "vrn.toml"
    f.write_text('blend = 1\nmax_frames = 3\nvideo = "clip.mp4"\nheadless = true\n')
    c = load_config({}, config_file=f, environ={})
    assert (c.blend, c.max_frames, c.video, c.headless) == (1.0, 3, Path("clip.mp4"), True)


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file .*: Is a directory"):
        load_config({}, config_file=tmp_path, environ={})


def test_environment_integer_is_not_truncated():
    with pytest.raises(ConfigError, match="bad value for max_frames"):
        load_config({}, environ={"REALTIME_VRN_MAX_FRAMES": "2.7"})


@pytest.mark.parametrize("flag", ["record_landmarks", "benchmark"])
def test_end_of_run_outputs_need_a_writable_folder_at_the_start(flag):
    """/proc refuses new files even to root: the check tries a real file, not the permission bits."""
    with pytest.raises(ConfigError, match="cannot write into folder /proc"):
        load_config({flag: Path("/proc/out.npz")}, environ={})
