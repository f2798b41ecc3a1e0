"""Every face of a video (``--faces all`` on video and cameras): faces followed as numbered tracks.

The association is checked with arrays (exact answers); the whole run on a clip of two real faces side by side,
made from the bundled talking-head clip (two moments of it, one mirrored), where the right face leaves for longer
than the grace and another real face takes its place.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from realtime_vrn.config import RunConfig
from realtime_vrn.landmarks.tracks import TRACK_GRACE_FRAMES, FaceTracks, associate, match_cost

#: Side of each face's half of the test clip, pixels (Face Mesh finds a face of ~120 px in it).
HALF = 200
#: The test clip: both faces, then the right one gone (longer than the grace), then a new face on the right.
BOTH, GONE, NEW = 8, TRACK_GRACE_FRAMES + 4, 8


def _face(x0: float, y0: float, side: float = 100.0, seed: int = 0) -> np.ndarray:
    """(478, 3) float32 points filling the box (x0, y0, x0 + side, y0 + side), frame pixels."""
    points = np.random.default_rng(seed).uniform(0, 1, (478, 3)).astype(np.float32) * side
    points[:, :2] += (x0, y0)
    points[0, :2], points[1, :2] = (x0, y0), (x0 + side, y0 + side)  # the box exactly
    return points


def _box(x0, y0, side=100.0):
    return np.array([x0, y0, x0 + side, y0 + side], np.float64)


# -- association with arrays --------------------------------------------------------------------------------

def test_association_follows_the_boxes_not_the_order():
    tracks = np.array([_box(0, 0), _box(300, 0)])
    assert sorted(associate(tracks, np.array([_box(305, 3), _box(4, 2)]))) == [(0, 1), (1, 0)]
    assert associate(tracks, np.array([_box(150, 0)])) == []  # 1.5 face sizes from both: a new face
    assert associate(tracks, np.array([_box(0, 0, side=200)])) == []  # twice the size: another face in front
    assert associate(np.zeros((0, 4)), np.array([_box(0, 0)])) == []
    cost = match_cost(tracks, np.array([_box(10, 0)]))
    np.testing.assert_allclose(cost[0, 0], 0.1)  # the shift in face sizes
    assert np.isinf(cost[1, 0])


def test_swapped_backend_order_keeps_the_numbers():
    tracks = FaceTracks(smoothing=None)
    left, right = _face(0, 0), _face(300, 0, seed=1)
    first = dict(tracks.update([right, left], 0.0, 0))  # faces new in one frame are numbered left to right
    assert first[1] is left and first[2] is right
    for frame in range(1, 5):  # the backend returns them in the other order, and they move a little
        got = dict(tracks.update([right + frame, left - frame], frame / 30, frame))
        np.testing.assert_array_equal(got[1], left - frame)
        np.testing.assert_array_equal(got[2], right + frame)


def test_each_track_is_smoothed_by_its_own_filter():
    from realtime_vrn.landmarks import SMOOTHING

    tracks = FaceTracks(smoothing=SMOOTHING)
    left, right = _face(0, 0), _face(300, 0, seed=1)
    tracks.update([left, right], 0.0, 0)
    got = dict(tracks.update([right, left + 10.0], 1 / 30, 1))
    np.testing.assert_allclose(got[2], right)  # still: its filter output is its own points
    moved = got[1][:, 0] - left[:, 0]
    assert np.all((moved > 0) & (moved < 10))  # between the two measurements of the left face only


def test_a_face_that_leaves_ends_its_track_and_a_newcomer_gets_a_new_number(caplog):
    tracks = FaceTracks(smoothing=None)
    left, right = _face(0, 0), _face(300, 0, seed=1)
    caplog.set_level(logging.INFO, logger="realtime_vrn.landmarks.tracks")
    frame = 0
    for _ in range(3):
        tracks.update([left, right], frame / 30, frame)
        frame += 1
    for _ in range(TRACK_GRACE_FRAMES):  # missed for the grace: the number is kept
        assert [n for n, _ in tracks.update([left], frame / 30, frame)] == [1]
        frame += 1
    assert tracks.numbers == [1, 2]
    assert [n for n, _ in tracks.update([left, right], frame / 30, frame)] == [1, 2]  # back within the grace
    frame += 1
    for _ in range(TRACK_GRACE_FRAMES + 1):
        tracks.update([left], frame / 30, frame)
        frame += 1
    assert tracks.numbers == [1]
    assert [n for n, _ in tracks.update([left, right], frame / 30, frame)] == [1, 3]  # same place, new number
    assert tracks.started == 3 and tracks.most_at_once == 2
    assert "face 2 appeared at frame 0" in caplog.text
    assert f"face 2 lost at frame {4 + TRACK_GRACE_FRAMES}" in caplog.text
    assert f"face 3 appeared at frame {frame}" in caplog.text
    assert caplog.text.count("face 2 lost") == 1 and caplog.text.count("face 1 lost") == 0


def test_a_frame_without_faces_ages_every_track():
    tracks = FaceTracks(smoothing=None, grace_frames=1)
    tracks.update([_face(0, 0)], 0.0, 0)
    assert tracks.update([], 1 / 30, 1) == [] and tracks.numbers == [1]
    tracks.update([], 2 / 30, 2)
    assert tracks.numbers == []
    with pytest.raises(ValueError, match="grace_frames"):
        FaceTracks(smoothing=None, grace_frames=-1)


def test_the_landmark_tracker_numbers_the_faces_of_a_video(caplog):
    """LandmarkTracker(follow_all=True).process_all: FaceLandmarks with their track number, ascending; the
    "face found / lost" lines of a single face give way to the per-face ones."""
    from realtime_vrn.landmarks import LandmarkTracker
    from realtime_vrn.landmarks.base import FaceMeshBackend

    class _Scripted(FaceMeshBackend):
        name = "scripted"

        def __init__(self, script):
            super().__init__(static=False, max_faces=4)
            self.script = script

        def open(self):
            pass

        def detect(self, image_rgb, timestamp):
            return self.script.pop(0)

    left, right = _face(0, 0), _face(300, 0, seed=1)
    image = np.zeros((8, 8, 3), np.uint8)
    caplog.set_level(logging.INFO, logger="realtime_vrn.landmarks")  # batch CLI tests leave it at WARNING
    with LandmarkTracker(_Scripted([[left, right], [right, left], []]), follow_all=True) as tracker:
        for t in range(2):
            found = tracker.process_all(image, t / 30)
            assert [f.track for f in found] == [1, 2] and found[0].n_faces == 2
            assert found[0].points68.shape == (68, 2) and found[0].points[:, 0].max() < 150
        assert tracker.process_all(image, 2 / 30) == []
        assert tracker.faces_followed == 2 and tracker.most_faces == 2
    assert "face 1 appeared at frame 0" in caplog.text and "face found at frame" not in caplog.text
    with pytest.raises(ValueError, match="follow_all needs a video backend"):
        LandmarkTracker(_Scripted([]), several=lambda static: None, follow_all=True)
    with pytest.raises(RuntimeError, match="open_tracker\\(every_face=True\\)"):
        with LandmarkTracker(_Scripted([[left]])) as tracker:
            tracker.process_all(image, 0.0)


# -- a clip of two real faces -------------------------------------------------------------------------------

def _demo_frames(start: int, count: int) -> list[np.ndarray]:
    """``count`` frames of the bundled clip from ``start``, shrunk to HALF x HALF, (HALF, HALF, 3) uint8 RGB."""
    import cv2

    from realtime_vrn.assets import demo_clip_path

    cap = cv2.VideoCapture(str(demo_clip_path()))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        assert ok, f"the demo clip ended before frame {start + len(frames)}"
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (HALF, HALF), interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def two_faces_clip(tmp_path_factory):
    """An MP4 of (HALF, 2 * HALF) frames: a face on the left in every frame; on the right a face (another moment
    of the clip, mirrored) for BOTH frames, background for GONE frames, then a third face for NEW frames."""
    import cv2

    total = BOTH + GONE + NEW
    left = _demo_frames(0, total)
    right = [f[:, ::-1] for f in _demo_frames(150, BOTH)] + [np.full((HALF, HALF, 3), 90, np.uint8)] * GONE \
        + _demo_frames(300, NEW)
    path = tmp_path_factory.mktemp("clip") / "two-faces.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (2 * HALF, HALF))
    for a, b in zip(left, right):
        writer.write(cv2.cvtColor(np.concatenate([a, b], axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _run_all_faces(clip, checkpoint, **options):
    """Every frame's faces as [(track, landmark box, mesh centroid (x, y))], and the run summary."""
    from realtime_vrn.pipeline import run

    frames = []

    def record(rec):
        frames.append([(face.track, face.landmarks.box68, face.mesh.vertices[:, :2].mean(0)) for face in rec.faces])

    config = RunConfig(video=clip, weights=checkpoint, faces="all", headless=True, progress=False,
                       **options).validate()
    return frames, run(config, on_frame=record)


