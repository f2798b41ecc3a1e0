"""A run never loses a user's file and never reports false success (issue 13): inputs are never outputs, output
kinds are checked before anything loads, an --export folder is never mixed silently."""

from __future__ import annotations

import shutil

import pytest

from realtime_vrn.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("realtime-vrn: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def clip(demo_clip, tmp_path):
    """A copy of the demo clip that a faulty run could overwrite without harming the package."""
    path = tmp_path / "in.mp4"
    shutil.copyfile(demo_clip, path)
    return path


@pytest.mark.parametrize("flag", ["--output", "--export", "--record-landmarks", "--benchmark"])
def test_an_output_that_is_the_input_video_is_refused(clip, plane_checkpoint, capsys, flag):
    """Item 1: ``--output in.mp4 --video in.mp4`` overwrote the clip while reading it (72 frames -> 21)."""
    before = clip.read_bytes()
    code = main(["--video", str(clip), flag, str(clip), "--weights", str(plane_checkpoint), "--headless",
                 "--max-frames", "2", "--no-progress"])
    assert code == 2
    assert "is the input --video" in _error_line(capsys)
    assert clip.read_bytes() == before


def test_the_input_through_a_symlink_is_refused(clip, plane_checkpoint, capsys):
    alias = clip.with_name("alias.mp4")
    alias.symlink_to(clip)
    assert main(["--video", str(clip), "--output", str(alias), "--weights", str(plane_checkpoint),
                 "--headless"]) == 2
    assert "is the input --video" in _error_line(capsys)


def test_output_into_the_input_image_folder_is_refused(face_photos, tmp_path, plane_checkpoint, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(face_photos[0], folder / "a.jpg")
    assert main(["--image", str(folder), "--output", str(folder), "--weights", str(plane_checkpoint),
                 "--headless"]) == 2
    assert "is the input --image" in _error_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]


def test_two_outputs_with_one_name_are_refused(clip, tmp_path, plane_checkpoint, capsys):
    same = tmp_path / "run.json"
    assert main(["--video", str(clip), "--record-landmarks", str(same), "--benchmark", str(same),
                 "--weights", str(plane_checkpoint), "--headless"]) == 2
    assert "same path" in _error_line(capsys)


@pytest.mark.parametrize("name", ["out.webm", "out.xyz", "out.mkv", "out.bmp"])
def test_unknown_output_types_are_refused_before_anything_loads(clip, tmp_path, capsys, name):
    """Item 7: .webm/.xyz made a folder of PNGs and exited 0; .mkv failed after the models loaded. The missing
    weights file shows that nothing loaded before the output check."""
    out = tmp_path / name
    assert main(["--video", str(clip), "--output", str(out), "--weights", str(tmp_path / "none.safetensors"),
                 "--headless"]) == 2
    line = _error_line(capsys)
    assert f"unknown output type '{out.suffix}'" in line and ".mp4" in line and ".png" in line
    assert not out.exists()


def test_a_non_empty_export_folder_needs_overwrite(face_photos, tmp_path, plane_checkpoint, capsys):
    """Item 6: re-using an --export folder silently mixed new and stale meshes."""
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "old.obj").write_text("v 0 0 0\n")
    args = ["--image", str(face_photos[-1]), "--export", str(meshes), "--weights", str(plane_checkpoint),
            "--headless", "--no-progress"]
    assert main(args) == 2
    line = _error_line(capsys)
    assert "already holds 1 file(s)" in line and "--overwrite" in line
    assert main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in meshes.iterdir()) == ["asj.obj", "old.obj"]


# -- runs in a child process: signals and a full disk ------------------------------------------------------

#: Generous: the child imports torch and OpenCV on a shared 2-core machine.
CHILD_TIMEOUT_S = 120


def _child_args(clip, plane_checkpoint, *extra) -> list[str]:
    """A fast child run: the torch backend (no ONNX export) and the clip's landmarks replayed (no MediaPipe)."""
    import sys

    from realtime_vrn.assets import ASSETS

    landmarks = ASSETS / "clips" / "liveportrait-d10-landmarks.npz"
    return [sys.executable, "-m", "realtime_vrn", "--video", str(clip), "--weights", str(plane_checkpoint),
            "--backend", "torch", "--landmarks", str(landmarks), "--headless", "--no-progress", *extra]


