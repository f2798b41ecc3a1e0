"""The real-face benchmark (``realtime-vrn eval --real``): metric plumbing with exact answers on real faces,
MediaPipe's surface, the posed mean face, and the command's files.

Ground truth here comes from MediaPipe run on bundled real photos (tests/data/faces): the AFLW2000-3D dev photos
are for measuring only and never enter the repository.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
from scipy.spatial import Delaunay

from realtime_vrn.training.facemodel import default_npz
from realtime_vrn.training.realface import (INNER, MeanFace, RealFaceError, bucket_of, landmark_nme3d,
                                            load_real_folder, mediapipe_surface,
                                            sample_front, surface_errors)

needs_face_model = pytest.mark.skipif(not default_npz().is_file() and os.environ.get("CI") != "true",
                                      reason=f"ICT face model not at {default_npz()} (shared data)")


@pytest.fixture(scope="module")
def real_landmarks(face_photos):
    """MediaPipe's landmarks on the frontal bundled portrait (asj.jpg) and on one large-pose AFLW demo photo."""
    import cv2

    from realtime_vrn.landmarks import open_tracker

    out = {}
    with open_tracker(static=True, smoothing=False) as tracker:
        for path in face_photos:
            if path.name in ("asj.jpg", "AFLW_image00046.jpg"):
                rgb = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
                out[path.name] = tracker.process(rgb, 0.0)
    assert all(v is not None for v in out.values())
    return out


def _truth_from(landmarks) -> np.ndarray:
    """(68, 3) ground truth in the AFLW convention from MediaPipe's 68 points (z larger nearer)."""
    from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68

    pts = landmarks.points[list(MEDIAPIPE_TO_IBUG68)].astype(np.float64)
    pts[:, 2] = -pts[:, 2]
    return pts


def _norm(truth: np.ndarray) -> float:
    extent = truth[:, :2].max(axis=0) - truth[:, :2].min(axis=0)
    return float(np.sqrt(extent[0] * extent[1]))


def test_a_mesh_through_the_truth_scores_zero_shifted_zero_and_scaled_what_the_formula_gives(real_landmarks):
    truth = _truth_from(real_landmarks["asj.jpg"])
    faces = Delaunay(truth[:, :2]).simplices.astype(np.int32)
    xy = truth[INNER, :2]
    through = sample_front(truth, faces, xy)
    np.testing.assert_allclose(through, truth[INNER, 2], atol=1e-9)  # at the vertices: their own z

    shifted, scaled = truth.copy(), truth.copy()
    shifted[:, 2] += 37.5
    scaled[:, 2] *= 1.1
    sampled = {"ours": sample_front(shifted, faces, xy), "mediapipe": through,
               "scaled": sample_front(scaled, faces, xy)}
    errors, common = surface_errors(truth[INNER, 2], sampled, _norm(truth), pair=("ours", "mediapipe", "scaled"))
    assert common == 51
    assert errors["ours"] == pytest.approx(0.0, abs=1e-12)
    assert errors["mediapipe"] == pytest.approx(0.0, abs=1e-12)
    # by hand: 1.1 z - mean(1.1 z) - (z - mean z) = 0.1 (z - mean z)
    z = truth[INNER, 2]
    assert errors["scaled"] == pytest.approx(0.1 * np.abs(z - z.mean()).mean() / _norm(truth), rel=1e-9)
    assert errors["scaled"] > 1e-3