def test_two_real_faces_are_followed_with_stable_numbers(two_faces_clip, plane_checkpoint, tmp_path, capsys):
    """face1 on the left in every frame, face2 on the right until it leaves, face3 for the newcomer; each
    mesh lies on its own face; every mesh exported under its face's number; the summary counts the faces."""
    from realtime_vrn.cli import _print_summary

    export = tmp_path / "meshes"
    frames, summary = _run_all_faces(two_faces_clip, plane_checkpoint, export=export,
                                     output=tmp_path / "drawn.mp4")
    expected = [[1, 2]] * BOTH + [[1]] * GONE + [[1, 3]] * NEW
    assert [[track for track, _, _ in faces] for faces in frames] == expected
    for faces in frames:
        for track, (x0, y0, x1, y1), centroid in faces:
            assert x0 <= centroid[0] <= x1 and y0 <= centroid[1] <= y1, (track, centroid)
            assert (centroid[0] < HALF) == (track == 1)  # face1 is the left face
    names = sorted(p.name for p in export.iterdir())
    assert names == sorted(f"frame_{i:06d}_face{n}.obj" for i, tracks in enumerate(expected) for n in tracks)
    assert summary.faces_followed == 3 and summary.most_faces == 2
    assert summary.frames == BOTH + GONE + NEW and summary.frames_with_face == summary.frames
    assert (tmp_path / "drawn.mp4").is_file()
    _print_summary(summary)
    assert "3 face(s) followed (face1 to face3), at most 2 in one frame" in capsys.readouterr().out


