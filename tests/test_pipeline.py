"""The per-frame reconstruction on real faces, with a network whose output is known exactly (a plane)."""

from __future__ import annotations

import numpy as np
import pytest

from realtime_vrn.config import RunConfig
from realtime_vrn.pipeline import Reconstructor, run
from realtime_vrn.sources.base import Frame
from conftest import PLANE_DEPTH_BINS, PLANE_INPUT


@pytest.fixture(scope="module")
def reconstructor(plane_checkpoint):
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import read_checkpoint_header

    cfg = read_checkpoint_header(plane_checkpoint).cfg
    with open_backend("onnxruntime", plane_checkpoint) as backend, open_tracker(static=True) as tracker:
        yield Reconstructor(tracker, backend, cfg)


def test_plane_lands_on_the_crop_footprint(reconstructor, astronaut):
    rec = reconstructor.process(Frame(astronaut, 0, 0.0))
    assert rec.has_face and rec.mesh is not None and not rec.mesh.is_empty
    mesh, crop = rec.mesh, rec.crop
    assert mesh.frame == "image"
    # x, y: the plane spans the whole crop, so its frame footprint is the crop window's inverse image.
    corners = crop.to_frame(np.array([[0.0, 0.0], [PLANE_INPUT - 1.0, PLANE_INPUT - 1.0]]))
    np.testing.assert_allclose(mesh.vertices[:, :2].min(0), corners[0], atol=1e-3)
    np.testing.assert_allclose(mesh.vertices[:, :2].max(0), corners[1], atol=1e-3)
    # z: logits +4 below bin 16 and -4 above cross zero at bin 15.5; z is stretched x2 then divided by the scale.
    expected_z = (PLANE_DEPTH_BINS / 2 - 0.5) * 0.5 / crop.scale
    np.testing.assert_allclose(mesh.vertices[:, 2], expected_z, atol=1e-4)
    # normals point at the viewer (+z), colours are the frame pixels under the vertices
    assert np.all(mesh.normals[:, 2] > 0.99)
    xy = np.rint(crop.to_crop(mesh.vertices[:, :2])).astype(int).clip(0, PLANE_INPUT - 1)
    np.testing.assert_array_equal(mesh.colors, rec.crop_image[xy[:, 1], xy[:, 0]])


def test_face_photos_all_reconstruct(reconstructor, face_photos):
    import cv2

    for path in face_photos:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        rec = reconstructor.process(Frame(image, 0, 0.0))
        assert rec.has_face, path.name
        assert rec.mesh is not None and len(rec.mesh.faces) > 100, path.name


def test_no_face_passes_through(reconstructor):
    rec = reconstructor.process(Frame(np.zeros((240, 320, 3), np.uint8), 0, 0.0))
    assert not rec.has_face and rec.mesh is None and rec.crop is None
    assert "landmarks" in rec.timings


def test_run_writes_video_and_meshes(plane_checkpoint, demo_clip, tmp_path):
    import cv2
    import trimesh

    out = tmp_path / "out.mp4"
    config = RunConfig(video=demo_clip, weights=plane_checkpoint, output=out, export=tmp_path / "meshes",
                       export_every=5, max_frames=12, headless=True, progress=False).validate()
    summary = run(config)
    assert summary.frames == 12 and summary.frames_with_face == 12 and summary.dropped_frames == 0
    assert summary.meshes_exported == 3
    meshes = sorted((tmp_path / "meshes").glob("*.obj"))
    assert [p.name for p in meshes] == ["frame_000000.obj", "frame_000005.obj", "frame_000010.obj"]
    loaded = trimesh.load(meshes[0], process=False)
    assert len(loaded.faces) > 100
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (512, 512)
    cap.release()
    for stage in ("landmarks", "crop", "network", "surface", "render", "end_to_end"):
        assert summary.stages[stage]["count"] > 0, stage


def test_loop_runs_past_the_end_of_a_folder(plane_checkpoint, face_photos, tmp_path):
    config = RunConfig(image=face_photos[0].parent, weights=plane_checkpoint, loop=True, max_frames=7,
                       headless=True, progress=False).validate()
    summary = run(config)
    assert summary.frames == 7 and summary.stopped_by == "max frames"


