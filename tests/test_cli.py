"""The command line: every user error is one line and exit status 2; a short real run writes its outputs."""

from __future__ import annotations

import json

import pytest

from realtime_vrn.cli import main


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def no_models(vrn_home, monkeypatch, tmp_path):
    """No model installed anywhere (user cache empty, package folder empty)."""
    from realtime_vrn.weights import registry

    monkeypatch.setattr(registry, "PACKAGE_MODELS_DIR", tmp_path / "no-package-models")


def test_missing_weights_says_how_to_get_them(no_models, capsys):
    assert main(["--headless", "--max-frames", "1"]) == 2
    _one_line_error(capsys, "weights fetch")


def test_unknown_model_name(vrn_home, capsys):
    assert main(["--model", "no-such-model", "--max-frames", "1"]) == 2
    _one_line_error(capsys, "no-such-model")


def test_corrupt_weights(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    assert main(["--weights", str(bad), "--max-frames", "1"]) == 2
    _one_line_error(capsys, "bad.safetensors")


def test_missing_weights_file(tmp_path, capsys):
    assert main(["--weights", str(tmp_path / "nope.safetensors")]) == 2
    _one_line_error(capsys, "nope.safetensors")


@pytest.mark.parametrize("argv, needle", [
    (["--camera", "x"], "camera index"),
    (["--blend", "2"], "[0, 1]"),
    (["--view", "sideways"], "invalid choice"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--max-frames", "0"], ">= 1"),
])
def test_bad_options(argv, needle, capsys):
    assert main(argv) == 2  # main returns the exit status of a usage error too (it raised SystemExit(2))
    _one_line_error(capsys, needle)


def test_two_inputs(plane_checkpoint, capsys):
    assert main(["--camera", "0", "--video", "a.mp4", "--weights", str(plane_checkpoint)]) == 2
    _one_line_error(capsys, "give one input")


def test_unknown_backend(plane_checkpoint, demo_clip, capsys):
    assert main(["--video", str(demo_clip), "--weights", str(plane_checkpoint), "--backend", "magic"]) == 2
    _one_line_error(capsys, "magic", "onnxruntime")


def test_missing_video(plane_checkpoint, tmp_path, capsys):
    assert main(["--video", str(tmp_path / "none.mp4"), "--weights", str(plane_checkpoint)]) == 2
    _one_line_error(capsys, "none.mp4")


def test_unreadable_video(plane_checkpoint, tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    assert main(["--video", str(fake), "--weights", str(plane_checkpoint), "--headless"]) == 2
    _one_line_error(capsys, "notes.mp4")


def test_truncated_video(plane_checkpoint, demo_clip, tmp_path, capsys):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo_clip.read_bytes()[:20_000])
    assert main(["--video", str(cut), "--weights", str(plane_checkpoint), "--headless"]) == 2
    _one_line_error(capsys, "cut.mp4")


def test_missing_camera(plane_checkpoint, capsys):
    assert main(["--camera", "57", "--weights", str(plane_checkpoint), "--headless"]) == 2
    _one_line_error(capsys, "camera 57")


def test_no_face_anywhere(plane_checkpoint, tmp_path, capsys):
    import cv2
    import numpy as np

    folder = tmp_path / "empty-scenes"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), np.full((120, 160, 3), 90, np.uint8))
    assert main(["--image", str(folder), "--weights", str(plane_checkpoint), "--headless"]) == 1
    assert "no face" in capsys.readouterr().err


def test_short_run_writes_video_meshes_and_json(plane_checkpoint, demo_clip, tmp_path, capsys):
    out, meshes, bench = tmp_path / "out.mp4", tmp_path / "meshes", tmp_path / "bench.json"
    code = main(["--video", str(demo_clip), "--weights", str(plane_checkpoint), "--max-frames", "6",
                 "--output", str(out), "--export", str(meshes), "--mesh-format", "ply", "--y-up",
                 "--headless", "--no-progress", "--benchmark", str(bench)])
    assert code == 0
    assert "FPS" in capsys.readouterr().out
    assert out.stat().st_size > 0 and len(list(meshes.glob("*.ply"))) == 6
    data = json.loads(bench.read_text())
    assert data["pipeline"]["frames"] == 6 and "network" in data["pipeline"]["stages"]
    assert data["environment"]["cpu_count"] >= 1


def test_weights_list_runs(vrn_home, capsys):
    assert main(["weights", "list"]) == 0


def test_window_without_display_suggests_headless(plane_checkpoint, face_photos, monkeypatch, capsys):
    """The live window is refused with a clear message when there is no display (--camera would fail first on
    this machine, which has no camera, so the window is forced on for an image run)."""
    from realtime_vrn.sinks.outputs import Outputs

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(Outputs, "wants_window", property(lambda self: True))
    code = main(["--image", str(face_photos[0]), "--weights", str(plane_checkpoint)])
    assert code == 2
    _one_line_error(capsys, "--headless")


def test_engine_build_without_tensorrt_names_the_extra(plane_checkpoint, capsys):
    pytest.importorskip("torch")
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    assert main(["engine", "build", "--weights", str(plane_checkpoint)]) == 2
    _one_line_error(capsys, "tensorrt")


def test_engine_recipes_lists_the_shipped_ones(capsys):
    assert main(["engine", "recipes"]) == 0
    assert "fp16-b1" in capsys.readouterr().out