def test_the_pipelined_loop_follows_the_same_faces(two_faces_clip, plane_checkpoint):
    sequential, _ = _run_all_faces(two_faces_clip, plane_checkpoint, pipelined=False, max_frames=BOTH + 2)
    pipelined, _ = _run_all_faces(two_faces_clip, plane_checkpoint, pipelined=True, max_frames=BOTH + 2)
    assert len(pipelined) == len(sequential) == BOTH + 2
    for a, b in zip(sequential, pipelined):
        assert [t for t, _, _ in a] == [t for t, _, _ in b]
        for (_, box_a, c_a), (_, box_b, c_b) in zip(a, b):
            np.testing.assert_allclose(box_a, box_b, atol=1e-3)
            np.testing.assert_allclose(c_a, c_b, atol=1e-3)


class _ClipCamera:
    """A camera that films the first BOTH frames of a clip over and over, 30 frames a second (OpenCV's capture
    interface, as ``CameraSource`` uses it)."""

    def __init__(self, clip):
        import cv2

        cap = cv2.VideoCapture(str(clip))
        self.frames = [cap.read()[1] for _ in range(BOTH)]
        cap.release()
        self.reads = 0

    def isOpened(self):  # noqa: N802
        return True

    def get(self, prop):
        import cv2

        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        import time

        time.sleep(1 / 30)
        self.reads += 1
        return True, self.frames[self.reads % BOTH].copy()

    def release(self):
        pass