def test_logit_smoother_follows_motion_and_resets():
    from realtime_vrn.crop import CropTransform
    from realtime_vrn.surface.smoothing import LogitSmoother

    crop = CropTransform(centre=(100.0, 100.0), scale=1.0, size=64)
    s = LogitSmoother()
    a = np.zeros((4, 16, 16), np.float32)
    np.testing.assert_array_equal(s(a, crop), a)
    noisy = a + 0.1
    out = s(noisy, crop)
    assert 0.0 < out.mean() < 0.1  # small change: smoothed
    big = a + 10.0
    np.testing.assert_allclose(s(big, crop), big)  # large change: followed at once (no lag)
    moved = CropTransform(centre=(130.0, 100.0), scale=1.0, size=64)
    np.testing.assert_array_equal(s(noisy, moved), noisy)  # the crop moved: restart


def test_surface_motion_is_zero_for_a_translated_copy():
    from realtime_vrn.bench.jitter import surface_motion

    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 3)).astype(np.float32)
    assert surface_motion(v, v + np.float32([3.0, -2.0, 1.0])) < 1e-5
    assert surface_motion(v, v * 1.5) > 0.1


def test_overlay_lands_where_the_inverse_crop_puts_it(reconstructor, astronaut):
    """The plane of the analytic network, drawn in overlay mode, covers exactly the crop window's footprint in
    the frame (the crop's inverse transform), within 1 px."""
    from realtime_vrn.render import Renderer

    rec = reconstructor.process(Frame(astronaut, 0, 0.0))
    black = np.zeros_like(astronaut)
    with Renderer() as renderer:
        picture = renderer.render(black, rec.mesh, view="overlay", blend=1.0)
    ys, xs = np.nonzero(picture.max(axis=2) > 0)
    corners = rec.crop.to_frame(np.array([[0.0, 0.0], [PLANE_INPUT - 1.0, PLANE_INPUT - 1.0]]))
    assert abs(xs.min() - corners[0, 0]) <= 1 and abs(ys.min() - corners[0, 1]) <= 1
    assert abs(xs.max() - corners[1, 0]) <= 1 and abs(ys.max() - corners[1, 1]) <= 1


def test_pipelined_run_gives_the_sequential_meshes_in_order(plane_checkpoint, demo_clip):
    def meshes(pipelined):
        got = []
        config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=10, headless=True,
                           progress=False, pipelined=pipelined).validate()
        summary = run(config, on_frame=lambda rec: got.append((rec.frame.index, rec.mesh)))
        assert summary.frames == 10 and summary.frames_with_face == 10
        return got

    sequential, pipelined = meshes(False), meshes(True)
    assert [i for i, _ in pipelined] == list(range(10))
    for (_, a), (_, b) in zip(sequential, pipelined):
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)


def test_the_default_loop_is_measured_per_source_and_machine(plane_checkpoint, demo_clip, face_photos,
                                                               monkeypatch):
    """Pipelined for a GPU, and for a video file on two or more CPUs; sequential for live sources, --realtime,
    images and one CPU. A run says which loop it used, and prepares no frame beyond --max-frames."""
    from realtime_vrn.backends.common import cpu_threads
    from realtime_vrn.pipeline import Reconstructor, default_pipelined

    assert default_pipelined(on_device=True, offline_video=False, cpus=1)
    assert default_pipelined(on_device=False, offline_video=True, cpus=2)
    assert not default_pipelined(on_device=False, offline_video=True, cpus=1)
    assert not default_pipelined(on_device=False, offline_video=False, cpus=16)

    prepared: list[int] = []
    original = Reconstructor.prepare

    def counting(self, frame):
        prepared.append(frame.index)
        return original(self, frame)

    monkeypatch.setattr(Reconstructor, "prepare", counting)

    def loop(**kw) -> str:
        prepared.clear()
        config = RunConfig(weights=plane_checkpoint, max_frames=5, headless=True, progress=False, **kw).validate()
        summary = run(config)
        assert summary.frames == len(prepared) == (1 if "image" in kw else 5)
        return summary.loop

    assert loop(video=demo_clip) == ("pipelined" if cpu_threads() >= 2 else "sequential")
    assert loop(video=demo_clip, pipelined=True) == "pipelined"
    assert loop(video=demo_clip, pipelined=False) == "sequential"
    assert loop(video=demo_clip, realtime=True) == "sequential"
    assert loop(image=face_photos[0]) == "sequential"


