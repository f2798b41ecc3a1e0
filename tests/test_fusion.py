"""The surface's MediaPipe fusion (realtime_vrn/surface/fusion.py): exact answers on planes laid over a real face's
MediaPipe outline, and the shipped model's surface on a real photo moved halfway to MediaPipe's."""

from __future__ import annotations

import numpy as np
import pytest

from realtime_vrn.errors import ConfigError
from realtime_vrn.model.guidance import mediapipe_in_crop
from realtime_vrn.surface.fusion import DepthFusion, depth_field, front_depth, fuse_depth
from realtime_vrn.surface.mesh import Mesh

SIZE = 96


def plane_a(x, y):  # our surface: a tilted plane (crop px, larger nearer)
    return 40.0 + 0.10 * x - 0.05 * y


def plane_b(x, y):  # MediaPipe's surface: another tilt, another origin
    return -7.0 - 0.20 * x + 0.15 * y


def sheet(z_of) -> Mesh:
    """A sheet of triangles with a vertex at every pixel centre of the crop, z = z_of(x, y), normals of the plane."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    vertices = np.column_stack([xs.ravel(), ys.ravel(), z_of(xs, ys).ravel()]).astype(np.float32)
    i = np.arange(SIZE * SIZE).reshape(SIZE, SIZE)[:-1, :-1].ravel()
    # wound as the extractors wind: cross(v1 - v0, v2 - v0) along the outward normal, +z (towards the viewer)
    faces = np.concatenate([np.column_stack([i, i + 1, i + SIZE]), np.column_stack([i + 1, i + SIZE + 1, i + SIZE])])
    gx, gy = z_of(1.0, 0.0) - z_of(0.0, 0.0), z_of(0.0, 1.0) - z_of(0.0, 0.0)
    normal = np.array([-gx, -gy, 1.0]) / np.linalg.norm([-gx, -gy, 1.0])
    return Mesh(vertices=vertices, faces=faces.astype(np.int32), normals=np.tile(normal, (len(vertices), 1))
                .astype(np.float32))


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    """MediaPipe's 478 points on a real photo and the crop the pipeline cuts around them."""
    from realtime_vrn.crop import CropTransform
    from realtime_vrn.landmarks import open_tracker

    with open_tracker(static=True) as tracker:
        found = tracker.process(astronaut, 0.0)
    assert found is not None
    return found, CropTransform.from_landmarks(found.points68, size=SIZE)


def test_front_depth_keeps_the_nearest_triangle():
    near = [[0, 0, 5], [8, 0, 5], [0, 8, 5]]  # z = 5 over the lower-left half
    tilted = [[0, 0, 0], [8, 0, 8], [0, 8, 0]]  # z = x over the same half: nearer than 5 where x > 5
    depth = front_depth(np.array(near + tilted, np.float32), np.array([[0, 1, 2], [3, 4, 5]]), 10)
    assert depth[0, 0] == 5 and depth[2, 4] == 5 and depth[1, 6] == 6 and depth[0, 8] == 8
    assert depth[5, 5] == -np.inf and depth[9, 9] == -np.inf  # beyond the diagonal x + y = 8: nothing
    assert front_depth(np.array(near, np.float32), np.array([[0, 2, 1]]), 10)[2, 2] == 5  # either winding


def test_depth_field_is_the_difference_less_its_median():
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    ours = plane_a(xs, ys).astype(np.float32)
    disk = (xs - 48) ** 2 + (ys - 40) ** 2 < 25**2
    theirs = np.where(disk, plane_b(xs, ys), -np.inf).astype(np.float32)
    field = depth_field(ours, theirs, 1.5)
    diff = plane_b(xs, ys) - plane_a(xs, ys)
    np.testing.assert_allclose(field[disk], (diff - np.median(diff[disk]))[disk], atol=1e-4)
    far = (xs - 48) ** 2 + (ys - 40) ** 2 > 35**2  # > 6 sigma beyond the disk's edge
    assert np.all(field[far] == 0)
    tiny = np.where((xs < 5) & (ys < 5), plane_b(xs, ys), -np.inf).astype(np.float32)  # 25 common pixels
    assert depth_field(ours, tiny, 1.5) is None