def _frames_in(path) -> int:
    import cv2

    reader = cv2.VideoCapture(str(path))
    count = 0
    while reader.grab():
        count += 1
    reader.release()
    return count


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_every_output_and_says_so(demo_clip, plane_checkpoint, tmp_path, signame):
    """Item 3: SIGTERM left an unplayable MP4 and exit 143 without a summary; Ctrl-C exited 0 and the summary
    did not say "interrupted". Both now finish the video, print the summary and exit 128 + signal."""
    import re
    import signal
    import subprocess
    import time

    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(_child_args(demo_clip, plane_checkpoint, "--loop", "--output", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not (tmp_path / "out.incomplete.mp4").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no frame"
            time.sleep(0.1)
        time.sleep(0.5)  # a few frames in
        proc.send_signal(getattr(signal, signame))
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        proc.kill()
    sig = getattr(signal, signame)
    assert proc.returncode == 128 + sig, stderr
    match = re.search(rf"interrupted \({signame}\) after (\d+) frames", stdout)
    assert match, stdout + stderr
    frames = int(match.group(1))
    assert frames >= 1 and f"wrote {out}" in stdout and "Traceback" not in stderr
    assert _frames_in(out) == frames  # playable, every processed frame in it
    assert not (tmp_path / "out.incomplete.mp4").exists()


def test_a_full_disk_is_a_failed_run_that_names_the_file(demo_clip, plane_checkpoint, tmp_path):
    """Item 2: a full disk left an MP4 without an index (0 readable frames) and the run exited 0. The child's
    file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes writes fail as on a full disk."""
    import resource
    import signal
    import subprocess

    limit = 150_000

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out.mp4"
    proc = subprocess.run(_child_args(demo_clip, plane_checkpoint, "--max-frames", "40", "--output", str(out)),
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, preexec_fn=small_disk)
    assert proc.returncode == 1, proc.stderr
    assert f"FAILED {out}" in proc.stdout and f"wrote {out}" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "output not completed" in line]
    assert len(lines) == 1 and "out.mp4 could not be completed" in lines[0], proc.stderr
    assert not out.exists()


def test_photos_are_named_after_themselves_and_bad_files_are_skipped(face_photos, tmp_path, plane_checkpoint,
                                                                        capsys):
    """Items 5 and 6: one damaged file stopped the folder after the first image; meshes were named by sorted
    position (frame_000000.obj). Now every readable photo is reconstructed into <photo>.obj, the bad files are
    listed and the exit status is 1."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = [face_photos[-1], face_photos[0]]  # the frontal portrait and an AFLW photo
    for photo in photos:
        shutil.copyfile(photo, folder / photo.name)
    (folder / "AAA_damaged.jpg").write_bytes(photos[0].read_bytes()[:300])
    (folder / "zero.png").write_bytes(b"")
    meshes = tmp_path / "meshes"
    code = main(["--image", str(folder), "--export", str(meshes), "--output", str(tmp_path / "drawn"),
                 "--weights", str(plane_checkpoint), "--headless", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert sorted(p.name for p in meshes.iterdir()) == sorted(f"{p.stem}.obj" for p in photos)
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(f"{p.stem}.png" for p in photos)
    assert "skipped 2 unreadable input file(s): AAA_damaged.jpg, zero.png" in captured.err
    assert "2 frames" in captured.out


def test_export_size_warning_names_the_export_every_that_fits():
    """Item 10: 1,500 meshes of 2.7 MB (4.05 GB) -> every 5th mesh stays under 1 GB."""
    from realtime_vrn.sinks.outputs import export_size_warning

    message = export_size_warning(2_700_000, 1500, 1, written_bytes=2_700_000)
    assert message == ("--export will write about 4.0 GB (1500 meshes of 2.7 MB); use --export-every 5 to stay "
                       "under 1 GB")
    assert export_size_warning(2_700_000, 370, 1, written_bytes=0) is None  # 0.999 GB
    assert "--export-every 12 " in export_size_warning(2_700_000, 1500, 2, written_bytes=0, limit=700_000_000)
    assert export_size_warning(2_700_000, None, 1, written_bytes=900_000_000) is None  # a camera, not there yet
    assert "goes on until the run stops" in export_size_warning(2_700_000, None, 1, written_bytes=1_000_000_001)


def test_a_large_export_is_announced_before_it_is_written(demo_clip, plane_checkpoint, tmp_path, monkeypatch,
                                                          caplog):
    from realtime_vrn.sinks import outputs

    monkeypatch.setattr(outputs, "EXPORT_WARN_BYTES", 1000)  # the plane meshes are larger than this
    meshes = tmp_path / "meshes"
    with caplog.at_level("WARNING", logger="realtime_vrn.sinks.outputs"):
        assert main(["--video", str(demo_clip), "--weights", str(plane_checkpoint), "--max-frames", "6",
                     "--export", str(meshes), "--headless", "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if "--export will write about" in r.getMessage()]
    assert len(warnings) == 1 and "(6 meshes of" in warnings[0] and "--export-every" in warnings[0]


def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys):
    """Ctrl-C while the subcommands' modules import (torch) printed a traceback."""
    from realtime_vrn import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_sub_parsers", interrupted)
    assert main(["--headless"]) == 130
    assert capsys.readouterr().err.strip() == "realtime-vrn: interrupted (SIGINT)"


def test_quiet_runs_print_nothing_but_their_one_line(demo_clip, face_photos, plane_checkpoint, tmp_path):
    """Under -q, FFmpeg's "moov atom not found" came before our one-line error, and MediaPipe's C++ start-up
    lines (TFLite, absl "W0000 ...") before the summary."""
    import subprocess
    import sys

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo_clip.read_bytes()[:20_000])
    base = [sys.executable, "-m", "realtime_vrn", "-q", "--weights", str(plane_checkpoint), "--headless",
            "--no-progress"]
    bad = subprocess.run(base + ["--video", str(cut)], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [bad.stderr.strip()] and bad.stderr.startswith("realtime-vrn: error: "), \
        bad.stderr
    good = subprocess.run(base + ["--image", str(face_photos[-1]), "--output", str(tmp_path / "drawn.png")],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert good.returncode == 0 and good.stderr == "", good.stderr


@pytest.mark.parametrize("argv, needle", [
    (["--device", "tpu"], "unknown device 'tpu'; choose auto, cpu, cuda or cuda:N"),
    (["bench", "--backends", "foo,torch"], "unknown backend 'foo' in --backends"),
])
def test_bad_device_and_bench_backend_are_one_line(argv, needle, capsys):
    """An unknown --device listed every backend's own complaint in one very long line; ``bench --backends foo``
    exited 0."""
    assert main(argv) == 2
    line = _error_line(capsys)
    # short: the valid names once (six backends with openvino-int8: 209 characters), not every backend's complaint
    assert needle in line and len(line) < 240, line


@pytest.mark.parametrize("flag, path", [("--output", "/proc/nope/out.mp4"), ("--output", "/proc/nope/frames"),
                                        ("--export", "/proc/nope/meshes")])
def test_an_output_that_cannot_be_written_is_refused_before_the_models_load(clip, tmp_path, capsys, flag, path):
    """/proc refuses new files even to root (the check tries a real file). The weights named here do not exist:
    the output's error comes first, so it is found before anything loads."""
    code = main(["--video", str(clip), flag, path, "--weights", str(tmp_path / "missing.safetensors"),
                 "--headless", "--max-frames", "2", "--no-progress"])
    assert code == 2
    assert f"{flag}: cannot write into folder /proc" in _error_line(capsys)


@pytest.mark.parametrize("flag, name, message", [("--video", "missing.mp4", "video file not found"),
                                                 ("--video", "", "is a folder, not a video file"),
                                                 ("--image", "missing", "image path not found"),
                                                 ("--image", "", "no images")])
def test_a_missing_input_is_refused_before_the_models_load(tmp_path, capsys, flag, name, message):
    """The weights named here do not exist: the input's error comes first, so it is found before anything loads
    (it came after the network and the surface had opened, ~3 s)."""
    code = main([flag, str(tmp_path / name), "--weights", str(tmp_path / "missing.safetensors"), "--headless",
                 "--max-frames", "2", "--no-progress"])
    assert code == 2
    assert message in _error_line(capsys)