class _CountingFrames:
    """Frames of one image; raises at ``fail_at``; counts how many were read."""

    def __init__(self, image, n, fail_at=None):
        self.image, self.n, self.fail_at, self.read = image, n, fail_at, 0

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError("camera unplugged")
            self.read += 1
            yield Frame(self.image, i, 0.0)


def test_pipelined_worker_errors_reach_the_caller_and_early_exit_stops_it(reconstructor, astronaut):
    from realtime_vrn.pipeline import Pipelined

    frames = _CountingFrames(astronaut, 3, fail_at=2)
    with pytest.raises(OSError, match="camera unplugged"), Pipelined(reconstructor, frames) as stages:
        list(stages)
    frames = _CountingFrames(astronaut, 1000)
    with Pipelined(reconstructor, frames, depth=1) as stages:
        for rec in stages:
            assert rec.has_face
            break
    assert not stages._thread.is_alive()
    assert frames.read <= 3  # one finished, at most one queued and one being prepared


def test_recorded_landmarks_replay_the_same_run(plane_checkpoint, demo_clip, tmp_path, astronaut):
    from realtime_vrn.errors import ConfigError
    from realtime_vrn.landmarks.recorded import ReplayTracker

    record = tmp_path / "clip-landmarks.npz"

    def meshes(**kw):
        got = []
        config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=6, headless=True,
                           progress=False, **kw).validate()
        run(config, on_frame=lambda rec: got.append(rec.mesh))
        return got

    recorded = meshes(record_landmarks=record)
    assert len(ReplayTracker(record)) == 6  # the pipelined loop (the default for a file) stops at --max-frames too
    replayed = meshes(landmarks=record)
    for a, b in zip(recorded, replayed):
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-4)

    with pytest.raises(ConfigError, match="recorded on 512x512 frames, this input is 512x300"):
        ReplayTracker(record).process(np.ascontiguousarray(astronaut[:300]), 0.0)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a recording")
    with pytest.raises(ConfigError, match="is not a landmark recording"):
        ReplayTracker(bad)
    with pytest.raises(ConfigError, match="camera gives new frames"):
        RunConfig(camera=0, landmarks=record).validate()


def test_benchmark_compares_the_sequential_and_pipelined_loops(plane_checkpoint, demo_clip):
    from realtime_vrn.bench.run import _compare_pipeline

    config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=5, headless=True,
                       progress=False).validate()
    out = _compare_pipeline(config, rounds=1)
    assert len(out["sequential"]["fps_runs"]) == len(out["pipelined"]["fps_runs"]) == 1
    assert out["sequential"]["fps_median"] > 0 and out["pipelined"]["fps_median"] > 0
    assert out["speedup"] == round(out["pipelined"]["fps_median"] / out["sequential"]["fps_median"], 3)


def test_benchmark_times_mediapipe_alone_on_the_same_frames(plane_checkpoint, demo_clip, tmp_path):
    from realtime_vrn.bench.run import _mediapipe_only

    config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=6, headless=True,
                       progress=False).validate()
    out = _mediapipe_only(config, frames=6)
    assert out["frames"] == 6 and out["fps"] > 0
    assert out["landmarks"]["count"] == 6 and out["landmarks"]["median_ms"] > 0
    replayed = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=6, headless=True, progress=False,
                         landmarks=demo_clip.with_name(demo_clip.stem + "-landmarks.npz")).validate()
    assert "recording" in _mediapipe_only(replayed, frames=6)["skipped"]
    # paced: the pause after each call is spent asleep (6 frames, 50 ms each: at least 0.3 s of wall time)
    paced = _mediapipe_only(config, frames=6, pause_s=0.05)
    assert paced["frames"] == 6 and paced["fps"] < 1 / 0.05 and paced["landmarks"]["count"] == 6


