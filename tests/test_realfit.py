"""Real photos with the ICT face fitted to MediaPipe's points (training/realfit.py): correspondence, fit, samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model(ict_model):
    return ict_model


@pytest.fixture(scope="module")
def correspondence(model):
    """468 face-area vertices spread over the inner face (a stand-in for the voted correspondence)."""
    from realtime_vrn.training.synth import FACE_LAST_VERTEX

    v = model.neutral[: FACE_LAST_VERTEX + 1]
    lm = model.neutral[model.landmarks68]
    lo, hi = lm[:, :2].min(axis=0), lm[:, :2].max(axis=0)
    inner = np.flatnonzero(((v[:, :2] > lo) & (v[:, :2] < hi)).all(axis=1) & (v[:, 2] > lm[:, 2].min()))
    # seen from the front: no vertex within 0.5 cm sideways is 1 cm nearer (MediaPipe's points are on the skin)
    from scipy.spatial import cKDTree

    tree = cKDTree(v[:, :2])
    seen = [i for i in inner if v[tree.query_ball_point(v[i, :2], 0.5), 2].max() < v[i, 2] + 1.0]
    seen = np.asarray(seen)
    return seen[np.linspace(0, seen.size - 1, 468).astype(int)].astype(np.int32)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    from realtime_vrn.training.synth import rotation_matrix

    return rotation_matrix(yaw, pitch, 0.0).astype(np.float64)


def _mediapipe_points(vertices: np.ndarray, ids: np.ndarray, rot: np.ndarray, scale: float,
                      centre=(320.0, 240.0)) -> np.ndarray:
    """(478, 3) MediaPipe-shaped points: the vertices ``ids`` posed (image y down, z smaller nearer)."""
    cam = scale * (vertices[ids].astype(np.float64) @ rot.T)
    pts = np.zeros((478, 3))
    pts[:468] = np.column_stack([cam[:, 0] + centre[0], -cam[:, 1] + centre[1], -cam[:, 2]])
    pts[468:] = pts[:10]
    return pts


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (25.0, -10.0), (-40.0, 8.0)])
def test_fit_recovers_a_posed_face_of_the_model(model, correspondence, yaw, pitch):
    """Points made from a face of the model itself: the fit lands on them and gives back the face and the yaw."""
    from realtime_vrn.training.realfit import Fitter

    rng = np.random.default_rng(3)
    identity = np.zeros(model.n_identities, np.float32)
    identity[:20] = rng.normal(0, 0.8, 20)
    expression = np.zeros(model.n_expressions, np.float32)
    expression[model.expression_index(model.expression_names[5])] = 0.6
    truth = model.vertices(identity, expression)
    rot = _rotation(yaw, pitch)
    points = _mediapipe_points(truth, correspondence, rot, scale=10.0)

    fitter = Fitter(model, correspondence, n_identity=60, z_weight=1.0, identity_reg=1e-4, expression_reg=1e-4,
                    iterations=10)
    fit = fitter.fit(points)
    assert fit.rms_px < 0.5                             # px, on a face about 150 px wide
    assert fit.yaw == pytest.approx(yaw, abs=0.6)
    posed = fitter.project(fitter.head(fit), fit)
    cam = 10.0 * (truth.astype(np.float64) @ rot.T)
    want = np.column_stack([cam[:, 0] + 320.0, -cam[:, 1] + 240.0, cam[:, 2]])   # z larger nearer
    inner = correspondence
    assert np.abs(posed[inner, :2] - want[inner, :2]).max() < 1.5
    dz = posed[inner, 2] - want[inner, 2]
    assert np.abs(dz - dz.mean()).max() < 1.5          # px of depth, mean removed

    mean_face = Fitter(model, correspondence, n_identity=0, expression_reg=1e9).fit(points)
    assert mean_face.rms_px > 3 * fit.rms_px             # the weights are what makes it fit


def test_correspondence_votes_the_vertex_under_each_point(model, correspondence):
    """Rendered faces whose MediaPipe points sit exactly on known vertices: the vote returns those vertices."""
    from realtime_vrn.training.realfit import mediapipe_correspondence
    from realtime_vrn.training.synth import FACE_LAST_VERTEX

    n_face = FACE_LAST_VERTEX + 1
    verts, points = [], []
    for scale in (6.0, 8.0, 10.0):
        v = model.neutral[:n_face].astype(np.float64) * scale
        crop = np.column_stack([v[:, 0] + 48, -v[:, 1] + 48, 2 * v[:, 2]]).astype(np.float32)
        verts.append(crop)
        pts = np.zeros((478, 3), np.float32)
        pts[:468, :2] = crop[correspondence, :2]
        points.append(pts)
    pose = np.zeros((3, 3), np.float32)
    got = mediapipe_correspondence(np.stack(verts), np.stack(points), pose, model.neutral)
    # the vote lands on the vertex, or on one at the same place on the neutral face (coincident vertices)
    dist = np.linalg.norm(model.neutral[got] - model.neutral[correspondence], axis=1)
    assert (dist < 1e-4).mean() > 0.97
    assert dist.max() < 1.0                                # cm (a lid or lip fold seen edge-on)


def test_the_packaged_correspondence_puts_mediapipe_inner_landmarks_on_the_ict_ones(model):
    """The shipped table: 468 face-area vertices; MediaPipe's inner iBUG points (brows, eyes, nose, mouth) land
    within 1.2 cm of the ICT model's own landmark vertices on the neutral face (median within 0.6 cm)."""
    from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68
    from realtime_vrn.training.realfit import packaged_correspondence
    from realtime_vrn.training.synth import FACE_LAST_VERTEX

    corr = packaged_correspondence()
    assert corr.shape == (468,) and corr.dtype == np.int32
    assert corr.min() >= 0 and corr.max() <= FACE_LAST_VERTEX and len(np.unique(corr)) > 440
    mapped = corr[list(MEDIAPIPE_TO_IBUG68)]
    d = np.linalg.norm(model.neutral[mapped] - model.neutral[model.landmarks68], axis=1)[17:]
    assert d.max() < 1.2 and np.median(d) < 0.6