@pytest.mark.parametrize("weight", [0.25, 0.5, 1.0])
def test_fused_plane_is_the_weighted_average_inside_mediapipes_outline(astronaut_face, weight):
    found, crop = astronaut_face
    mp = mediapipe_in_crop(found.points, crop)
    mp[:, 2] = plane_b(mp[:, 0], mp[:, 1])  # MediaPipe's real outline and openings, its depth a plane
    mesh = sheet(plane_a)
    covered = np.isfinite(front_depth(mp[:468], _triangles(), SIZE))
    assert 0.2 < covered.mean() < 0.9  # the face covers part of the crop
    fused = fuse_depth(mesh, mp, SIZE, weight)

    x, y = mesh.vertices[:, 0].astype(int), mesh.vertices[:, 1].astype(int)
    ys, xs = np.nonzero(covered)
    offset = np.median(plane_b(xs, ys) - plane_a(xs, ys))
    px, py = mesh.vertices[:, 0], mesh.vertices[:, 1]
    expected = plane_a(px, py) + weight * (plane_b(px, py) - plane_a(px, py) - offset)
    inside = covered[y, x]
    np.testing.assert_allclose(fused.vertices[inside, 2], expected[inside], atol=2e-3)
    np.testing.assert_array_equal(fused.vertices[:, :2], mesh.vertices[:, :2])  # moved along z only
    assert fused.faces is mesh.faces and fused.frame == "crop"
    # normals: those of the averaged plane where the field's neighbours are all inside
    core = covered & np.roll(covered, 1, 0) & np.roll(covered, -1, 0) & np.roll(covered, 1, 1) & np.roll(covered, -1, 1)
    gx = 0.10 + weight * (-0.20 - 0.10)
    gy = -0.05 + weight * (0.15 + 0.05)
    normal = np.array([-gx, -gy, 1.0]) / np.linalg.norm([-gx, -gy, 1.0])
    np.testing.assert_allclose(fused.normals[core[y, x]], np.tile(normal, (int(core[y, x].sum()), 1)), atol=1e-4)
    # far beyond MediaPipe's outline our surface is left as it was
    from scipy.ndimage import distance_transform_edt

    far = distance_transform_edt(~covered)[y, x] > 10
    assert far.sum() > 100
    np.testing.assert_array_equal(fused.vertices[far, 2], mesh.vertices[far, 2])


def test_weight_zero_or_no_overlap_leaves_the_mesh(astronaut_face):
    found, crop = astronaut_face
    mp = mediapipe_in_crop(found.points, crop)
    mesh = sheet(plane_a)
    assert fuse_depth(mesh, mp, SIZE, 0.0) is mesh
    away = mp.copy()
    away[:, :2] += 500  # MediaPipe's face entirely outside the crop
    assert fuse_depth(mesh, away, SIZE, 0.5) is mesh
    assert fuse_depth(Mesh.empty(), mp, SIZE, 0.5).is_empty
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse_depth(mesh, mp, SIZE, 1.5)
    with pytest.raises(ValueError, match="478, 3"):
        fuse_depth(mesh, mp[:100], SIZE, 0.5)


def test_the_shipped_models_surface_moves_halfway_to_mediapipes(astronaut):
    """A real photo through the pipeline's stages with the shipped model: at MediaPipe's inner landmarks the fused
    surface's relief lies between the network's and MediaPipe's, near their average."""
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.pipeline import Reconstructor
    from realtime_vrn.sources.base import Frame
    from realtime_vrn.training.realface import mediapipe_surface, sample_front
    from realtime_vrn.weights.registry import resolve_weights

    weights = resolve_weights(None, None)
    cfg = read_checkpoint_header(weights).cfg
    with open_backend("auto", weights) as backend, open_tracker(static=True) as tracker:
        alone = Reconstructor(tracker, backend, cfg).process(Frame(astronaut, 0, 0.0))
        fused = Reconstructor(tracker, backend, cfg, fusion=DepthFusion(cfg.input_size, 0.5)).process(
            Frame(astronaut, 0, 0.0))
    np.testing.assert_array_equal(fused.mesh.faces, alone.mesh.faces)
    np.testing.assert_array_equal(fused.mesh.vertices[:, :2], alone.mesh.vertices[:, :2])
    assert np.abs(fused.mesh.vertices[:, 2] - alone.mesh.vertices[:, 2]).max() > 0.5  # pixels: it did move

    xy = alone.landmarks.points68[17:].astype(np.float64)
    z = {"network": sample_front(alone.mesh.vertices.astype(np.float64), alone.mesh.faces, xy),
         "fused": sample_front(fused.mesh.vertices.astype(np.float64), fused.mesh.faces, xy),
         "mediapipe": sample_front(*mediapipe_surface(alone.landmarks.points), xy)}
    ok = np.logical_and.reduce([np.isfinite(v) for v in z.values()])
    assert ok.sum() >= 40
    c = {k: v[ok] - v[ok].mean() for k, v in z.items()}
    gap = np.abs(c["network"] - c["mediapipe"]).mean()
    assert gap > 1.0  # the two surfaces differ by more than a pixel on this face
    to_mediapipe = np.abs(c["fused"] - c["mediapipe"]).mean() / gap
    to_average = np.abs(c["fused"] - (c["network"] + c["mediapipe"]) / 2).mean() / gap
    assert 0.3 < to_mediapipe < 0.75 and to_average < 0.35