def test_benchmark_states_the_front_half_over_mediapipe_in_the_same_run(plane_checkpoint, demo_clip, capsys):
    """Issue 14's ratio: landmarks + crop over the landmarks stage of the same pipeline run (its "9.6 vs 6.8
    ms"), beside the separate MediaPipe-only pass."""
    from realtime_vrn.bench.run import TARGETS, run_benchmark

    config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=8, headless=True,
                       progress=False).validate()
    result = run_benchmark(config, surface_runs=1)
    stages, front = result["pipeline"]["stages"], result["front_half"]
    assert front["landmarks_median_ms"] == stages["landmarks"]["median_ms"]
    assert front["landmarks+crop_median_ms"] == stages["landmarks+crop"]["median_ms"]
    # every frame has a face: each frame's landmarks + crop exceeds its landmarks, and so does the median
    assert result["pipeline"]["frames_without_face"] == 0
    assert front["landmarks+crop_over_landmarks"] == pytest.approx(
        front["landmarks+crop_median_ms"] / front["landmarks_median_ms"], rel=1e-12)
    assert front["landmarks+crop_over_landmarks"] > 1.0
    assert result["mediapipe_only"]["frames"] == 8 and result["targets"] == TARGETS
    assert "MediaPipe's own time in this run" in capsys.readouterr().out


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino", "torch"])
def test_a_guided_model_gets_the_heatmaps_of_the_tracked_points(backend_name, tmp_path, astronaut):
    """Plumbing: a guided network whose output reads only its heatmap channels. Its stem sees channel 3 + k =
    heatmap of landmark k; with the RGB weights zeroed, the logits change when the points move and not when the
    pixels change (same points), through every backend."""
    import torch

    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint
    from realtime_vrn.model.guidance import network_input
    from realtime_vrn.model.network import VRN, VRNConfig

    cfg = VRNConfig(input_size=32, in_channels=3 + 68, features=16, stacks=1, levels=1, branch_blocks=1,
                    inner_branch_blocks=1, depth_bins=8)
    torch.manual_seed(0)
    net = VRN(cfg)
    with torch.no_grad():
        net.stem_conv.weight[:, :3] = 0
    path = tmp_path / "guided.safetensors"
    save_checkpoint(path, net, CheckpointMeta(source="test", licence="MIT"))
    with open_tracker(static=True) as tracker:
        points = tracker.process(astronaut, 0.0).points68
    from realtime_vrn.crop import CropTransform

    crop = CropTransform.from_landmarks(points, size=32)
    image = crop.warp(astronaut)
    pts = crop.to_crop(points)
    with open_backend(backend_name, path, "cpu") as backend:
        base = backend.infer(network_input(image, cfg, pts))
        other_pixels = backend.infer(network_input(255 - image, cfg, pts))
        moved = backend.infer(network_input(image, cfg, pts + 3.0))
    with torch.no_grad():
        expected = net.forward_lowres(torch.from_numpy(network_input(image, cfg, pts))).numpy()
    np.testing.assert_allclose(base, expected, atol=1e-4)
    np.testing.assert_allclose(other_pixels, base, atol=1e-5)
    assert np.abs(moved - base).max() > 1e-3


def test_a_recording_refuses_another_clip_of_the_same_size(plane_checkpoint, demo_clip, tmp_path):
    """Issue 13 item 9: a landmarks recording made on another clip of the same size replayed silently. The
    recording keeps the clip's name, frame count and thumbnails of its first frames; a clip with the same
    frame count and size but other pictures (here: the demo clip mirrored) is refused at its first frame."""
    import cv2

    from realtime_vrn.errors import ConfigError
    from realtime_vrn.landmarks.recorded import ReplayTracker

    record = tmp_path / "clip-landmarks.npz"
    config = RunConfig(video=demo_clip, weights=plane_checkpoint, max_frames=3, headless=True, progress=False,
                       record_landmarks=record).validate()
    run(config)
    mirrored = tmp_path / "other.avi"
    reader, writer = cv2.VideoCapture(str(demo_clip)), None
    frames = 0
    while True:
        ok, frame = reader.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(mirrored), cv2.VideoWriter_fourcc(*"MJPG"), 30, frame.shape[1::-1])
        writer.write(np.ascontiguousarray(frame[:, ::-1]))
        frames += 1
    reader.release()
    writer.release()
    replay = RunConfig(video=mirrored, weights=plane_checkpoint, max_frames=3, headless=True, progress=False,
                       landmarks=record).validate()
    with pytest.raises(ConfigError, match="frame 0 of other.avi is another picture"):
        run(replay)
    with pytest.raises(ConfigError, match=r"\(448 frames\), this input short.mp4 has 12"):
        ReplayTracker(record, source={"name": "short.mp4", "frames": 12})
    ReplayTracker(record, source={"name": demo_clip.name, "frames": frames})  # the clip it was recorded on