def test_sample_front_takes_the_front_most_triangle_and_leaves_uncovered_points_nan():
    # two overlapping squares (two triangles each) at z = 1 and z = 5; the near one only covers x <= 10
    v = np.array([[0, 0, 1], [20, 0, 1], [20, 20, 1], [0, 20, 1],
                  [0, 0, 5], [10, 0, 5], [10, 20, 5], [0, 20, 5]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int32)
    z = sample_front(v, f, np.array([[5.0, 5.0], [15.0, 5.0], [10.0, 10.0], [25.0, 5.0]]))
    np.testing.assert_array_equal(z[:3], [5.0, 1.0, 5.0])  # x = 10 lies on the near square's edge: inside
    assert np.isnan(z[3])


def test_too_few_common_points_are_not_scored():
    truth = np.linspace(0, 10, 51)
    holes = np.full(51, np.nan)
    holes[:5] = 1.0
    errors, common = surface_errors(truth, {"ours": truth.copy(), "mediapipe": holes}, 100.0)
    assert errors is None and common == 5


def test_mediapipe_surface_builds_and_returns_its_own_depth_at_its_vertices(real_landmarks):
    from realtime_vrn.landmarks.topology import face_mesh_triangles

    tri = face_mesh_triangles()
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    edges = {(min(c.start, c.end), max(c.start, c.end)) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION}
    from realtime_vrn.landmarks.topology import triangles_from_tessellation

    assert tri.shape == (854, 3) and tri.dtype == np.int32
    np.testing.assert_array_equal(tri, triangles_from_tessellation())  # the written-out table is MediaPipe's
    assert tri.max() == 467 and len(np.unique(tri)) == 468
    assert all((a, b) in edges and (b, c) in edges and (a, c) in edges for a, b, c in tri)
    covered = {(a, b) for t in tri for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    assert covered == edges  # every edge of the tessellation borders a triangle

    lm = real_landmarks["asj.jpg"]
    vertices, faces = mediapipe_surface(lm.points)
    assert vertices.shape == (468, 3)
    np.testing.assert_array_equal(vertices[:, 2], -lm.points[:468, 2])  # larger z = nearer
    nose_tip, cheek = 4, 234
    assert vertices[nose_tip, 2] > vertices[cheek, 2]
    truth = _truth_from(lm)
    np.testing.assert_allclose(sample_front(vertices, faces, truth[INNER, :2]), truth[INNER, 2], atol=1e-4)
    with pytest.raises(ValueError, match="478"):
        mediapipe_surface(lm.points[:100])


@needs_face_model
def test_posed_mean_face_recovers_a_known_scaled_orthographic_pose():
    face = MeanFace.load()
    yaw, pitch = np.radians(25.0), np.radians(-10.0)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    flip = np.diag([1.0, -1.0, -1.0])  # model (y up, z to the viewer) -> image (y down, z into the screen)
    rot, scale, shift = flip @ ry @ rx, 7.5, np.array([220.0, 240.0])
    centre = face.landmarks.mean(axis=0)
    image = scale * (face.vertices - centre) @ rot.T
    points68 = scale * (face.landmarks - centre) @ rot[:2].T + shift
    posed = face.posed(points68)
    np.testing.assert_allclose(posed[:, :2], image[:, :2] + shift, atol=1e-6)
    np.testing.assert_allclose(posed[:, 2], -image[:, 2], atol=1e-6)  # depth larger = nearer
    nose_tip, jaw_left = 30, 0
    assert posed[face_landmark(face, nose_tip), 2] > posed[face_landmark(face, jaw_left), 2]


def face_landmark(face: MeanFace, i: int) -> int:
    """Index into face.vertices of mean-face landmark i (exact match of its coordinates)."""
    return int(np.flatnonzero((face.vertices == face.landmarks[i]).all(axis=1))[0])


def test_landmark_nme3d_and_buckets():
    truth = np.column_stack([np.arange(68.0), np.arange(68.0) * 2, np.linspace(-5, 5, 68)])
    assert landmark_nme3d(truth, truth[:, :2], truth[:, 2] + 3.0, 10.0) == pytest.approx(0.0, abs=1e-12)
    moved = truth[:, :2] + [3.0, 4.0]
    assert landmark_nme3d(truth, moved, truth[:, 2], 10.0) == pytest.approx(0.5)
    assert [bucket_of(y) for y in (0.0, -29.9, 30.0, -59.0, 60.0, 90.0, -95.0)] == \
        ["0-30", "0-30", "30-60", "30-60", "60-90", "60-90", "60-90"]


def test_the_folder_must_be_in_the_aflw_layout(tmp_path, face_photos):
    with pytest.raises(RealFaceError, match="not a folder"):
        load_real_folder(tmp_path / "missing")
    shutil.copy(face_photos[0], tmp_path / "image00001.jpg")
    with pytest.raises(RealFaceError, match="no imageNNNNN.jpg"):
        load_real_folder(tmp_path)
    scipy.io.savemat(tmp_path / "image00001.mat", {"pt3d_68": np.zeros((2, 68))})
    with pytest.raises(RealFaceError, match="pt3d_68"):
        load_real_folder(tmp_path)


@needs_face_model
def test_eval_real_writes_json_plot_and_sheet(tmp_path, face_photos, real_landmarks, capsys):
    from realtime_vrn.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    by_name = {p.name: p for p in face_photos}
    for i, (name, yaw) in enumerate((("asj.jpg", 0.05), ("AFLW_image00046.jpg", -0.9)), start=1):
        shutil.copy(by_name[name], folder / f"image{i:05d}.jpg")
        truth = _truth_from(real_landmarks[name])
        scipy.io.savemat(folder / f"image{i:05d}.mat", {"pt3d_68": truth.T, "Pose_Para": [[0.0, yaw, 0.0, 0, 0, 0, 1]]})
    out = tmp_path / "report"
    assert main(["eval", "--real", str(folder), "--out", str(out), "--backend", "onnxruntime", "--sheet", "1"]) == 0
    printed = capsys.readouterr().out
    assert "MediaPipe found a face in 2" in printed and "0-30" in printed
    report = json.loads((out / "eval-real.json").read_text())
    assert report["summary"]["photos"] == 2 and report["summary"]["mediapipe_found"] == 2
    rows = {r["photo"]: r for r in report["per_photo"]}
    assert rows["image00001.jpg"]["bucket"] == "0-30" and rows["image00002.jpg"]["bucket"] == "30-60"
    # The truth is MediaPipe's own points, so its surface scores 0 where it is scored; ours and the mean face don't.
    frontal = rows["image00001.jpg"]
    assert frontal["surface_error"]["mediapipe"] < 1e-5
    assert 0.003 < frontal["surface_error"]["ours"] < 0.2
    assert 0.003 < frontal["surface_error"]["mean_face"] < 0.2
    # the ICT face fitted to those very points follows them closer than the rigidly posed mean face
    assert frontal["surface_error"]["ict_fit"] < 0.7 * frontal["surface_error"]["mean_face"]
    import cv2

    plot = cv2.imread(str(out / "surface_error_by_yaw.png"))
    sheet = cv2.imread(str(out / "photos.png"))
    assert plot is not None and plot.shape[0] > 200
    assert sheet is not None and sheet.shape == (160, 7 * 160, 3)
    assert sheet[:, 160:].max() > 100  # meshes drawn, not blank panels
