"""``realtime-vrn batch``: inputs and their output folders, head pose, planning, user errors, and real runs on
bundled and shared faces, in this process and on a local Ray with two workers (same files), with a corrupt video
and photo among them, a re-run that skips, and Ctrl-C leaving nothing half-written."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from conftest import FACES, SHARED
from realtime_vrn.batch.inputs import BatchInput, expand_inputs
from realtime_vrn.batch.options import CHUNK_WARMUP_FRAMES, ClusterSettings, OutputSettings
from realtime_vrn.batch.pose import euler_angles, head_rotation
from realtime_vrn.batch.runner import REPORT_NAME, _Pending, InputReport, plan_chunks, replace_folder
from realtime_vrn.cli import main
from realtime_vrn.errors import ConfigError, OutputError

#: Frames per video in the runs below, and parts of CHUNK frames: three parts per clip, the later two with
#: their warm-up frames, so joining in order and the part boundaries are exercised.
MAX_FRAMES = 14
CHUNK = 5
MESH_EVERY = 4
#: The options every real run below shares (one network thread: results are then identical bit for bit).
RUN_OPTIONS = ["--max-frames", str(MAX_FRAMES), "--chunk-frames", str(CHUNK), "--mesh-every", str(MESH_EVERY),
               "--cpus-per-worker", "1", "--no-progress"]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- inputs ---------------------------------------------------------------------------------------------------


def test_folder_keeps_its_name_and_inner_paths(tmp_path):
    _touch(tmp_path / "faces" / "videos" / "a.mp4")
    _touch(tmp_path / "faces" / "b.jpg")
    _touch(tmp_path / "faces" / "notes.txt")
    _touch(tmp_path / "faces" / ".hidden" / "c.mp4")
    items = expand_inputs([str(tmp_path / "faces")])
    assert [(i.name, i.kind) for i in items] == [(PurePosixPath("faces/b"), "image"),
                                                (PurePosixPath("faces/videos/a"), "video")]


def test_glob_is_relative_to_its_fixed_folder_and_files_to_their_own(tmp_path):
    _touch(tmp_path / "clips" / "x" / "a.mp4")
    _touch(tmp_path / "clips" / "b.mov")
    items = expand_inputs([str(tmp_path / "clips" / "**" / "*.m*"), str(tmp_path / "clips" / "b.mov")])
    assert sorted(str(i.name) for i in items) == ["b", "x/a"]  # b.mov named twice: once


def test_list_file_relative_paths_comments_and_missing_entries(tmp_path):
    _touch(tmp_path / "data" / "s1" / "a.mp4")
    _touch(tmp_path / "data" / "s2" / "b.png")
    _touch(tmp_path / "data" / "s2" / "readme.md")
    listing = _touch(tmp_path / "data" / "list.txt",
                     b"# clips\ns1/a.mp4\n\ns2/b.png\ns2/missing.mp4\ns2/readme.md\n")
    items = {str(i.name): i for i in expand_inputs([str(listing)])}
    assert set(items) == {"s1/a", "s2/b", "s2/missing", "s2/readme"}
    assert items["s1/a"].problem is None and items["s2/b"].kind == "image"
    assert "not found" in items["s2/missing"].problem
    assert "not a video or image" in items["s2/readme"].problem


def test_same_stem_gets_the_suffix_spelled_in(tmp_path):
    _touch(tmp_path / "clip.mp4")
    _touch(tmp_path / "clip.png")
    assert sorted(str(i.name) for i in expand_inputs([str(tmp_path / "clip.mp4"), str(tmp_path / "clip.png")])) \
        == ["clip_mp4", "clip_png"]


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "nothing-here"), "input not found"),
    (lambda d: str(_touch(d / "empty" / "notes.txt").parent), "no videos or images matched"),
    (lambda d: str(_touch(d / "list.txt", b"\xff\xfe\x00bad")), "list file"),
    (lambda d: str(_touch(d / "list.bin", b"a\0b")), "neither a video"),
])
def test_bad_inputs_are_one_config_error(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        expand_inputs([make(tmp_path)])


# -- head pose ------------------------------------------------------------------------------------------------


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (-45, 10, 5), (10, -20, 30), (60, 25, -15)])
def test_head_pose_recovers_a_known_rotation(angles):
    face = np.zeros((478, 3))
    face[33], face[263] = (-30, 0, 0), (30, 0, 0)  # outer eye corners: subject's right on the image's left
    face[10], face[152] = (0, -70, 5), (0, 60, 5)  # forehead, chin (y down)
    posed = face @ _rotation(*angles).T + (250, 260, 40)
    np.testing.assert_allclose(euler_angles(head_rotation(posed)), angles, atol=1e-9)
    if angles == (0, 0, 0):
        np.testing.assert_allclose(head_rotation(posed), np.eye(3), atol=1e-12)


def test_head_pose_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(478, 3\)"):
        head_rotation(np.zeros((68, 2)))


# -- planning -------------------------------------------------------------------------------------------------


def _pending(tmp_path, kind="video") -> dict[int, _Pending]:
    from realtime_vrn.assets import demo_clip_path

    clip = demo_clip_path()  # 448 frames
    item = BatchInput(clip, kind, PurePosixPath("c"))
    return {0: _Pending(item, InputReport(str(clip), "c", kind), {}, tmp_path / "s", tmp_path / "c", tasks=0)}


@pytest.mark.parametrize("settings, ranges", [
    (OutputSettings(chunk_frames=200), [(0, 200), (200, 400), (400, None)]),  # 448 frames: the last to the end
    (OutputSettings(chunk_frames=8, max_frames=20), [(0, 8), (8, 16), (16, 20)]),
    (OutputSettings(chunk_frames=8, max_frames=20, video_out=True), [(0, 20)]),  # one annotated video
    (OutputSettings(chunk_frames=1000), [(0, None)]),
])
def test_videos_are_split_into_parts_in_order(tmp_path, settings, ranges):
    tasks = plan_chunks(_pending(tmp_path), settings)
    assert [(t.start, t.stop) for t in tasks] == ranges
    assert [t.chunk for t in tasks] == list(range(len(ranges)))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="chunk-frames"):
        OutputSettings(chunk_frames=0)
    with pytest.raises(ConfigError, match="mesh format"):
        OutputSettings(mesh_format="stl")
    with pytest.raises(ConfigError, match="cpus-per-worker"):
        ClusterSettings(cpus_per_worker=0)


def test_a_folder_not_written_by_batch_is_never_replaced(tmp_path):
    staging, final = tmp_path / "x.incomplete", tmp_path / "x"
    _touch(staging / "summary.json")
    _touch(final / "precious.txt")
    with pytest.raises(OutputError, match="not written by realtime-vrn batch"):
        replace_folder(staging, final)
    assert (final / "precious.txt").exists()
    _touch(final / "summary.json")  # an older batch output: replaced
    replace_folder(staging, final)
    assert not staging.exists() and not (final / "precious.txt").exists()


# -- user errors: one line, exit 2, no traceback --------------------------------------------------------------


def _one_line_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("realtime-vrn")]) == 1


def test_no_inputs_matched(tmp_path, capsys):
    _one_line_error(capsys, ["batch", str(tmp_path / "*.mp4"), "--out", str(tmp_path / "out")],
                    "no videos or images matched")


def test_unreadable_list_file(tmp_path, capsys):
    listing = _touch(tmp_path / "videos.txt", b"\xff\xfe\xfa")
    _one_line_error(capsys, ["batch", str(listing), "--out", str(tmp_path / "out")], "cannot read the list file")


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = _touch(tmp_path / "a-file")
    _one_line_error(capsys, ["batch", str(FACES / "asj.jpg"), "--out", str(blocker / "out")],
                    "cannot create the output folder")


def test_unreachable_ray_address(tmp_path, capsys):
    pytest.importorskip("ray", reason="needs ray (the cluster extra)")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _one_line_error(capsys, ["batch", str(FACES / "asj.jpg"), "--out", str(tmp_path / "out"),
                             "--address", f"127.0.0.1:{port}"], "cannot reach a Ray cluster")
    _one_line_error(capsys, ["batch", str(FACES / "asj.jpg"), "--out", str(tmp_path / "out"),
                             "--address", "nonsense"], "expected HOST:PORT")


def test_address_without_ray_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    _one_line_error(capsys, ["batch", str(FACES / "asj.jpg"), "--out", str(tmp_path / "out"),
                             "--address", "10.0.0.1:6379"], "pip install 'realtime-vrn[cluster]'")


# -- real runs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory) -> Path:
    """A folder like a user's: two real clips (bundled demo, shared d0), two real photos (bundled, shared), a
    truncated video and a damaged photo."""
    shared = SHARED / "data" / "faces"
    if not (shared / "videos" / "liveportrait-d0.mp4").is_file():
        pytest.skip(f"shared data missing: {shared} (liveportrait-d0.mp4, AFLW_image00046.jpg)")
    from realtime_vrn.assets import demo_clip_path

    root = tmp_path_factory.mktemp("batch-in") / "shoot"
    (root / "clips").mkdir(parents=True)
    (root / "photos").mkdir()
    shutil.copy(demo_clip_path(), root / "clips" / "demo.mp4")
    (root / "clips" / "d0.mp4").symlink_to(shared / "videos" / "liveportrait-d0.mp4")
    shutil.copy(FACES / "asj.jpg", root / "photos" / "asj.jpg")
    (root / "photos" / "aflw46.jpg").symlink_to(shared / "images" / "AFLW_image00046.jpg")
    clip = demo_clip_path().read_bytes()
    (root / "clips" / "broken.mp4").write_bytes(clip[: len(clip) // 3])  # a cut download: no index
    (root / "photos" / "broken.jpg").write_bytes((FACES / "asj.jpg").read_bytes()[:300])
    return root


GOOD = {"shoot/clips/demo", "shoot/clips/d0", "shoot/photos/asj", "shoot/photos/aflw46"}
BROKEN = {"shoot/clips/broken", "shoot/photos/broken"}


@pytest.fixture(scope="module")
def reference(batch_inputs, tmp_path_factory) -> Path:
    """The batch without Ray (as on a machine without the extra): every input in this process, in turn."""
    out = tmp_path_factory.mktemp("batch-ref")
    handler = _Collect()
    logging.getLogger("realtime_vrn").addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, "ray", None)
            assert main(["batch", str(batch_inputs), "--out", str(out), *RUN_OPTIONS]) == 1  # two inputs failed
    finally:
        logging.getLogger("realtime_vrn").removeHandler(handler)
    (out / "log.txt").write_text("\n".join(handler.lines))
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _report(out: Path) -> dict[str, dict]:
    return {r["output"]: r for r in json.loads((out / REPORT_NAME).read_text())["inputs"]}


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "log.txt"}


def test_without_ray_every_input_runs_in_process_and_failures_are_reported(reference, batch_inputs, caplog):
    log = (reference / "log.txt").read_text()
    assert "Ray is not installed" in log and "pip install 'realtime-vrn[cluster]'" in log
    report = _report(reference)
    assert {k for k, r in report.items() if r["status"] == "done"} == GOOD
    assert {k for k, r in report.items() if r["status"] == "failed"} == BROKEN
    assert "truncated" in report["shoot/clips/broken"]["reason"]
    assert "cannot read image" in report["shoot/photos/broken"]["reason"]
    files = _files(reference)
    assert not [f for f in files if ".incomplete" in f or ".tmp" in f]
    assert not any(f.startswith(tuple(BROKEN)) for f in files)
    demo = np.load(reference / "shoot/clips/demo/frames.npz")
    assert demo["frame"].tolist() == list(range(MAX_FRAMES))  # three parts joined in order
    assert demo["has_face"].all() and np.isfinite(demo["yaw_pitch_roll"]).all()
    assert demo["points"].shape == (MAX_FRAMES, 478, 3) and demo["points"].dtype == np.float32
    meshes = sorted(f for f in files if f.startswith("shoot/clips/demo/meshes/"))
    assert meshes == [f"shoot/clips/demo/meshes/frame_{i:06d}.obj" for i in range(0, MAX_FRAMES, MESH_EVERY)]
    assert demo["mesh_saved"].nonzero()[0].tolist() == list(range(0, MAX_FRAMES, MESH_EVERY))
    photo = np.load(reference / "shoot/photos/asj/faces.npz")
    assert photo["has_face"].tolist() == [True] and "shoot/photos/asj/asj.obj" in files
    summary = json.loads((reference / "shoot/clips/demo/summary.json").read_text())
    assert summary["status"] == "done" and summary["chunks"] == 3 and len(summary["key"]["model_sha256"]) == 64
    assert summary["key"]["settings"]["mesh_every"] == MESH_EVERY


def test_part_boundaries_match_a_run_in_one_part(reference, batch_inputs, tmp_path):
    """The parts' warm-up settles the tracker and smoother: the landmarks right after a boundary are those of a
    run in one part (within a pixel), the first part's exactly."""
    assert CHUNK_WARMUP_FRAMES >= 2
    out = tmp_path / "one-part"
    options = [o if o != str(CHUNK) else str(MAX_FRAMES) for o in RUN_OPTIONS]
    assert main(["batch", str(batch_inputs / "clips" / "demo.mp4"), "--out", str(out), "--no-ray", *options]) == 0
    whole = np.load(out / "demo" / "frames.npz")["points68"]
    parts = np.load(reference / "shoot/clips/demo/frames.npz")["points68"]
    np.testing.assert_array_equal(parts[:CHUNK], whole[:CHUNK])
    assert np.abs(parts - whole).max() < 1.0