def test_the_weight_is_checked_where_it_is_given():
    from realtime_vrn.batch.options import OutputSettings
    from realtime_vrn.config import RunConfig

    with pytest.raises(ConfigError, match="--mediapipe-weight must be in"):
        RunConfig(mediapipe_weight=-0.1).validate()
    with pytest.raises(ConfigError, match="mediapipe-weight must be in"):
        OutputSettings(mediapipe_weight=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DepthFusion(SIZE, 1.01)
    assert RunConfig().mediapipe_weight == 0.5


def _triangles():
    from realtime_vrn.landmarks.topology import face_mesh_triangles

    return face_mesh_triangles()


def test_the_run_states_and_times_the_fusion(plane_checkpoint, face_photos, capsys):
    from realtime_vrn.cli import parse_args
    from realtime_vrn.config import RunConfig
    from realtime_vrn.pipeline import run
    from realtime_vrn.backends.common import cpu_threads

    photo = next(p for p in face_photos if p.name == "asj.jpg")
    for weight in (0.0, 0.3):
        summary = run(RunConfig(image=photo, weights=plane_checkpoint, headless=True, progress=False,
                                mediapipe_weight=weight).validate())
        assert summary.frames_with_face == 1
        assert ("fusion" in summary.stages) == (weight > 0)
        assert summary.backend.endswith(" + MediaPipe depth (weight 0.3)" if weight else " marching cubes"
                                        + (" on 2 threads" if cpu_threads() > 1 else ""))
    assert parse_args(["--mediapipe-weight", "0"]).mediapipe_weight == 0.0
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--mediapipe-weight", "1.5"])
    assert exit_info.value.code == 2 and "--mediapipe-weight" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["numba", "skimage"])
def test_our_depth_from_the_vertices_on_pixel_columns_is_the_triangle_zbuffer(name):
    """A marching-cubes surface on the pixel grid meets a pixel centre's line only at its vertices there, so the
    one-pass depth (grid_mesh_depth) equals the z-buffer of the mesh's triangles at every pixel centre."""
    from realtime_vrn.model.network import VRNConfig
    from realtime_vrn.surface.extractors import open_extractor
    from realtime_vrn.surface.fusion import grid_mesh_depth
    from realtime_vrn.surface.reference import ellipsoid_logits

    cfg = VRNConfig(input_size=96, depth_bins=100, output_stride=2)  # the shipped model's grid
    logits = ellipsoid_logits(cfg, (50.0, 44.0, 30.0), (30.0, 36.0, 14.0))  # crop frame (x, y, z) centre, radii
    mesh = open_extractor(cfg, name).extract(logits)
    from_vertices = grid_mesh_depth(mesh.vertices, cfg.input_size)
    from_triangles = front_depth(mesh.vertices, mesh.faces, cfg.input_size)
    covered = np.isfinite(from_triangles)
    assert covered.sum() > 1000
    np.testing.assert_array_equal(np.isfinite(from_vertices), covered)
    np.testing.assert_allclose(from_vertices[covered], from_triangles[covered], atol=1e-4)


def test_without_numba_the_run_goes_on_with_the_networks_surface(monkeypatch, caplog):
    """numba missing or broken (where the surface falls back to scikit-image): the fusion steps aside with a
    warning instead of stopping the run."""
    import realtime_vrn.surface.fusion as fusion

    def broken():
        raise ImportError("no module named numba")

    monkeypatch.setattr(fusion, "_kernels", broken)
    step = DepthFusion(SIZE, 0.5).warm_up()
    assert step.weight == 0.0 and "network's alone" in caplog.text
