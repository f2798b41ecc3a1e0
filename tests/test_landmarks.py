"""Face tracking: MediaPipe on real photos and the demo clip, the 68-point mapping against the official FAN
points, largest-face choice, lost/found counting, One Euro smoothing, backend choice, the model download."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.landmarks import (MEDIAPIPE_TO_IBUG68, FaceLandmarks, FaceMeshBackend, LandmarkTracker,
                                    OneEuroFilter, OneEuroParams, open_tracker, to_ibug68)
from realtime_vrn.landmarks import base as base_module
from realtime_vrn.landmarks import registry as registry_module
from realtime_vrn.landmarks import mediapipe_solutions, mediapipe_tasks
from realtime_vrn.sources import open_source, read_image_rgb
from conftest import closed_port_url

#: The official pipeline's 68 FAN points for the demo photos (AaronJackson/vrn examples/*.txt, made 0-based),
#: summarised as (mean x, mean y, box width, box height) in frame pixels: what the crop depends on.
FAN_SUMMARY = {
    "asj.jpg": (323.74, 305.66, 190, 200),
    "AFLW_image00046.jpg": (220.71, 266.37, 190, 171),
    "AFLW_image00095.jpg": (219.57, 268.09, 196, 186),
    "AFLW_image00190.jpg": (231.16, 267.12, 204, 221),
    "AFLW_image00656.jpg": (232.09, 270.00, 204, 189),
}


@pytest.fixture(scope="module")
def static_tracker():
    with open_tracker(static=True) as tracker:
        yield tracker


@pytest.fixture(scope="module")
def clip_frames(demo_clip) -> list[np.ndarray]:
    with open_source(video=demo_clip) as source:
        return [next(source).image for _ in range(40)]


def box_side(points: np.ndarray) -> float:
    return math.sqrt(float(np.prod(points[:, :2].max(0) - points[:, :2].min(0))))


# -- the 68-point mapping ----------------------------------------------------------------------------------

def test_mapping_table():
    assert len(MEDIAPIPE_TO_IBUG68) == 68 and len(set(MEDIAPIPE_TO_IBUG68)) == 68
    assert max(MEDIAPIPE_TO_IBUG68) < 468  # mesh vertices only, works without the iris points too
    points = np.arange(478 * 3, dtype=np.float32).reshape(478, 3)
    p68 = to_ibug68(points)
    assert p68.shape == (68, 2) and p68.dtype == np.float32
    np.testing.assert_array_equal(p68[8], points[152, :2])  # chin
    with pytest.raises(ValueError, match="Face Mesh points"):
        to_ibug68(np.zeros((68, 2)))


def test_landmarks_on_real_photos(face_photos, astronaut, static_tracker):
    images = [(p.name, read_image_rgb(p)) for p in face_photos] + [("astronaut", astronaut)]
    for name, image in images:
        found = static_tracker.process(image, 0.0)
        assert isinstance(found, FaceLandmarks), name
        assert found.n_faces == 1
        assert found.points.shape == (478, 3) and found.points.dtype == np.float32
        assert found.points68.shape == (68, 2) and found.points68.dtype == np.float32
        np.testing.assert_array_equal(found.points68, found.points[list(MEDIAPIPE_TO_IBUG68), :2])
        height, width = image.shape[:2]
        assert (found.points68 >= 0).all() and (found.points68[:, 0] < width).all()
        assert (found.points68[:, 1] < height).all()
        # anatomy: brows above eyes above nose tip above mouth above chin; subject's right eye on image left
        y = found.points68[:, 1]
        assert y[19] < y[37] < y[30] < y[51] < y[8], name
        assert found.points68[36, 0] < found.points68[45, 0], name


def test_mapping_bias_against_official_fan_points(face_photos, static_tracker):
    """Crop-relevant bias of MediaPipe->68 against FAN (numbers documented in landmarks/ibug68.py)."""
    ratios = []
    for path in face_photos:
        mean_x, mean_y, width, height = FAN_SUMMARY[path.name]
        fan_side = math.sqrt(width * height)
        found = static_tracker.process(read_image_rgb(path), 0.0)
        ratio = box_side(found.points68) / fan_side
        ratios.append(ratio)
        assert 0.93 < ratio < 1.05, path.name  # crop scale within 7 % of the official one
        offset = np.linalg.norm(found.points68.mean(0) - [mean_x, mean_y])
        assert offset < 0.02 * fan_side, path.name  # crop centre within 2 % of the box side (< 1 crop px)
    assert 0.95 < np.mean(ratios) < 1.0  # MediaPipe's 68-point box is ~2 % smaller on average


def test_largest_face_is_chosen(face_photos, astronaut, static_tracker):
    big = cv2.resize(read_image_rgb(face_photos[1]), (480, 480))
    small = astronaut[0:300, 100:400]
    for big_left in (True, False):
        canvas = np.zeros((480, 800, 3), np.uint8)
        if big_left:
            canvas[:, :480], canvas[90:390, 490:790] = big, small
        else:
            canvas[:, 320:], canvas[90:390, 10:310] = big, small
        found = static_tracker.process(canvas, 0.0)
        assert found.n_faces == 2
        assert box_side(found.points68) > 150
        assert (found.points68[:, 0].mean() > 320) != big_left


def test_no_face(static_tracker):
    before = static_tracker.frames_without_face
    assert static_tracker.process(np.zeros((240, 320, 3), np.uint8), 0.0) is None
    assert static_tracker.frames_without_face == before + 1


# -- video mode on the demo clip -------------------------------------------------------------------------

def test_video_mode_on_demo_clip_with_and_without_smoothing(clip_frames):
    raw, smooth = [], []
    with open_tracker(smoothing=False) as plain, open_tracker() as smoothed:
        assert not plain.smoothing and smoothed.smoothing
        for i, image in enumerate(clip_frames):
            raw.append(plain.process(image, i / 30).points)
            smooth.append(smoothed.process(image, i / 30).points)
        assert (smoothed.frames_with_face, smoothed.frames_without_face, smoothed.lost_events) == (40, 0, 0)
    raw, smooth = np.array(raw)[..., :2], np.array(smooth)[..., :2]
    np.testing.assert_array_equal(smooth[0], raw[0])  # the first frame passes through
    deviation = np.linalg.norm(smooth - raw, axis=2).mean()
    assert 0 < deviation < 0.02 * box_side(raw[0])  # follows the face closely

    def jerk(p):
        return np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=2).mean()

    assert jerk(smooth) < 0.8 * jerk(raw)  # and is steadier


def test_lost_and_found_on_real_frames(clip_frames, caplog):
    black = np.zeros_like(clip_frames[0])
    sequence = clip_frames[:8] + [black] * 5 + clip_frames[8:16]
    with caplog.at_level(logging.INFO, logger="realtime_vrn.landmarks"):
        with open_tracker() as tracker:
            results = [tracker.process(image, i / 30) for i, image in enumerate(sequence)]
    assert [r is None for r in results] == [False] * 8 + [True] * 5 + [False] * 8
    assert (tracker.frames_with_face, tracker.frames_without_face, tracker.lost_events) == (16, 5, 1)
    assert "face lost at frame 8" in caplog.text
    assert "face found again at frame 13 after 5 frame(s) without" in caplog.text


def test_static_mode_never_smooths():
    with open_tracker(static=True, smoothing=True) as tracker:
        assert not tracker.smoothing


# -- tracker logic with a scripted backend -----------------------------------------------------------------

class ScriptedBackend(FaceMeshBackend):
    """Returns the faces of a script, one entry per frame."""

    name = "scripted"

    def __init__(self, script, static: bool = False) -> None:
        super().__init__(static, max_faces=2)
        self.script = list(script)
        self.closed = 0

    def open(self) -> None:
        pass

    def detect(self, image_rgb, timestamp):
        return self.script.pop(0)

    def close(self) -> None:
        self.closed += 1


def synthetic_face(shift: float = 0.0, size: float = 100.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(478, 3)).astype(np.float32) * size
    points[:, 0] += 50 + shift
    return points


FRAME = np.zeros((8, 8, 3), np.uint8)


def test_smoothing_off_returns_the_backend_points():
    face = synthetic_face()
    moved = synthetic_face(shift=5.0)
    with LandmarkTracker(ScriptedBackend([[face], [moved]]), smoothing=False) as tracker:
        assert tracker.process(FRAME, 0.0).points is face
        np.testing.assert_array_equal(tracker.process(FRAME, 1 / 30).points, moved)


def test_smoothing_restarts_when_the_face_is_lost():
    faces = [[synthetic_face()], [synthetic_face(shift=3.0)], [], [synthetic_face(shift=40.0)]]
    with LandmarkTracker(ScriptedBackend(faces)) as tracker:
        tracker.process(FRAME, 0.0)
        second = tracker.process(FRAME, 1 / 30).points
        assert 50 < second[:, 0].min() < 53  # smoothed: between the two measurements
        assert tracker.process(FRAME, 2 / 30) is None
        again = tracker.process(FRAME, 3 / 30).points
        np.testing.assert_allclose(again, synthetic_face(shift=40.0))  # no memory of the lost face
    assert tracker.lost_events == 1


def test_largest_of_several_faces_and_count():
    small, large = synthetic_face(size=60, seed=1), synthetic_face(size=120, seed=2)
    with LandmarkTracker(ScriptedBackend([[small, large], [large, small]]), smoothing=False) as tracker:
        for _ in range(2):
            found = tracker.process(FRAME, 0.0)
            assert found.points is large and found.n_faces == 2


def test_tracker_lifecycle_and_input_checks():
    backend = ScriptedBackend([[synthetic_face()]])
    tracker = LandmarkTracker(backend)
    with pytest.raises(RuntimeError, match="open the tracker first"):
        tracker.process(FRAME, 0.0)
    with tracker:
        with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB image, got float32"):
            tracker.process(FRAME.astype(np.float32), 0.0)
        with pytest.raises(ValueError, match="shape"):
            tracker.process(FRAME[..., 0], 0.0)
    tracker.close()
    assert backend.closed == 1


def test_backend_returning_wrong_shape_is_an_error():
    with LandmarkTracker(ScriptedBackend([[np.zeros((468, 3), np.float32)]])) as tracker:
        with pytest.raises(RuntimeError, match=r"expected \(478, 3\)"):
            tracker.process(FRAME, 0.0)


def test_open_tracker_rejects_bad_max_faces():
    with pytest.raises(ValueError, match="max_faces"):
        open_tracker(max_faces=0)


# -- One Euro filter ---------------------------------------------------------------------------------------

def test_one_euro_constant_and_first_sample():
    f = OneEuroFilter(OneEuroParams(1.0, 10.0, 1.0))
    x = np.full((5, 2), 3.0)
    for i in range(5):
        np.testing.assert_allclose(f(x, i / 30), x)


def test_one_euro_without_beta_is_exponential_smoothing():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0, d_cutoff=1.0))
    f(np.zeros((1, 1)), 0.0)
    alpha = 1 / (1 + (1 / (2 * math.pi * 1.0)) / (1 / 30))  # Casiez: alpha = 1 / (1 + tau / Te)
    assert f(np.ones((1, 1)), 1 / 30)[0, 0] == pytest.approx(alpha, rel=1e-6)
    assert f(np.ones((1, 1)), 2 / 30)[0, 0] == pytest.approx(alpha + (1 - alpha) * alpha, rel=1e-6)


def test_one_euro_removes_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    params = OneEuroParams(1.0, 20.0, 1.0)
    still = OneEuroFilter(params)
    noisy = 100 + rng.normal(0, 0.3, size=(90, 10, 2))  # Face Mesh on a still 100-px face: ~0.2 px jitter
    out = np.array([still(x, i / 30, scale=100.0) for i, x in enumerate(noisy)])
    assert out[30:].std(axis=0).mean() < 0.5 * noisy[30:].std(axis=0).mean()
    # a ramp of one face size per second: the speed term keeps the lag far below plain low-pass filtering
    ramp = [np.full((1, 2), 100.0 * i / 30) for i in range(60)]
    adaptive, plain = OneEuroFilter(params), OneEuroFilter(OneEuroParams(1.0, 0.0, 1.0))
    lag = [abs(r[0, 0] - f(r, i / 30, scale=100.0)[0, 0]) for f in (adaptive, plain) for i, r in enumerate(ramp)]
    assert lag[59] < 0.25 * lag[119]


def test_one_euro_restarts_on_time_going_back_and_reset():
    f = OneEuroFilter(OneEuroParams(1.0, 0.0, 1.0))
    f(np.zeros((2, 2)), 1.0)
    np.testing.assert_array_equal(f(np.ones((2, 2)), 1.0), np.ones((2, 2)))  # same time: restart
    f.reset()
    np.testing.assert_array_equal(f(np.full((2, 2), 7.0), 2.0), np.full((2, 2), 7.0))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        f(np.zeros(3), 3.0)
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        OneEuroParams(0.0, 1.0, 1.0)


# -- backend registry ----------------------------------------------------------------------------------------

@pytest.fixture()
def registry(monkeypatch):
    registry_module.backend_names()  # registers the built-in backends
    monkeypatch.setattr(base_module, "_REGISTRY", dict(base_module._REGISTRY))
    return registry_module


def test_both_mediapipe_backends_probe_here_solutions_first(registry):
    assert mediapipe_solutions.probe() is None and mediapipe_tasks.probe() is None
    assert registry.candidate_backends("auto") == (["mediapipe_solutions", "mediapipe_tasks"], [])


def test_newer_mediapipe_without_solutions_uses_tasks(registry, tmp_path, monkeypatch):
    fake = tmp_path / "mediapipe"  # the layout of mediapipe >= 0.10.30: Tasks API, no python/solutions
    (fake / "tasks" / "python" / "vision").mkdir(parents=True)
    (fake / "tasks" / "python" / "vision" / "face_landmarker.py").write_text("")
    (fake / "__init__.py").write_text("")
    spec = SimpleNamespace(origin=str(fake / "__init__.py"))
    for module in (mediapipe_solutions, mediapipe_tasks):
        monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: spec)
    usable, skipped = registry.candidate_backends("auto")
    assert usable == ["mediapipe_tasks"]
    assert skipped == ["mediapipe_solutions: this mediapipe has no Solutions API (removed in 0.10.30); use the "
                       "mediapipe_tasks backend"]


def test_no_mediapipe_reports_every_backend(registry, monkeypatch):
    for module in (mediapipe_solutions, mediapipe_tasks):
        monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match=r"no face tracker could start: mediapipe_solutions: mediapipe is not "
                                           r"installed .*; mediapipe_tasks: mediapipe is not installed"):
        open_tracker()


def test_auto_tries_the_next_backend_when_one_fails(registry):
    class Broken(ScriptedBackend):
        def open(self):
            raise RuntimeError("model file damaged")

    base_module.register_backend("broken", lambda static, n: Broken([]), priority=99, probe=lambda: None)
    base_module.register_backend("works", lambda static, n: ScriptedBackend([[synthetic_face()]]), priority=98,
                                 probe=lambda: None)
    with open_tracker() as tracker:
        assert isinstance(tracker.backend, ScriptedBackend) and not isinstance(tracker.backend, Broken)
    with pytest.raises(BackendError, match="broken: model file damaged"):
        open_tracker(backend="broken")


def test_unknown_backend_names_the_choices(registry):
    with pytest.raises(ConfigError, match="choose one of: auto, mediapipe_solutions, mediapipe_tasks"):
        open_tracker(backend="dlib")


def test_tasks_timestamps_strictly_increase():
    backend = mediapipe_tasks.MediaPipeTasksBackend(static=False, max_faces=1)
    assert [backend._timestamp_ms(t) for t in (1.0, 1.0, 1.0004, 2.0)] == [1000, 1001, 1002, 2000]


# -- model download (Tasks backend) ------------------------------------------------------------------------

def test_model_path_follows_realtime_vrn_home(vrn_home):
    assert mediapipe_tasks.model_path() == vrn_home / "models" / "face_landmarker.task"


def test_tasks_backend_downloads_its_model_once_into_the_cache(http_files, vrn_home, monkeypatch):
    junk = bytes(range(256)) * 4000  # big enough to pass the size check, not a model bundle
    (http_files.root / "face_landmarker.task").write_bytes(junk)
    monkeypatch.setattr(mediapipe_tasks, "MODEL_URL", f"{http_files.url}/face_landmarker.task")
    for _ in range(2):
        with pytest.raises(BackendError, match="mediapipe_tasks: cannot load the face landmarker model"):
            open_tracker(backend="mediapipe_tasks")
    cached = vrn_home / "models" / "face_landmarker.task"
    assert cached.read_bytes() == junk
    assert list(cached.parent.iterdir()) == [cached]  # renamed into place, no partial file left
    assert http_files.hits == ["/face_landmarker.task"]  # downloaded once, then taken from the cache


def test_tasks_backend_rejects_an_error_page(http_files, vrn_home, monkeypatch):
    (http_files.root / "face_landmarker.task").write_text("<html>quota exceeded</html>")
    monkeypatch.setattr(mediapipe_tasks, "MODEL_URL", f"{http_files.url}/face_landmarker.task")
    with pytest.raises(BackendError, match="at least 1000000"):
        open_tracker(backend="mediapipe_tasks")
    assert not (vrn_home / "models" / "face_landmarker.task").exists()


def test_tasks_backend_unreachable_model_names_the_url_and_the_path(vrn_home, monkeypatch):
    url = closed_port_url("face_landmarker.task")
    monkeypatch.setattr(mediapipe_tasks, "MODEL_URL", url)
    with pytest.raises(BackendError) as info:
        open_tracker(backend="mediapipe_tasks")
    message = str(info.value)
    assert url in message and str(vrn_home / "models" / "face_landmarker.task") in message
    assert "REALTIME_VRN_HOME" in message


# -- packaging -----------------------------------------------------------------------------------------------

def test_importing_the_stages_loads_no_heavy_module():
    code = ("import sys, realtime_vrn.landmarks, realtime_vrn.landmarks.mediapipe_tasks, realtime_vrn.sources, "
            "realtime_vrn.crop; "
            "heavy = [m for m in ('mediapipe', 'cv2', 'tqdm', 'platformdirs') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_video_tracker_follows_one_face_and_counts_faces_periodically(face_photos, astronaut):
    """A video tracker tracks a single face cheaply; the census finds a second, larger face within
    CENSUS_EVERY frames and the tracker then reconstructs the largest."""
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.landmarks.tracker import CENSUS_EVERY

    big = cv2.resize(read_image_rgb(face_photos[1]), (480, 480))
    small = astronaut[0:300, 100:400]
    alone = np.zeros((480, 800, 3), np.uint8)
    alone[90:390, 490:790] = small
    both = alone.copy()
    both[:, :480] = big
    with open_tracker(static=False, smoothing=False) as tracker:
        for i in range(3):
            found = tracker.process(alone, i / 30)
            assert found is not None and found.n_faces == 1
        sides = []
        for i in range(3, CENSUS_EVERY + 5):
            found = tracker.process(both, i / 30)
            sides.append(box_side(found.points68))
        assert sides[-1] > 150 and found.n_faces == 2  # the larger (left) face, after the census
        assert found.points68[:, 0].mean() < 480


def test_solutions_landmarks_read_from_the_wire_equal_the_messages(face_photos):
    """landmark_array reads Face Mesh's landmark list from its wire format in one pass: the very values of the
    message-by-message read, and that read whenever a landmark holds other fields than exactly x, y, z."""
    from mediapipe.framework.formats import landmark_pb2
    from mediapipe.python.solutions import face_mesh

    photo = next(p for p in face_photos if p.name == "asj.jpg")
    image = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        face = mesh.process(image).multi_face_landmarks[0]

    def one_by_one(landmarks):
        return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)

    expected = one_by_one(face)
    assert expected.shape == (478, 3) and len(face.SerializeToString()) == 478 * 17  # the one-pass layout
    np.testing.assert_array_equal(mediapipe_solutions.landmark_array(face), expected)
    face.landmark[5].visibility = 0.5  # one landmark longer than the others
    np.testing.assert_array_equal(mediapipe_solutions.landmark_array(face), expected)
    short = landmark_pb2.NormalizedLandmarkList()
    for k in range(17):  # x and y only: 17 x 12 bytes, a multiple of 17 bytes that is not the one-pass layout
        short.landmark.add(x=k / 17, y=0.5)
    assert len(short.SerializeToString()) % 17 == 0
    got = mediapipe_solutions.landmark_array(short)
    np.testing.assert_array_equal(got, one_by_one(short))
    assert (got[:, 2] == 0).all() and got[16, 0] == np.float32(16 / 17)