@pytest.mark.slow
def test_ray_two_workers_give_the_same_files_and_a_rerun_skips(reference, batch_inputs, tmp_path, capsys):
    pytest.importorskip("ray", reason="needs ray (the cluster extra)")
    out = tmp_path / "ray"
    argv = ["batch", str(batch_inputs), "--out", str(out), "--workers", "2", *RUN_OPTIONS]
    assert main(argv) == 1
    printed = capsys.readouterr()
    assert "2 Ray workers" in printed.out and "2 of 6 inputs failed" in printed.err
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["executor"] == "ray" and report["workers"] == 2
    assert report["totals"] == {"done": 4, "skipped": 0, "failed": 2, "interrupted": 0}
    assert len(report["worker_stats"]) == 2  # both workers took parts
    assert _files(out) - {REPORT_NAME} == _files(reference) - {REPORT_NAME}
    for path in sorted(_files(reference)):
        if path.endswith(".obj"):  # same meshes for the same frames, byte for byte
            assert (out / path).read_bytes() == (reference / path).read_bytes(), path
        elif path.endswith(".npz"):
            a, b = np.load(reference / path), np.load(out / path)
            for name in a.files:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{path}: {name}")
    stamp = {p: (out / p).stat().st_mtime_ns for p in _files(out) if p.endswith("summary.json")}

    assert main(argv) == 1  # the re-run skips what is done and tries the broken files again
    totals = json.loads((out / REPORT_NAME).read_text())["totals"]
    assert totals == {"done": 0, "skipped": 4, "failed": 2, "interrupted": 0}
    assert stamp == {p: (out / p).stat().st_mtime_ns for p in stamp}


