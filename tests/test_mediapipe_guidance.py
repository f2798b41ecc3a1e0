"""MediaPipe as guidance: its points on the training crops (``data annotate``), its depth map as an input
channel, the training items built from them, and the 71 -> 72 channel warm start. Real faces throughout."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from realtime_vrn.crop import CropTransform
from realtime_vrn.model.guidance import (MP_DEPTH_CHANNELS, NetworkInputs, landmark_heatmaps,
                                         mediapipe_depth_map, mediapipe_in_crop, network_input,
                                         uses_mediapipe_depth)
from realtime_vrn.model.network import VRN, VRNConfig

SIZE = 96


@pytest.fixture(scope="module")
def portrait():
    """The frontal bundled portrait: (image RGB, MediaPipe landmarks, 96-px crop)."""
    import cv2

    from realtime_vrn.landmarks import open_tracker
    from conftest import FACES

    rgb = np.ascontiguousarray(cv2.imread(str(FACES / "asj.jpg"))[:, :, ::-1])
    with open_tracker(static=True, smoothing=False) as tracker:
        lm = tracker.process(rgb, 0.0)
    assert lm is not None
    return rgb, lm, CropTransform.from_landmarks(lm.points68, size=SIZE)


def test_depth_map_interpolates_a_plane_exactly_and_is_zero_off_the_face(portrait):
    _, lm, crop = portrait
    pts = mediapipe_in_crop(lm.points, crop)
    pts[:, 2] = 0.25 * pts[:, 0] - 0.5 * pts[:, 1] + 3.0  # a tilted plane through the face's (x, y)
    depth = mediapipe_depth_map(pts, SIZE)
    assert depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
    ys, xs = np.nonzero(depth)
    assert 0.1 < len(ys) / SIZE**2 < 0.6  # the face, not the whole crop
    expected = np.clip(1 + (0.25 * xs - 0.5 * ys + 3.0 - pts[:468, 2].max()) / (SIZE / 2), 0.05, 1.0)
    exact = np.abs(depth[ys, xs] - expected) < 1e-5  # linear in a triangle: exact, also extrapolated at its edge
    assert exact.mean() > 0.99  # but for a few edge pixels of sliver triangles (bounded extrapolation)
    assert np.abs(depth[ys, xs] - expected).max() < 0.06
    assert depth[0, 0] == 0 and depth[-1, -1] == 0


def test_depth_map_of_a_real_face_puts_the_nose_in_front(portrait):
    _, lm, crop = portrait
    pts = mediapipe_in_crop(lm.points, crop)
    depth = mediapipe_depth_map(pts, SIZE)
    nose, cheek = np.round(pts[4, :2]).astype(int), np.round(pts[234, :2] * 0.8 + pts[4, :2] * 0.2).astype(int)
    assert depth[nose[1], nose[0]] > 0.95  # the nose tip is (nearly) the front-most point
    assert 0.05 < depth[cheek[1], cheek[0]] < depth[nose[1], nose[0]] - 0.1
    with pytest.raises(ValueError, match="478"):
        mediapipe_depth_map(pts[:100], SIZE)


def test_network_input_appends_the_depth_map_for_72_channel_models(portrait):
    rgb, lm, crop = portrait
    cfg = VRNConfig(input_size=SIZE, in_channels=MP_DEPTH_CHANNELS, features=16, stacks=1, depth_bins=20,
                    branch_blocks=1, inner_branch_blocks=1)
    assert uses_mediapipe_depth(cfg) and not uses_mediapipe_depth(VRNConfig(input_size=SIZE, in_channels=71))
    image = crop.warp(rgb)
    pts68 = crop.to_crop(lm.points68)
    mp = mediapipe_in_crop(lm.points, crop)
    x = network_input(image, cfg, pts68, mp)
    assert x.shape == (1, 72, SIZE, SIZE)
    np.testing.assert_array_equal(x[0, 3:71], landmark_heatmaps(pts68, SIZE))
    np.testing.assert_array_equal(x[0, 71], mediapipe_depth_map(mp, SIZE))
    assert not network_input(image, cfg, pts68, None)[0, 71].any()  # no MediaPipe face: a zero map


def test_a_guided_model_grows_a_depth_channel_that_starts_as_a_no_op(tmp_path, portrait):
    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint
    from realtime_vrn.training.train import init_from

    small = dict(input_size=SIZE, features=16, stacks=1, depth_bins=20, branch_blocks=1, inner_branch_blocks=1)
    torch.manual_seed(0)
    guided = VRN(VRNConfig(in_channels=71, **small)).eval()
    path = tmp_path / "guided.safetensors"
    save_checkpoint(path, guided, CheckpointMeta(source="test", licence="MIT"))
    grown = VRN(VRNConfig(in_channels=72, **small)).eval()
    init_from(grown, path)
    assert not grown.stem_conv.weight[:, 71].any()
    rgb, lm, crop = portrait
    x = torch.from_numpy(network_input(crop.warp(rgb), grown.cfg, crop.to_crop(lm.points68),
                                       mediapipe_in_crop(lm.points, crop)))
    with torch.no_grad():
        np.testing.assert_allclose(grown.forward_lowres(x).numpy(), guided.forward_lowres(x[:, :71]).numpy(),
                                   atol=1e-5)


def _write_shard(folder, rgb, crop):
    """A one-sample shard of a real face crop (depths: a box in the middle), in the shard file layout."""
    from realtime_vrn.training.dataset import config_json
    from realtime_vrn.training.synth import SynthConfig

    front = np.full((1, SIZE, SIZE), np.nan, np.float16)
    back = front.copy()
    front[0, 30:60, 30:60], back[0, 30:60, 30:60] = 80, 20
    np.savez(folder / "shard-0000000000.npz", config=np.array(config_json(SynthConfig(size=SIZE))),
             image=crop.warp(rgb)[None], front=front, back=back, landmarks=np.zeros((1, 68, 3), np.float32),
             crop_points=np.full((1, 68, 2), 40.0, np.float32), pose=np.zeros((1, 3), np.float32),
             seed=np.array([7], np.int64))


def test_annotate_finds_the_face_on_the_crop_where_mediapipe_finds_it_in_the_photo(tmp_path, portrait):
    from realtime_vrn.cli import main
    from realtime_vrn.training.annotate import sidecar_path

    rgb, lm, crop = portrait
    _write_shard(tmp_path, rgb, crop)
    assert main(["data", "annotate", str(tmp_path)]) == 0
    side = sidecar_path(tmp_path / "shard-0000000000.npz")
    points = np.load(side)["mp_points"]
    assert points.shape == (1, 478, 3)
    on_crop = points[0, :, :2]
    from_photo = crop.to_crop(lm.points[:, :2].astype(np.float64))
    # MediaPipe on the 96-px crop (upscaled x4) vs on the 700-px photo mapped into the crop: the same face,
    # within a pixel or two of the crop on average (a pixel-centre slip of the x4 mapping would add 0.4 px)
    err = np.linalg.norm(on_crop - from_photo, axis=1)
    assert np.median(err) < 1.5 and abs(np.mean(on_crop - from_photo)) < 1.0
    assert main(["data", "annotate", str(tmp_path)]) == 0  # nothing left to do: the sidecar stays
    assert np.array_equal(np.load(side)["mp_points"], points)


def test_training_items_use_mediapipe_points_and_depth_and_flip_them(tmp_path, portrait):
    from realtime_vrn.training.annotate import mediapipe_points68, sidecar_path
    from realtime_vrn.training.dataset import ShardDataset

    rgb, lm, crop = portrait
    _write_shard(tmp_path, rgb, crop)
    with pytest.raises(FileNotFoundError, match="data annotate"):
        ShardDataset(tmp_path, points="mediapipe")
    mp = mediapipe_in_crop(lm.points, crop)
    sidecar = mp.copy()
    sidecar[:, 2] = -sidecar[:, 2]  # sidecars keep MediaPipe's sign
    sidecar = sidecar.astype(np.float32).astype(np.float64)
    np.savez(sidecar_path(tmp_path / "shard-0000000000.npz"), mp_points=sidecar[None].astype(np.float32))
    plain = ShardDataset(tmp_path, flip_p=0.0, points="mediapipe", mp_depth=True)[0]
    np.testing.assert_array_equal(plain["points"].numpy(), mediapipe_points68(sidecar[None].astype(np.float32))[0])
    np.testing.assert_allclose(plain["mp_depth"][0].numpy(), mediapipe_depth_map(sidecar * [1, 1, -1], SIZE),
                               atol=1e-6)
    flipped = ShardDataset(tmp_path, flip_p=1.0, points="mediapipe", mp_depth=True)[0]
    np.testing.assert_array_equal(flipped["mp_depth"].numpy(), plain["mp_depth"].numpy()[:, :, ::-1])
    np.testing.assert_array_equal(flipped["image"].numpy(), plain["image"].numpy()[:, :, ::-1])
    synthetic = ShardDataset(tmp_path, flip_p=0.0)[0]
    assert "mp_depth" not in synthetic and np.all(synthetic["points"].numpy() == 40.0)


def test_heatmaps_are_the_full_gaussians_within_their_windows():
    """The 68 maps are written only near their points (issue 14: the network input at next to no cost): equal to
    the separable Gaussian exp(-d^2 / 2 sigma^2) computed everywhere, to 1e-9; points outside the crop or not finite
    give what the full Gaussian gives there (nothing), and a given output buffer is overwritten, not added to."""
    rng = np.random.default_rng(3)
    points = rng.uniform(-12, 108, (68, 2)).astype(np.float32)
    points[0], points[1], points[2] = (np.nan, 40.0), (50.25, 47.5), (-30.0, 200.0)
    grid = np.arange(96, dtype=np.float64)
    sigma = 1.0  # 2 px at 192 px
    full = (np.exp(-(grid[None, :, None] - points[:, 1, None, None]) ** 2 / (2 * sigma**2))
            * np.exp(-(grid[None, None, :] - points[:, 0, None, None]) ** 2 / (2 * sigma**2)))
    full[0] = 0.0
    out = np.full((68, 96, 96), 7.0, np.float32)
    maps = landmark_heatmaps(points, 96, out=out)
    assert maps is out and maps.dtype == np.float32
    np.testing.assert_allclose(maps, full, rtol=0, atol=1e-6)
    assert np.abs(maps - full)[full < 1e-3].max() < 1e-9  # the tails: exactly 0 only where the Gaussian is < 1e-9
    assert maps[1].max() == pytest.approx(np.exp(-(0.25**2 + 0.5**2) / 2), rel=1e-6)  # the peak between pixels
    assert not maps[2].any()  # far outside the crop


def test_heatmaps_without_numba_are_the_same_maps(monkeypatch):
    """The compiled pass and the NumPy route it replaces (kept for a machine where numba does not import) write
    the same windows (every zero where the other has one) and the same values to float32 rounding (their exp
    may differ in the last bit: at most 3 units of the last place of a product of two exps)."""
    import realtime_vrn.model.guidance as guidance

    assert guidance._compiled_heatmaps is not None  # numba is a dependency: the compiled loop is what runs
    rng = np.random.default_rng(5)
    points = rng.uniform(-12, 108, (68, 2)).astype(np.float32)
    points[4] = (np.inf, 3.0)
    points[5] = (np.nan, np.nan)
    points[6] = (3e30, -3e30)  # far beyond any window, and beyond int64
    points[7] = (95.5, 0.5)  # halves: rounded to even, as np.rint
    compiled = landmark_heatmaps(points, 96)
    monkeypatch.setattr(guidance, "_compiled_heatmaps", None)
    reference = landmark_heatmaps(points, 96, out=np.full((68, 96, 96), 7.0, np.float32))
    np.testing.assert_array_equal(compiled == 0, reference == 0)
    np.testing.assert_allclose(compiled, reference, rtol=4e-7, atol=0)
    assert not compiled[4:7].any()
    # (95.5, 0.5) rounds to pixel (96, 0): its window is x >= 96 - 7 (radius 6 sigma + 1 px at sigma 1)
    assert compiled[7, 0, 89:].all() and not compiled[7, 0, :89].any()


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_reused_network_inputs_equal_fresh_ones(monkeypatch, portrait, compiled):
    """NetworkInputs reuses a released array, clearing only its previous heatmap windows: over a stream of a
    real face's landmarks and awkward ones (moving, off the crop, not finite) every input equals
    network_input's, bit for bit, and the same array comes back once released (none while it is lent)."""
    import realtime_vrn.model.guidance as guidance

    if not compiled:
        monkeypatch.setattr(guidance, "_compiled_heatmaps", None)
    rgb, lm, crop = portrait
    cfg = VRNConfig(input_size=SIZE, in_channels=3 + 68)
    inputs = NetworkInputs(cfg)
    image = crop.warp(rgb)
    base = crop.to_crop(lm.points68)
    streams = [base, base + 1.7, base * 0.5, np.full((68, 2), -500.0), base[::-1].copy(), base + 40.0]
    streams[4][3] = np.nan
    first = None
    for i, points in enumerate(streams):
        batch = inputs.build(image, points)
        if first is None:
            first = batch
        else:
            assert batch is first  # released last time: reused
        np.testing.assert_array_equal(batch, network_input(image, cfg, points))
        other = inputs.build(255 - image, points + 3.0)  # a second one while the first is lent
        assert other is not batch
        np.testing.assert_array_equal(other, network_input(255 - image, cfg, points + 3.0))
        inputs.release(other)
        inputs.release(batch)
    inputs.release(first)  # a second release of the same array changes nothing
    assert inputs.build(image, base) is first
    del batch, other  # the test's own references (other is still in the pool, free)
    dropped = [weakref.ref(inputs.build(image, base)) for _ in range(3 * NetworkInputs.KEEP)]  # never released
    assert all(ref() is None for ref in dropped)  # not kept alive by the pool
    for _ in range(3 * NetworkInputs.KEEP):
        inputs.build(image, base)
    assert len(inputs._lent) <= 4 * NetworkInputs.KEEP + 1  # nor their records