def test_a_camera_follows_every_face_the_same_way(two_faces_clip, plane_checkpoint, monkeypatch):
    """--camera with --faces all: the same tracker and loop as a video file (live frames, newest first)."""
    from realtime_vrn.pipeline import run
    from realtime_vrn.sources import camera

    monkeypatch.setattr(camera, "_opencv_capture", lambda index: _ClipCamera(two_faces_clip))
    frames = []
    config = RunConfig(camera=0, weights=plane_checkpoint, faces="all", headless=True, max_frames=5,
                       progress=False).validate()
    summary = run(config, on_frame=lambda rec: frames.append([(f.track, f.mesh.vertices[:, 0].mean())
                                                              for f in rec.faces]))
    assert [[track for track, _ in faces] for faces in frames] == [[1, 2]] * 5
    assert all(x < HALF for faces in frames for track, x in faces if track == 1)
    assert summary.faces_followed == 2


def test_each_face_has_its_own_logit_smoother(plane_checkpoint):
    """The smoother of a numbered face only ever sees that face's crops; a track that leaves loses its smoother."""
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.landmarks.base import FaceLandmarks
    from realtime_vrn.landmarks.ibug68 import to_ibug68
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.pipeline import Reconstructor
    from realtime_vrn.sources.base import Frame
    from realtime_vrn.surface.smoothing import LogitSmoother

    class _Tracker:  # the faces of a script, already numbered
        def __init__(self, script):
            self.script = script

        def process_all(self, image, timestamp):
            faces = self.script.pop(0)
            return [FaceLandmarks(points=p, points68=to_ibug68(p), n_faces=len(faces), track=n) for n, p in faces]

    image = np.zeros((240, 480, 3), np.uint8)
    left, right = _face(20, 40), _face(300, 40, seed=1)
    tracker = _Tracker([[(1, left), (2, right)], [(1, left)], [(1, left), (2, right)]])
    cfg = read_checkpoint_header(plane_checkpoint).cfg
    with open_backend("onnxruntime", plane_checkpoint) as backend:
        rec = Reconstructor(tracker, backend, cfg, media_fps=30.0, smoother=LogitSmoother(), all_faces=True)
        smoothers = []
        for i in range(3):
            out = rec.process(Frame(image, i, i / 30))
            crops = {face.track: tuple(face.crop.centre) for face in (out, *out.others)}
            smoothers.append(dict(rec._track_smoothers))
            for track, smoother in rec._track_smoothers.items():  # each holds the state of its own face's crop
                np.testing.assert_allclose(smoother._crop[:2], crops[track])
    assert smoothers[1][1] is smoothers[0][1] and smoothers[2][1] is smoothers[0][1]  # face1 keeps its own
    assert 2 not in smoothers[1] and smoothers[2][2] is not smoothers[0][2]  # face2 left: a fresh one
    assert smoothers[0][1] is not smoothers[0][2] and rec.smoother._state is None  # the shared one is unused


def test_record_landmarks_is_refused_with_every_face_of_a_video(demo_clip, tmp_path, capsys):
    """One face per frame in a recording: refused in one line with --faces all on video and cameras (photos still
    record their largest face; video and cameras take --faces all otherwise)."""
    from realtime_vrn.cli import main

    for source in ({"video": demo_clip}, {"camera": 0}, {}):
        assert RunConfig(faces="all", **source).validate().faces == "all"

    assert main(["--video", str(demo_clip), "--faces", "all", "--record-landmarks", str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a landmark recording holds one face per frame" in err
    assert main(["--camera", "0", "--faces", "all", "--record-landmarks", str(tmp_path / "r.npz")]) == 2