def test_changed_options_redo_an_input(tmp_path, capsys):
    out = tmp_path / "out"
    photo = str(FACES / "asj.jpg")
    assert main(["batch", photo, "--out", str(out), "--no-ray", "--no-progress"]) == 0
    assert main(["batch", photo, "--out", str(out), "--no-ray", "--no-progress"]) == 0
    assert _report(out)["asj"]["status"] == "skipped"
    assert main(["batch", photo, "--out", str(out), "--no-ray", "--no-progress", "--meshes", "none"]) == 0
    assert _report(out)["asj"]["status"] == "done"
    assert not (out / "asj" / "asj.obj").exists()  # the old outputs were replaced, not mixed in


def test_ctrl_c_leaves_no_half_written_input(batch_inputs, tmp_path, monkeypatch, capsys):
    """SIGINT in the middle of a video (after some of its meshes were written): exit 130, the inputs finished
    before are complete, the interrupted one left nothing, the report says so; a re-run finishes it."""
    from realtime_vrn.batch import records
    from realtime_vrn.signals import Interrupted

    original = records.FrameRecords.add
    calls = []

    def add(self, frame, face, rec, saved):
        calls.append(frame)
        if len(calls) == 8:  # the demo clip's second part, after the photo and the first part
            raise Interrupted(signal.SIGINT)
        return original(self, frame, face, rec, saved)

    monkeypatch.setattr(records.FrameRecords, "add", add)
    out = tmp_path / "out"
    argv = ["batch", str(FACES / "asj.jpg"), str(batch_inputs / "clips" / "demo.mp4"), "--out", str(out),
            "--no-ray", *RUN_OPTIONS]
    assert main(argv) == 130
    assert "interrupted (SIGINT)" in capsys.readouterr().err
    assert _files(out) == {REPORT_NAME, "asj/asj.obj", "asj/faces.npz", "asj/summary.json"}
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["asj"]
    assert {k: r["status"] for k, r in _report(out).items()} == {"asj": "done", "demo": "interrupted"}
    monkeypatch.setattr(records.FrameRecords, "add", original)
    assert main(argv) == 0
    assert {k: r["status"] for k, r in _report(out).items()} == {"asj": "skipped", "demo": "done"}


# -- the two shared pieces the batch added to ------------------------------------------------------------------


def test_video_source_can_start_at_a_frame(demo_clip):
    from realtime_vrn.sources.video import VideoFileSource

    with VideoFileSource(demo_clip) as source:
        frames = [f for _, f in zip(range(103), source)]
    with VideoFileSource(demo_clip, start=100, prefetch=2) as source:
        assert source.frame_count == 448 - 100
        started = [f for _, f in zip(range(3), source)]
    assert [f.index for f in started] == [100, 101, 102]
    for a, b in zip(started, frames[100:]):
        np.testing.assert_array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="start"):
        VideoFileSource(demo_clip, start=5, loop=True)


def test_backend_threads_follow_omp_num_threads(monkeypatch):
    from realtime_vrn.backends.common import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = cpu_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert cpu_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert cpu_threads() == cores


def test_unknown_backend(tmp_path, capsys):
    _one_line_error(capsys, ["batch", str(FACES / "asj.jpg"), "--out", str(tmp_path / "out"), "--backend", "nope"],
                    "unknown backend 'nope'")
