"""Synthetic data, ground-truth volumes, the training loop and the evaluation metric (all small and fast)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime_vrn.model.network import VRN, VRNConfig
from realtime_vrn.training import volumes
from realtime_vrn.training.dataset import FLIP_68, to_training_item
from realtime_vrn.training.evaluate import dense_nme, landmark_nme, summarise, SampleResult
from realtime_vrn.training.facemodel import default_npz
from realtime_vrn.training.train import TrainConfig, learning_rate, voxel_loss

needs_face_model = pytest.mark.skipif(not default_npz().is_file(), reason=f"ICT face model not at {default_npz()}")
TINY = VRNConfig(input_size=32, features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1,
                 depth_bins=24)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: one thread is faster, and two spin badly on a busy 2-core machine (30x measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- volumes


def test_volume_from_depths_fills_between_back_and_front():
    front = np.full((4, 4), np.nan, np.float32)
    back = np.full((4, 4), np.nan, np.float32)
    front[1, 2], back[1, 2] = 7.0, 3.0
    front[2, 2], back[2, 2] = 30.0, -5.0  # clipped to the volume
    vol = volumes.volume_from_depths(front, back, 10)
    assert vol.shape == (10, 4, 4) and vol.dtype == bool
    np.testing.assert_array_equal(np.flatnonzero(vol[:, 1, 2]), [3, 4, 5, 6, 7])
    assert vol[:, 2, 2].all()
    assert vol.sum() == 15
    t = volumes.target_from_depths(torch.from_numpy(front)[None], torch.from_numpy(back)[None], 10)
    np.testing.assert_array_equal(t[0].numpy().astype(bool), vol)


def test_front_surface_reads_the_first_crossing_from_the_camera():
    vol = np.zeros((10, 2, 2), np.float32)
    vol[:6, 0, 0] = 1.0          # occupied z 0..5 -> crossing between 5 and 6
    vol[2:4, 1, 1] = 1.0
    vol[8:, 1, 1] = 1.0          # nearest structure wins
    z = volumes.front_surface(vol)
    assert z[0, 0] == pytest.approx(5.5)
    assert z[1, 1] == pytest.approx(9.0)   # occupied up to the last voxel: no crossing above, top index
    assert np.isnan(z[0, 1])


# ------------------------------------------------------------------------------------------- dataset / train


def test_flip_permutation_is_an_involution_that_swaps_sides():
    np.testing.assert_array_equal(FLIP_68[FLIP_68], np.arange(68))
    assert FLIP_68[36] == 45 and FLIP_68[0] == 16 and FLIP_68[30] == 30 and FLIP_68[48] == 54


def test_training_item_flip_mirrors_image_depths_and_points():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    front = rng.random((8, 8)).astype(np.float32)
    pts = rng.random((68, 2)).astype(np.float32) * 7

    class Always:
        def random(self):
            return 0.0

    item = to_training_item(img, front, front, pts, Always(), flip_p=1.0)
    np.testing.assert_allclose(item["image"].numpy(), img[:, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(item["front"].numpy(), front[:, ::-1])
    np.testing.assert_allclose(item["points"][45, 0].item(), 7 - pts[36, 0], atol=1e-6)


def test_voxel_loss_is_small_for_the_right_answer_and_large_for_the_wrong_one():
    front = torch.full((1, 32, 32), 10.0)
    back = torch.full((1, 32, 32), 2.0)
    target = volumes.target_from_depths(front, back, 24)
    good = (target[:, :, ::4, ::4] * 2 - 1) * 20.0  # lowres grid, constant along x/y so upsampling is exact
    assert voxel_loss(good, front, back, "full").item() < 1e-6
    assert voxel_loss(-good, front, back, "lowres").item() > 10


def test_front_weight_emphasises_the_band_around_the_front_surface():
    from realtime_vrn.training.train import front_band_weight

    front = torch.full((1, 8, 8), float("nan"))
    back = torch.full((1, 8, 8), float("nan"))
    front[:, 2:6, 2:6], back[:, 2:6, 2:6] = 12.0, 2.0
    w = front_band_weight(front, 24, 4.0)
    assert w.shape == (1, 24, 8, 8)
    assert w[0, 12, 3, 3] == pytest.approx(5.0) and w[0, 0, 3, 3] < 1.01  # on the surface / far behind it
    assert torch.all(w[0, :, 0, 0] == 1.0)  # empty column
    logits = torch.zeros(1, 24, 2, 2)
    assert voxel_loss(logits, front, back, front_weight=4.0) == pytest.approx(voxel_loss(logits, front, back))
    # on a solid filling every column (so the low-res logits need no upsampling detail): an error at the front
    # surface costs more with the weight, the same error at the back plane less
    front, back = torch.full((1, 8, 8), 12.0), torch.full((1, 8, 8), 2.0)
    exact = (volumes.target_from_depths(front, back, 24)[:, :, ::4, ::4] * 2 - 1) * 20.0  # (1, 24, 2, 2) logits
    near, far = exact.clone(), exact.clone()
    near[0, 13:16] = 20.0  # the surface pushed 3 bins towards the camera
    far[0, 0:2] = 20.0     # 2 bins of solid added behind the back plane
    loss = lambda v, fw: voxel_loss(v, front, back, front_weight=fw)  # noqa: E731
    assert loss(near, 4.0) > loss(near, 0.0) and loss(far, 4.0) < loss(far, 0.0)


def test_learning_rate_warms_up_and_drops():
    cfg = TrainConfig(steps=1000, lr=1e-3)
    assert learning_rate(cfg, 0) < 1e-4
    assert learning_rate(cfg, 500) == pytest.approx(1e-3)
    assert learning_rate(cfg, 900) == pytest.approx(1e-4)
    assert learning_rate(TrainConfig(optimizer="rmsprop", lr=1e-4), 0) == pytest.approx(1e-4)


def test_train_config_round_trips_and_rejects_bad_values():
    cfg = TrainConfig(model=TINY)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="l2")
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)
    old = cfg.to_dict()
    del old["ema"], old["front_weight"]  # a run from before these options
    assert TrainConfig.from_dict(old) == cfg
    with pytest.raises(ValueError, match="front_weight"):
        TrainConfig(front_weight=-1.0)
    with pytest.raises(ValueError, match="front_weight needs loss='full'"):
        TrainConfig(front_weight=2.0, loss="lowres")  # refused, not silently ignored


def test_weight_average_is_the_exponential_moving_average():
    from realtime_vrn.training.train import weight_average

    net = VRN(TINY)
    avg = weight_average(net, 0.9)
    w1 = net.head_out.bias.detach().clone()
    avg.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net.head_out.bias.add_(1.0)
    avg.update_parameters(net)
    assert torch.allclose(avg.module.head_out.bias, 0.9 * w1 + 0.1 * (w1 + 1.0), atol=1e-6)


def test_a_tiny_network_fits_one_batch():
    torch.manual_seed(0)
    cfg = VRNConfig(input_size=16, features=8, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1,
                    depth_bins=8)
    net = VRN(cfg)
    front = torch.full((2, 16, 16), float("nan"))
    back = torch.full((2, 16, 16), float("nan"))
    front[:, 4:12, 4:12], back[:, 4:12, 4:12] = 6.0, 2.0
    x = torch.rand(2, 3, 16, 16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = voxel_loss(net.forward_lowres(x), front, back)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def _saved(net: VRN, path):
    """``net`` written as a package checkpoint at ``path`` (for warm starts); returns the path."""
    from realtime_vrn.model.checkpoint import save_checkpoint

    save_checkpoint(path, net, {"source": "test", "licence": "MIT", "description": path.stem})
    return path


def _warm_started(path, **changes) -> VRN:
    """A TINY variant (``changes`` to its configuration) initialised from the checkpoint at ``path``."""
    from realtime_vrn.training.train import init_from

    net = VRN(VRNConfig(**{**TINY.__dict__, **changes}))
    init_from(net, path)
    return net


def test_warm_start_copies_weights_and_grows_an_unguided_stem_for_guidance(tmp_path):
    from realtime_vrn.training.train import init_from

    torch.manual_seed(1)
    source = VRN(TINY).eval()
    path = _saved(source, tmp_path / "tiny.safetensors")

    same = _warm_started(path).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(x), source(x))

    guided = _warm_started(path, in_channels=3 + 68).eval()
    heatmaps = torch.rand(1, 68, 32, 32)  # zero stem weights: the guided net starts as the unguided one
    with torch.no_grad():
        torch.testing.assert_close(guided(torch.cat([x, heatmaps], 1)), source(x))

    other = VRN(VRNConfig(**{**TINY.__dict__, "features": 32}))  # every conv differs; the message names them
    refused = r"cannot initialise from .*tiny.safetensors: .* in tiny.safetensors, .* here \(\+\d+ more\)"
    with pytest.raises(ValueError, match=refused):
        init_from(other, path)


def test_warm_start_grows_more_hourglasses_that_start_as_the_source_network(tmp_path):
    from realtime_vrn.training.train import init_from

    torch.manual_seed(2)
    source = VRN(TINY)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the default init
    deeper = _warm_started(_saved(source, tmp_path / "one.safetensors"), stacks=3)
    x = torch.rand(2, 3, TINY.input_size, TINY.input_size)
    with torch.no_grad():
        assert torch.allclose(deeper.forward_lowres(x), source.forward_lowres(x), atol=1e-4)
    assert torch.equal(deeper.stacks[0].level.post.conv1.weight, source.stacks[0].level.post.conv1.weight)
    opt = torch.optim.SGD(deeper.parameters(), lr=0.1)
    deeper.forward_lowres(x).square().mean().backward()
    for stack in deeper.stacks[1:]:  # the new hourglasses' output scale learns from the first step...
        assert stack.lin2[1].weight.grad.abs().sum() > 0
    opt.step()
    opt.zero_grad()
    deeper.forward_lowres(x).square().mean().backward()
    for stack in deeper.stacks[1:]:  # ...and their inner layers from the second
        assert stack.level.upper[0].conv1.weight.grad.abs().sum() > 0
    fewer = VRN(TINY)  # shrinking is refused
    with pytest.raises(ValueError, match="stacks.1"):
        init_from(fewer, _saved(deeper, tmp_path / "three.safetensors"))


def test_warm_start_adds_the_refinement_head_starting_near_the_source(tmp_path):
    from realtime_vrn.model.network import upsample_logits
    from realtime_vrn.training.train import init_from

    torch.manual_seed(3)
    source = VRN(TINY)
    refined = _warm_started(_saved(source, tmp_path / "coarse.safetensors"), output_stride=2)
    x = torch.rand(2, 3, TINY.input_size, TINY.input_size)
    with torch.no_grad():
        coarse = upsample_logits(source.forward_lowres(x), TINY.input_size)
        fine_low = refined.forward_lowres(x)
        fine = upsample_logits(fine_low, TINY.input_size)
    assert fine_low.shape[-1] == TINY.input_size // 2
    # x2 then x2 instead of x4: equal at the corners (align_corners), a small fraction of the logits elsewhere
    torch.testing.assert_close(fine[..., ::31, ::31], coarse[..., ::31, ::31], atol=1e-5, rtol=0)
    assert (fine - coarse).abs().mean() < 0.1 * coarse.abs().mean()
    with pytest.raises(ValueError, match="refine"):  # and back is refused: the head would be dropped
        init_from(VRN(TINY), _saved(refined, tmp_path / "fine.safetensors"))


# ------------------------------------------------------------------------------------------- metric


def test_dense_nme_is_zero_for_a_perfect_prediction_and_ignores_a_z_offset():
    gx, gy = np.meshgrid(np.arange(40.0), np.arange(40.0))
    gt = np.column_stack([gx.ravel(), gy.ravel(), 0.2 * gx.ravel() + 5])  # a tilted plane
    lm = np.zeros((68, 3))
    lm[36], lm[45] = [0, 0, 0], [20, 0, 0]
    assert dense_nme(gt, gt, lm)[0] == pytest.approx(0.0)
    nme, shift = dense_nme(gt + [0, 0, 3.0], gt, lm)
    assert nme == pytest.approx(0.0, abs=1e-3) and shift == pytest.approx(-3.0, abs=1e-2)
    nme, _ = dense_nme(gt + [1.0, 0, 0], gt, lm)
    assert 0 < nme <= 1.0 / 20 + 1e-9
    assert dense_nme(np.zeros((0, 3)), gt, lm)[0] == 1.0


def test_nearest_surface_distance_is_exact_on_a_sphere_and_a_plane():
    import trimesh

    from realtime_vrn.training.evaluate import SurfaceDistance

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    surface = SurfaceDistance(sphere.vertices, sphere.faces)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for radius in (8.5, 10.0, 12.0):  # inside, on and outside the faceted sphere
        dist, closest = surface.nearest(directions * radius)
        want, want_dist, _ = trimesh.proximity.closest_point_naive(sphere, directions * radius)
        assert np.allclose(dist, want_dist, atol=1e-9) and np.allclose(closest, want, atol=1e-9)
        assert np.all(dist <= surface.nearest_vertex(directions * radius)[0] + 1e-12)
    # the facets sag below the true sphere by at most r (1 - cos(edge angle / 2)): well under a vertex spacing
    assert surface.nearest(directions * 10.0)[0].max() < 0.15 < surface.nearest_vertex(directions * 10.0)[0].mean()

    # a triangulated plane z = 0 and points 0.5 above it, between vertices: exactly 0.5 away
    gx, gy = np.meshgrid(np.arange(11.0), np.arange(11.0))
    verts = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(121)])
    quads = (np.arange(10)[:, None] * 11 + np.arange(10)[None, :]).ravel()
    faces = np.concatenate([np.column_stack([quads, quads + 1, quads + 12]), np.column_stack([quads, quads + 12, quads + 11])])
    points = np.column_stack([rng.uniform(1, 9, (200, 2)), np.full(200, 0.5)])
    dist, closest = SurfaceDistance(verts, faces).nearest(points)
    assert np.allclose(dist, 0.5) and np.allclose(closest[:, :2], points[:, :2])
    lm = np.zeros((68, 3))
    lm[36], lm[45] = [0, 0, 0], [10, 0, 0]
    nme, shift = dense_nme(verts, points - [0, 0, 0.5], lm, faces)  # on the plane: zero with faces...
    assert nme == pytest.approx(0.0, abs=1e-9) and shift == pytest.approx(0.0)
    assert dense_nme(verts, points - [0, 0, 0.5], lm)[0] > 0.02  # ...but not with nearest vertices


def test_landmark_nme_reads_depth_from_the_volume():
    vol = np.zeros((40, 16, 16), np.float32)
    vol[:21] = 1.0                      # front surface at depth index 20.5 -> z = 10.25 crop px
    lm = np.zeros((68, 3))
    lm[:, :2] = 8
    lm[:, 2] = 10.25
    lm[36, 0], lm[45, 0] = 2, 12
    assert landmark_nme(vol, lm, 0.0) == pytest.approx(0.0, abs=1e-6)
    assert landmark_nme(vol, lm, 1.0) == pytest.approx(0.1, abs=1e-6)


def test_summary_buckets_by_absolute_yaw():
    res = [SampleResult(0, -10, 0.02, 0.03, 10), SampleResult(1, 45, 0.04, 0.05, 10),
           SampleResult(2, -89, 0.06, 0.07, 10), SampleResult(3, 90, 0.08, 0.09, 0)]
    rep = summarise(res)
    assert rep["buckets"]["0-30"]["count"] == 1 and rep["buckets"]["60-90"]["count"] == 2
    assert rep["buckets"]["60-90"]["nme"] == pytest.approx(0.07)
    assert rep["nme"] == pytest.approx(0.05) and rep["misses"] == 1


# ------------------------------------------------------------------------------------------- rendering


@needs_face_model
def test_depth_raster_matches_a_numpy_square():
    from realtime_vrn.training.synth import SynthRasteriser

    # a square from crop x, y = 2..5 at depth 10, tilted in z along x: z = 10 + x
    v = np.array([[1.5, 1.5, 11.5], [5.5, 1.5, 15.5], [5.5, 5.5, 15.5], [1.5, 5.5, 11.5]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    with SynthRasteriser(8, 1) as r:
        front, back = r.depth_extremes(v, f, (100.0, -100.0))
    expected = np.full((8, 8), np.nan, np.float32)
    expected[2:6, 2:6] = 10 + np.arange(2, 6)[None, :]
    np.testing.assert_allclose(front, expected, atol=1e-3)
    np.testing.assert_allclose(back, expected, atol=1e-3)


@needs_face_model
def test_face_solid_is_closed():
    from realtime_vrn.training.facemodel import FaceModel
    from realtime_vrn.training.synth import FaceAssets, boundary_edges, face_solid

    model = FaceModel.load()
    assets = FaceAssets.build(model)
    assert len(assets.hole_edges) == 3  # two eyes and the mouth
    v, f = face_solid(model.neutral, assets)
    assert len(boundary_edges(f)) == 0
    assert v[:, 2].min() == pytest.approx(1.5)


@pytest.fixture(scope="module")
def generator():
    if not default_npz().is_file():
        pytest.skip("ICT face model missing")
    from realtime_vrn.training.synth import SynthConfig, SynthGenerator

    with SynthGenerator(SynthConfig(size=64, depth_bins=64)) as gen:
        yield gen


def test_synthetic_sample_is_deterministic_and_consistent(generator):
    a, b = generator.sample(7), generator.sample(7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.front, b.front)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert not np.array_equal(generator.sample(8).image, a.image)
    # the crop rule puts the tracker points' mean at the crop centre and their box at 90/192 of the side
    centre = a.crop_points.mean(axis=0)
    np.testing.assert_allclose(centre, [31.5, 31.5], atol=0.6)
    span = np.ptp(a.crop_points, axis=0)
    assert np.sqrt(span[0] * span[1]) == pytest.approx(90 * 64 / 192, rel=1e-3)
    # the volume's front-most point sits at the configured index and the front is in front of the back
    assert np.nanmax(a.front) == pytest.approx(generator.cfg.front_index, abs=1.0)
    ok = ~np.isnan(a.front)
    assert ok.sum() > 200 and (a.front[ok] >= a.back[ok]).all()


def test_camera_depth_is_measured_along_the_line_of_sight():
    from realtime_vrn.training.synth import Camera

    axis = np.array([0.6, 0.0, -0.8])  # the face is 37 deg off the optical axis, to the right
    args = dict(focal=800.0, centre=(320.0, 240.0), rotation=np.eye(3), t=np.array([30.0, 0.0, -40.0]))
    sight, optical = Camera(**args, axis=axis), Camera(**args)
    scale = 800.0 / 40.0  # px per cm at the head's distance
    towards = -2.0 * axis[None]  # 2 cm from the head's origin towards the camera, along the ray
    across = np.array([[0.8, 0.0, 0.6]])  # 1 cm perpendicular to the ray
    assert sight.project(np.zeros((1, 3)))[0, 2] == pytest.approx(0.0, abs=1e-4)
    assert sight.project(towards)[0, 2] == pytest.approx(2.0 * scale, rel=1e-5)
    assert sight.project(across)[0, 2] == pytest.approx(0.0, abs=1e-4)
    assert optical.project(towards)[0, 2] == pytest.approx(1.6 * scale, rel=1e-5)  # only the z component
    np.testing.assert_array_equal(sight.project(across)[:, :2], optical.project(across)[:, :2])  # same image


@needs_face_model
def test_ground_truth_depth_axis_is_the_line_of_sight_unless_asked_otherwise():
    from realtime_vrn.training.dataset import config_from_json, config_json
    from realtime_vrn.training.synth import SynthConfig, SynthGenerator

    with pytest.raises(ValueError, match="depth_axis"):
        SynthConfig(depth_axis="diagonal")
    old = json.loads(config_json(SynthConfig()))
    del old["depth_axis"]  # shards of sessions 1-3
    assert config_from_json(json.dumps(old)).depth_axis == "optical_axis"
    samples = {}
    for axis in ("line_of_sight", "optical_axis"):
        with SynthGenerator(SynthConfig(size=64, depth_bins=64, depth_axis=axis)) as gen:
            samples[axis] = gen.sample(5)
    a, b = samples["line_of_sight"], samples["optical_axis"]
    np.testing.assert_array_equal(a.crop_points, b.crop_points)  # the same view of the same face...
    np.testing.assert_allclose(a.face_vertices[:, :2], b.face_vertices[:, :2])
    assert np.mean(np.abs(a.image.astype(int) - b.image.astype(int))) < 1.0
    assert np.abs(a.face_vertices[:, 2] - b.face_vertices[:, 2]).max() > 1.0  # ...with depths turned


def test_synthetic_face_vertices_lie_on_the_ground_truth_front(generator):
    s = generator.sample(3)
    if abs(s.pose[0]) > 30:
        s = generator.sample(4)
    xy = np.rint(s.face_vertices[:, :2]).astype(int)
    inside = (xy >= 0).all(axis=1) & (xy < 64).all(axis=1)
    front = s.front[xy[inside, 1], xy[inside, 0]]
    z = s.face_vertices[inside, 2]
    visible = z >= front - 3.0
    assert visible.mean() > 0.5
    assert np.nanmedian(np.abs(front[visible] - z[visible])) < 1.5


def test_train_resumes_and_oracle_eval_is_near_zero(generator, tmp_path):
    from realtime_vrn.training.dataset import stack_samples
    from realtime_vrn.training.evaluate import evaluate
    from realtime_vrn.training.train import load_trained, train

    model = VRNConfig(input_size=64, features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1,
                      depth_bins=64)
    data = tmp_path / "shards"
    data.mkdir()
    samples = [generator.sample(seed) for seed in range(4)]
    arrays = stack_samples(samples, with_vertices=True)
    from realtime_vrn.training.dataset import config_json

    np.savez(data / "shard-0000000000.npz", config=np.array(config_json(generator.cfg)), **arrays)
    cfg = TrainConfig(out=str(tmp_path / "run"), data=str(data), model=model, steps=2, batch_size=2)
    state = train(cfg, progress=False)
    cfg3 = TrainConfig(out=str(tmp_path / "run"), data=str(data), model=model, steps=3, batch_size=2)
    train(cfg3, progress=False)
    net, meta = load_trained(state)
    assert meta["step"] == 3 and not meta["averaged"]
    report = evaluate(net, arrays, oracle=True, limit=2)
    assert report["samples"] == 2 and report["nme"] < 0.04  # binary-volume floor (~0.02 at 96 px)
    report = evaluate(net, arrays, limit=2)
    assert np.isfinite(report["nme"]) and report["nme"] > 0  # untrained: any finite score


def test_weight_average_is_saved_resumed_and_used_for_inference(generator, tmp_path):
    from realtime_vrn.training.dataset import config_json, stack_samples
    from realtime_vrn.training.train import export_model, init_from, load_trained, train

    model = VRNConfig(input_size=64, features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1,
                      depth_bins=64)
    data = tmp_path / "shards"
    data.mkdir()
    arrays = stack_samples([generator.sample(seed) for seed in range(2)])
    np.savez(data / "shard-0000000000.npz", config=np.array(config_json(generator.cfg)), **arrays)
    run = dict(out=str(tmp_path / "run"), data=str(data), model=model, batch_size=2, lr=1e-2, ema=0.5)
    state = train(TrainConfig(steps=2, **run), progress=False)
    assert torch.load(state, weights_only=False)["ema"]["n_averaged"] == 2
    train(TrainConfig(steps=4, **run), progress=False)  # resumes the average too
    saved = torch.load(state, weights_only=False)
    assert saved["ema"]["n_averaged"] == 4
    averaged, meta = load_trained(state)
    raw, _ = load_trained(state, averaged=False)
    assert meta["averaged"]
    assert torch.equal(averaged.head_out.weight, saved["ema"]["module.head_out.weight"])
    assert not torch.equal(averaged.head_out.weight, raw.head_out.weight)
    # export and warm start take the average as well
    from realtime_vrn.model.checkpoint import load_checkpoint

    exported = load_checkpoint(export_model(state, tmp_path / "m.safetensors", card=False))
    assert torch.equal(exported.state_dict["head_out.weight"], averaged.head_out.weight)
    assert "weight average" in exported.meta.source
    fresh = VRN(model)
    init_from(fresh, state)
    assert torch.equal(fresh.head_out.weight, averaged.head_out.weight)


def test_cli_parses_and_reports_user_errors(tmp_path):
    from realtime_vrn.errors import ConfigError
    from realtime_vrn.training import cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(["train", "--out", str(tmp_path), "--size", "64", "--guided", "--export",
                              str(tmp_path / "m.safetensors")])
    with pytest.raises(ConfigError, match="no training state"):
        args.func(args)
    args = parser.parse_args(["eval", str(tmp_path / "none.pt"), "--heldout", str(tmp_path)])
    with pytest.raises(ConfigError, match="no held-out shards"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "0"])
    from realtime_vrn.training.facemodel import FaceModelError

    args = parser.parse_args(["data", "render", str(tmp_path / "shards"), "--count", "1",
                              "--face-model", str(tmp_path / "nowhere.npz")])
    with pytest.raises(FaceModelError, match="nowhere.npz"):  # the option is honoured, not ignored
        args.func(args)
    args = parser.parse_args(["train", "--out", str(tmp_path / "r"), "--ema", "1.5"])
    with pytest.raises(ConfigError, match="ema"):
        args.func(args)


def test_guided_batches_stack_rgb_and_68_heatmaps():
    from realtime_vrn.training.train import network_batch

    cfg = VRNConfig(input_size=32, in_channels=71, features=16, stacks=1, levels=1, branch_blocks=1,
                    inner_branch_blocks=1, depth_bins=8)
    pts = torch.full((2, 68, 2), 10.0)
    pts[:, 30] = torch.tensor([20.0, 5.0])
    x = network_batch({"image": torch.rand(2, 3, 32, 32), "points": pts}, cfg, torch.device("cpu"))
    assert x.shape == (2, 71, 32, 32)
    assert x[0, 3 + 30, 5, 20].item() == pytest.approx(1.0)
    assert VRN(cfg).forward_lowres(x).shape == (2, 8, 8, 8)


def test_landmarks_hidden_behind_the_face_are_not_scored():
    from realtime_vrn.training.evaluate import visible_landmarks

    front = np.full((16, 16), 20.0, np.float32)     # front surface at z = 10 crop px everywhere
    lm = np.zeros((68, 3))
    lm[:, :2] = 8
    lm[:, 2] = 10.0
    lm[:10, 2] = 4.0                                # hidden 6 px behind the surface
    vis = visible_landmarks(front, lm)
    assert vis.sum() == 58 and not vis[:10].any()


def test_the_face_model_path_comes_from_the_environment_or_the_caller(monkeypatch, tmp_path):
    """No shared path is baked into the package: without REALTIME_VRN_SHARED and without a path, one clear error
    that says what to set; with it, the model is looked for inside that folder."""
    from realtime_vrn.training.facemodel import FaceModel, FaceModelError, default_npz

    monkeypatch.delenv("REALTIME_VRN_SHARED", raising=False)
    with pytest.raises(FaceModelError, match="set REALTIME_VRN_SHARED"):
        FaceModel.load()
    with pytest.raises(FaceModelError, match="set REALTIME_VRN_SHARED"):
        FaceModel.load(None)
    monkeypatch.setenv("REALTIME_VRN_SHARED", str(tmp_path))
    assert default_npz() == tmp_path / "data" / "ict-facekit" / "ict_face_model.npz"
    with pytest.raises(FaceModelError, match="not found at .*ict_face_model.npz"):
        FaceModel.load()


def test_the_package_names_no_shared_folder():
    """Shipped code reads the shared data's place from REALTIME_VRN_SHARED, never from a path beside the checkout."""
    package = Path(__file__).resolve().parents[1] / "realtime_vrn"
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if re.search(r"""parents\[\d\]\s*/\s*["']shared["']""", p.read_text(encoding="utf-8"))]
    assert not offenders


def test_the_core_runs_without_the_train_extra_and_eval_names_it(tmp_path):
    """Without the ``[train]`` extra (trimesh, matplotlib made unimportable) every module outside training/
    imports, and ``realtime-vrn eval`` refuses in one line that names the extra, before loading anything."""
    import subprocess
    import sys

    package = Path(__file__).resolve().parents[1] / "realtime_vrn"
    core = sorted(".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
                  for p in package.rglob("*.py") if "training" not in p.parts and p.stem != "__main__")
    code = ("import importlib, sys\n"
            "from realtime_vrn.training.cli import TRAIN_EXTRA\n"
            "for name in TRAIN_EXTRA:\n    sys.modules[name] = None\n"
            "for name in sys.argv[1:]:\n    importlib.import_module(name)\n"
            "from realtime_vrn.cli import main\n"
            f"sys.exit(main(['eval', 'model.safetensors', '--heldout', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code, *core], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'realtime-vrn[train]'" in lines[0], result.stderr
