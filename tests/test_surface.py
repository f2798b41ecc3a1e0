"""Surface extraction against exact answers and against the full-volume reference.

Spheres and ellipsoids give known areas and volumes; the fast extractor must reproduce scikit-image's
marching cubes on the fully upsampled volume (same cubes, same values up to float rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.draw import ellipsoid_stats
from skimage.measure import marching_cubes

from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.extract import SurfaceExtractor, upsample, upsample_weights
from realtime_vrn.surface.mesh import Mesh
from realtime_vrn.surface.reference import (
    compare_with_reference,
    ellipsoid_logits,
    face_like_logits,
    mesh_from_volume,
    reference_surface,
    surface_distance,
)

from meshcheck import area_and_volume, is_closed

RELEASE = VRNConfig()  # 200 x 48 x 48 logits -> 200 x 192 x 192 volume
SMALL = VRNConfig(input_size=64, depth_bins=48)  # 48 x 16 x 16 -> 48 x 64 x 64, for the many-case tests
REFINED = VRNConfig(input_size=96, depth_bins=100, output_stride=2)  # 100 x 48 x 48 -> 100 x 96 x 96
SAME_SURFACE = 1e-3  # crop pixels: fast and reference differ only by float rounding of the upsample


def assert_same_surface(fast: Mesh, ref: Mesh) -> None:
    # The fast mesh may merge a few vertices that rounding puts on a grid node (the reference keeps copies).
    assert len(fast.vertices) == pytest.approx(len(ref.vertices), rel=1e-4, abs=2)
    assert len(fast.faces) == pytest.approx(len(ref.faces), rel=1e-4, abs=4)
    d = surface_distance(fast, ref)
    assert d["max"] < SAME_SURFACE, d


# --- the upsample -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [RELEASE, SMALL, VRNConfig(input_size=96, depth_bins=8)])
def test_upsample_equals_torch_align_corners(cfg):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((cfg.depth_bins, cfg.grid_size, cfg.grid_size)) * 3).astype(np.float32)
    ours = upsample(logits, cfg.input_size)
    theirs = F.interpolate(
        torch.from_numpy(logits)[None], size=(cfg.input_size,) * 2, mode="bilinear", align_corners=True
    )[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_upsample_weights_are_convex_pairs():
    w = upsample_weights(48, 192)
    assert w.shape == (192, 48) and w.dtype == np.float32
    assert (w >= 0).all() and ((w != 0).sum(axis=1) <= 2).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert w[0, 0] == 1 and w[-1, -1] == 1  # align_corners: the end samples coincide


# --- exact geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("radii", [(45.0, 35.0, 28.0), (20.0, 14.0, 10.0)])
def test_ellipsoid_from_full_resolution_field(radii):
    """An analytic field on the full (D, S, S) grid through the reference marching cubes and crop mapping."""
    d, s = RELEASE.depth_bins, RELEASE.input_size
    z = np.arange(d)[:, None, None] * 0.5
    y = np.arange(s)[None, :, None].astype(float)
    x = np.arange(s)[None, None, :].astype(float)
    rx, ry, rz = radii
    q2 = ((x - 96) / rx) ** 2 + ((y - 90) / ry) ** 2 + ((z - 50) / rz) ** 2
    mesh = mesh_from_volume((np.mean(radii) * (1 - q2) / 2).astype(np.float32))
    exact_volume, exact_area = ellipsoid_stats(*radii)
    area, volume = area_and_volume(mesh)
    assert is_closed(mesh)
    assert area == pytest.approx(exact_area, rel=0.01)
    assert volume == pytest.approx(exact_volume, rel=0.01)
    assert mesh.vertices[:, 2].max() == pytest.approx(50 + rz, abs=0.05)  # z = index * 0.5


# --- fast == reference ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, Mesh]:
    """A VRN-like 200 x 48 x 48 logit field of a face and its reference mesh (~80k vertices)."""
    logits = face_like_logits(RELEASE)
    return logits, reference_surface(logits)


def test_face_like_volume_matches_reference_and_faces_the_viewer(face):
    logits, ref = face
    fast = SurfaceExtractor(RELEASE).extract(logits)
    assert_same_surface(fast, ref)
    # Indexed: logits within ~1e-5 of the level put a few vertices onto nodes twice; those are merged.
    assert len(np.unique(fast.vertices, axis=0)) == len(fast.vertices)
    f = fast.faces
    assert not ((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])).any()
    # The solid: a front height field over a flat back plane, closed inside the volume.
    assert is_closed(fast)
    assert area_and_volume(fast)[1] > 0
    front = fast.vertices[:, 2] > np.percentile(fast.vertices[:, 2], 90)
    assert (fast.normals[front, 2] > 0).mean() > 0.95  # the face's front looks at the camera (+z)
    tip = np.argmax(fast.vertices[:, 2])
    assert fast.normals[tip, 2] > 0.9


def test_values_left_from_earlier_frames_are_never_read(face):
    """The extractor reuses its box buffer and evaluates only the slab rectangles marching cubes reads."""
    logits, ref = face
    extractor = SurfaceExtractor(RELEASE)
    extractor.extract(face_like_logits(RELEASE, seed=5)[:, ::-1].copy())  # an upside-down face first
    extractor._values[:] = np.random.default_rng(0).uniform(-50, 50, extractor._values.shape)  # poison
    assert_same_surface(extractor.extract(logits), ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_fields_match_reference_including_open_borders(seed):
    """Smooth random blobs everywhere, touching every border: the conservative bound must miss nothing, and
    the surface must stay open at the volume border exactly like the full-volume reference."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((SMALL.depth_bins, SMALL.grid_size, SMALL.grid_size)).astype(np.float32) - 1.0
    logits[:, :, :2] = np.abs(logits[:, :, :2]) + 0.5  # solid through the x = 0 side
    fast = SurfaceExtractor(SMALL).extract(logits)
    ref = reference_surface(logits)
    assert not fast.is_empty
    assert_same_surface(fast, ref)
    assert not is_closed(fast)