def test_a_real_photo_sample_is_the_pipeline_crop_with_the_fitted_face_in_it(model):
    """asj.jpg (a real face): the image is the crop the pipeline cuts from MediaPipe's 68 points, the guidance points
    are those points, and the ground-truth volume's front surface passes through the fitted landmarks."""
    import cv2

    from realtime_vrn.crop import CropTransform
    from realtime_vrn.landmarks.registry import open_backend
    from realtime_vrn.landmarks.ibug68 import to_ibug68
    from realtime_vrn.training.realfit import RealSampler, packaged_correspondence
    from realtime_vrn.training.synth import SynthConfig
    from realtime_vrn.training.volumes import volume_from_depths

    image = np.ascontiguousarray(cv2.imread(str(DATA / "faces" / "asj.jpg"))[:, :, ::-1])
    with open_backend("auto", static=True, max_faces=1) as mesh:
        (points,) = mesh.detect(image, 0.0)
    cfg = SynthConfig()
    with RealSampler(cfg, model, packaged_correspondence()) as sampler:
        fit = sampler.fit(points, image.shape)
        assert fit is not None and fit.rms_px < 0.04 * 150
        cut = image[:, : int(points[:, 0].mean())]                   # the face's right half off the image
        assert sampler.fit(points, cut.shape) is None
        s0 = sampler.sample(image, points, fit, seed=7, jitter=False)
        s1 = sampler.sample(image, points, fit, seed=8, jitter=True)
    crop = CropTransform.from_landmarks(to_ibug68(points)[:, :2].astype(np.float32), size=cfg.size)
    np.testing.assert_array_equal(s0.image, crop.warp(image))
    np.testing.assert_allclose(s0.crop_points, crop.to_crop(to_ibug68(points)[:, :2]), atol=1e-3)
    assert not np.allclose(s1.crop_points, s0.crop_points)       # jittered points, jittered crop
    assert s0.image.shape == (96, 96, 3) and s0.image.dtype == np.uint8

    # the volume's front surface passes through the inner landmarks (within a voxel and a pixel's slope)
    vol = volume_from_depths(s0.front, s0.back, cfg.depth_bins)
    assert vol.any() and s0.front[np.isfinite(s0.front)].max() <= cfg.front_index + 1
    inner = s0.landmarks[27:36]                                  # nose: always on the surface, never in a hole
    x, y = np.round(inner[:, 0]).astype(int), np.round(inner[:, 1]).astype(int)
    assert np.abs(s0.front[y, x] - inner[:, 2]).max() < 3.0
    # the fitted face sits on MediaPipe's points: the vertices under its eye and mouth corners within 3% of the
    # box; the ICT model's own corner landmarks within 6% (the two define the corners a few mm apart)
    from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68

    corners = [36, 39, 42, 45, 48, 54]
    box = np.sqrt(np.prod(np.ptp(s0.crop_points, axis=0)))
    under = s0.face_vertices[packaged_correspondence()[[MEDIAPIPE_TO_IBUG68[c] for c in corners]], :2]
    assert np.linalg.norm(under - s0.crop_points[corners], axis=1).max() < 0.03 * box
    assert np.linalg.norm(s0.landmarks[corners, :2] - s0.crop_points[corners], axis=1).max() < 0.06 * box