def test_the_shipped_default_model_reconstructs_a_real_face(vrn_home, face_photos):
    """The model a user gets without options (vrn-small, shipped in the package), end to end on the bundled
    frontal portrait: one face-sized mesh, in place over the landmarks, its nose in front of its jawline.
    (2026-12 model: 18k vertices, mesh box 1.04 x 1.41 the landmark box, nose 0.39 face sizes in front.)"""
    from pathlib import Path

    from realtime_vrn.weights.registry import DEFAULT_MODEL

    photo = next(p for p in face_photos if p.name == "asj.jpg")
    got = []
    config = RunConfig(image=photo, headless=True, progress=False, backend="torch")  # torch: no ONNX export
    summary = run(config.validate(), on_frame=got.append)
    assert Path(summary.model).name == f"{DEFAULT_MODEL}.safetensors" and summary.frames_with_face == 1
    rec = got[0]
    vertices, p68 = rec.mesh.vertices, rec.landmarks.points68
    lo, hi = p68.min(axis=0), p68.max(axis=0)
    size = float(np.sqrt(np.prod(hi - lo)))  # the face size the crop is built on (frame pixels)
    assert len(vertices) > 2000
    extent = vertices[:, :2].max(axis=0) - vertices[:, :2].min(axis=0)
    assert (extent >= 0.9 * (hi - lo)).all() and (extent <= 2.0 * (hi - lo)).all()
    margin = 0.4 * (hi - lo)
    assert (vertices[:, :2] >= lo - margin).all() and (vertices[:, :2] <= hi + margin).all()

    def depth_near(points: np.ndarray) -> float:  # median z (frame frame: larger = nearer) of nearby vertices
        d = np.linalg.norm(vertices[:, None, :2] - points[None, :, :], axis=2).min(axis=1)
        return float(np.median(vertices[d < 0.1 * size, 2]))

    relief = (depth_near(p68[30:31]) - depth_near(p68[0:17])) / size  # nose tip vs jawline (iBUG 30, 0-16)
    assert relief > 0.15, relief


def test_landmarks_of_photos_are_recorded_with_every_face_reconstructed(plane_checkpoint, face_photos, tmp_path):
    """--faces all (the default for photos) asks the tracker for every face: the recording wrapper must record
    those frames too (it used to pass the call through and write nothing)."""
    record = tmp_path / "photos-landmarks.npz"
    photo = next(p for p in face_photos if p.name == "asj.jpg")
    config = RunConfig(image=photo, weights=plane_checkpoint, headless=True, progress=False,
                       record_landmarks=record).validate()
    run(config)
    with np.load(record) as data:
        assert data["points"].shape == (1, 478, 3) and np.isfinite(data["points"]).all()


def test_the_front_half_is_compiled_before_the_first_frame():
    """The crop's loop and the heatmaps' pass are compiled (or loaded from numba's cache) by their warm-ups,
    which the Reconstructor runs at start-up, with the types a frame brings: a real frame's crop and network
    input then compile nothing more. In a fresh process, where no dispatcher has a signature yet."""
    import subprocess
    import sys

    script = """
import numpy as np
from skimage import data
from realtime_vrn._crop_warp import warp_cubic
from realtime_vrn.crop import CropTransform, warm_up
from realtime_vrn.model._heatmaps import write_heatmaps
from realtime_vrn.model.guidance import NetworkInputs
from realtime_vrn.model.network import VRNConfig

cfg = VRNConfig(input_size=96, in_channels=71)
assert cfg.guided and not warp_cubic.signatures and not write_heatmaps.signatures
warm_up(cfg.input_size)
inputs = NetworkInputs(cfg).warm_up()
before = (len(warp_cubic.signatures), len(write_heatmaps.signatures))
photo = data.astronaut()  # a real face: a crop of it and its network input, as a frame brings them
points = np.array([[170.0 + 9 * (k % 10), 90.0 + 11 * (k // 10)] for k in range(68)])
crop = CropTransform.from_landmarks(points, size=cfg.input_size)
inputs.release(inputs.build(crop.warp(photo), crop.to_crop(points)))
print(before, (len(warp_cubic.signatures), len(write_heatmaps.signatures)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(1,", "1)", "(1,", "1)"]