@pytest.mark.parametrize("seed", [0, 1])
def test_stride_two_logits_match_the_reference(seed):
    """The refinement head's (D, S/2, S/2) logits: the fast extractor upsamples x2, like the reference."""
    face = face_like_logits(REFINED, seed=seed)
    extractor = SurfaceExtractor(REFINED)
    fast = extractor.extract(face)
    assert_same_surface(fast, reference_surface(face, output_stride=2))
    assert 75.0 < fast.vertices[:, 0].max() < 85.0  # the face spans x = 17..79 of a 96-px crop (x2: 158)
    # Noise touching a border, on a grid small enough that no saddle is decided by float rounding.
    small = VRNConfig(input_size=64, depth_bins=48, output_stride=2)
    noise = np.random.default_rng(seed).standard_normal((48, 32, 32)).astype(np.float32) - 1.0
    noise[:, :, :2] = np.abs(noise[:, :, :2]) + 0.5  # open at the x = 0 border
    fast = SurfaceExtractor(small).extract(noise)
    assert not fast.is_empty
    assert_same_surface(fast, reference_surface(noise, output_stride=2))
    report = compare_with_reference(face, runs=1, extractor=extractor)
    assert report["max_distance"] < 1e-3


def test_solid_against_the_back_plane_stays_open_like_the_reference():
    logits = face_like_logits(RELEASE)
    outline = logits[60] > 0
    logits[:60][:, outline] = 5.0  # the solid now reaches depth index 0 inside the face outline
    fast = SurfaceExtractor(RELEASE).extract(logits)
    assert_same_surface(fast, reference_surface(logits))
    assert fast.vertices[:, 2].min() == pytest.approx(0.0)  # reaches the volume's back plane, open there


def test_small_blob_in_a_corner():
    logits = np.full((SMALL.depth_bins, SMALL.grid_size, SMALL.grid_size), -4.0, np.float32)
    logits[-2:, -3:, :2] = 4.0  # touches the front (z), bottom (y) and left (x) borders
    fast = SurfaceExtractor(SMALL).extract(logits)
    assert_same_surface(fast, reference_surface(logits))


def test_exact_zeros_give_a_deduplicated_mesh():
    logits = np.round(ellipsoid_logits(SMALL, (32, 32, 12), (20, 20, 8)))  # many logits exactly 0
    assert (logits == 0).any()
    fast = SurfaceExtractor(SMALL).extract(logits)
    assert len(np.unique(fast.vertices, axis=0)) == len(fast.vertices)
    f = fast.faces
    assert not ((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])).any()
    assert surface_distance(fast, reference_surface(logits))["max"] < SAME_SURFACE


@pytest.mark.parametrize("value", [-3.0, 0.0, 3.0])
def test_empty_and_full_volumes_give_empty_meshes(value):
    logits = np.full((SMALL.depth_bins, SMALL.grid_size, SMALL.grid_size), value, np.float32)
    for mesh in (SurfaceExtractor(SMALL).extract(logits), reference_surface(logits)):
        assert mesh.is_empty and mesh.vertices.shape == (0, 3) and mesh.frame == "crop"