def test_photo_fit_shards_mix_with_renders_and_name_the_photos_in_the_licence(tmp_path):
    """A folder with render shards and photo-fit shards trains as one set; the weights' licence names the photos."""
    from realtime_vrn.training.dataset import ShardDataset, config_json
    from realtime_vrn.training.synth import SynthConfig
    from realtime_vrn.training.train import TRAINED_LICENCE_REAL_PHOTOS, training_licence

    def shard(name: str, cfg: SynthConfig, first: int, **extra) -> None:
        n, s = 2, cfg.size
        front = np.full((n, s, s), np.nan, np.float16)
        front[:, 40:50, 40:50] = 90
        np.savez(tmp_path / name, config=np.array(config_json(cfg)), image=np.zeros((n, s, s, 3), np.uint8),
                 front=front, back=np.where(np.isfinite(front), 10, np.nan).astype(np.float16),
                 landmarks=np.zeros((n, 68, 3), np.float32), crop_points=np.full((n, 68, 2), 48, np.float32),
                 pose=np.zeros((n, 3), np.float32), seed=np.arange(first, first + n), **extra)

    shard("shard-0000000000.npz", SynthConfig(skin_bank="bank.npz", real_skin=0.7), 0)
    shard("shard-2000000000.npz", SynthConfig(), 2_000_000_000, source=np.array("photo-fit"))
    ds = ShardDataset(tmp_path, flip_p=0.0)
    assert len(ds) == 4
    item = ds[3]                                                   # a photo-fit sample, as a render's
    assert item["image"].shape == (3, 96, 96) and item["front"].shape == (96, 96)
    assert float(item["front"][45, 45]) == 90.0
    assert training_licence(str(tmp_path)) == TRAINED_LICENCE_REAL_PHOTOS
    assert "faces-pool" in TRAINED_LICENCE_REAL_PHOTOS and "no photo is shipped" in TRAINED_LICENCE_REAL_PHOTOS

    shard("shard-0000000500.npz", SynthConfig(size=128), 500)
    with pytest.raises(ValueError, match="128 px"):
        ShardDataset(tmp_path, flip_p=0.0)


def test_data_fit_without_annotated_renders_says_what_to_run(tmp_path, capsys):
    from realtime_vrn.cli import main

    (tmp_path / "photos").mkdir()
    (tmp_path / "renders").mkdir()
    code = main(["data", "fit", str(tmp_path / "out"), str(tmp_path / "photos"),
                 "--renders", str(tmp_path / "renders")])
    err = capsys.readouterr().err
    assert code != 0
    assert "data annotate" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