def test_accepts_a_batch_of_one():
    logits = ellipsoid_logits(SMALL, (32, 32, 12), (20, 20, 8))
    ex = SurfaceExtractor(SMALL)
    np.testing.assert_array_equal(ex.extract(logits[None]).vertices, ex.extract(logits).vertices)


def test_skimage_reads_the_mask_at_the_far_corner():
    """The extractor relies on this indexing of scikit-image's ``mask``; fail loudly if it ever changes."""
    g = np.mgrid[:12, :12, :12].astype(np.float32)
    vol = (3.7 - np.sqrt(((g - 5.3) ** 2).sum(0))).astype(np.float32)
    whole = marching_cubes(vol, 0.0)
    inside = vol > 0
    cube = np.zeros((11, 11, 11), bool)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                cube |= inside[dz : 11 + dz, dy : 11 + dy, dx : 11 + dx] != inside[:11, :11, :11]
    mask = np.zeros(vol.shape, bool)
    mask[1:, 1:, 1:] = cube
    masked = marching_cubes(vol, 0.0, mask=mask)
    for a, b in zip(whole[:3], masked[:3]):
        np.testing.assert_array_equal(a, b)


# --- distance and comparison ----------------------------------------------------------------------------------


def test_surface_distance_is_point_to_surface():
    r = 20.0
    mesh = SurfaceExtractor(SMALL).extract(ellipsoid_logits(SMALL, (32, 32, 12), (r, r, 10)))
    assert surface_distance(mesh, mesh) == {"mean": 0.0, "p95": 0.0, "max": 0.0}
    shifted = Mesh(mesh.vertices + np.float32([0, 0, 0.25]), mesh.faces, mesh.normals)
    d = surface_distance(mesh, shifted)
    # Nearest-vertex distances would be ~0.3-0.5 here (vertex spacing); point-to-surface stays <= the shift.
    assert d["max"] <= 0.25 + 1e-4 and 0.05 < d["mean"] < 0.25
    assert surface_distance(mesh, Mesh.empty())["mean"] == float("inf")
    assert surface_distance(Mesh.empty(), Mesh.empty())["mean"] == 0.0


def test_compare_with_reference_reports_times_ratio_and_distances():
    out = compare_with_reference(ellipsoid_logits(SMALL, (32, 32, 12), (20, 20, 8)), runs=2)
    for key in ("fast_median_ms", "fast_p95_ms", "reference_median_ms", "reference_p95_ms", "speedup"):
        assert out[key] > 0
    assert out["mean_distance"] < SAME_SURFACE and out["p95_distance"] < SAME_SURFACE
    assert out["fast_faces"] == pytest.approx(out["reference_faces"], rel=0.01) and out["fast_faces"] > 0
    with pytest.raises(ValueError, match="runs"):
        compare_with_reference(np.zeros((48, 16, 16), np.float32), runs=0)


def test_compare_with_reference_times_the_whole_stage_when_given_the_crop():
    from realtime_vrn.crop import CropTransform
    from realtime_vrn.surface.extractors import open_extractor

    logits = ellipsoid_logits(SMALL, (32, 32, 12), (20, 20, 8))
    crop_image = np.full((64, 64, 3), 90, np.uint8)
    out = compare_with_reference(logits, runs=1, extractor=open_extractor(SMALL), crop_image=crop_image,
                                 crop=CropTransform((300.0, 200.0), 0.5, 64))
    assert out["extractor"] == "numba" and out["fast_stage"] == "iso-surface + colours + frame mapping"
    assert out["mean_distance"] < SAME_SURFACE and out["speedup"] > 0
    with pytest.raises(ValueError, match="both crop_image and crop"):
        compare_with_reference(logits, runs=1, crop_image=crop_image)


def test_bench_surface_comparison_times_the_stage_on_the_model_grid_and_the_release_grid():
    from realtime_vrn.bench.run import SurfaceSample, _surface_comparison, _to_full_grid
    from realtime_vrn.crop import CropTransform

    crop = CropTransform((300.0, 200.0), 0.4, REFINED.input_size)
    sample = SurfaceSample(face_like_logits(REFINED), np.full((96, 96, 3), 90, np.uint8), crop)
    agg = _surface_comparison([sample], runs=1, stride=2)["median_over_frames"]
    assert agg["extractor"] == "numba" and agg["fast_stage"] == "iso-surface + colours + frame mapping"
    assert agg["p95_distance"] < SAME_SURFACE and agg["speedup"] > 0 and agg["frames"] == 1
    full = _to_full_grid(sample)
    assert full.logits.shape == (200, 48, 48) and full.crop_image.shape == (192, 192, 3)
    assert full.crop.size == 192 and full.crop.scale == pytest.approx(0.8) and full.crop.centre == crop.centre
