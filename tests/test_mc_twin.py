"""The NumPy twin of the GPU marching cubes against exact answers and scikit-image (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import mesh_surface_area

from realtime_vrn.surface.gpu import mc_tables
from realtime_vrn.surface.gpu.mc_twin import (
    linear_tables,
    make_grid,
    marching_cubes_twin,
    upsample_full,
)
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.reference import ellipsoid_logits, face_like_logits, reference_surface, upsample_torch

#: A small VRN geometry: 24x24 logits -> 96x96 crop, 64 depth bins (crop z 0..31.5).
SMALL = VRNConfig(input_size=96, depth_bins=64)
CENTRE = np.array([47.0, 49.0, 16.0])  # (x, y, z) crop frame


def ellipsoid(radii=(30.0, 24.0, 11.0), slope=1.0) -> np.ndarray:
    return ellipsoid_logits(SMALL, CENTRE, radii, slope)


def noisy_field(seed: int = 0, shape=(24, 12, 12)) -> np.ndarray:
    """Smooth random logits: many surface pieces, touching the border, with ambiguous faces."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def edge_use(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected mesh edges and how many triangles use each."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)


def face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


# -- tables ---------------------------------------------------------------------------------------------------
def test_table_uses_exactly_the_crossed_edges_of_each_case():
    table = mc_tables.triangle_table()
    for case in range(256):
        inside = [(case >> k) & 1 for k in range(8)]
        crossed = {e for e, (a, b) in enumerate(mc_tables.EDGE_CORNERS) if inside[a] != inside[b]}
        used = set(table[case][table[case] >= 0].tolist())
        assert used == crossed, case
    counts = mc_tables.triangle_counts()
    assert counts[0] == counts[255] == 0 and counts[1:255].min() >= 1 and counts.max() == mc_tables.MAX_TRIANGLES


def test_table_single_corner_faces_away_from_the_inside_corner():
    mid = lambda e: mc_tables.CORNER_OFFSETS[mc_tables.EDGE_CORNERS[e]].mean(axis=0)  # noqa: E731
    for corner in range(8):
        a, b, c = (mid(e) for e in mc_tables.triangle_table()[1 << corner][:3])
        outward = 0.5 - mc_tables.CORNER_OFFSETS[corner]
        assert np.dot(np.cross(b - a, c - a), outward) > 0, corner


# -- upsample -------------------------------------------------------------------------------------------------
def test_linear_tables_identity_and_align_corners_ends():
    i0, i1, w0, w1 = linear_tables(5, 5)
    assert np.array_equal(i0, np.arange(5)) and np.all(w0 == 1) and np.all(w1 == 0)
    i0, i1, w0, w1 = linear_tables(48, 192)
    assert (i0[0], w0[0]) == (0, 1.0)
    assert np.isclose(i0[-1] + w1[-1], 47.0, atol=1e-5)  # the last output sample reads the last input
    assert i1.max() <= 47 and np.all((w0 >= 0) & (w1 >= 0)) and np.allclose(w0 + w1, 1)


def test_upsample_equals_torch_align_corners():
    logits = face_like_logits(SMALL)
    np.testing.assert_allclose(upsample_full(logits), upsample_torch(logits, 96), atol=1e-5, rtol=0)


# -- geometry against exact answers and scikit-image -----------------------------------------------------------
@pytest.mark.parametrize("radii", [(20.0, 20.0, 10.0), (30.0, 24.0, 11.0)], ids=["sphere", "ellipsoid"])
def test_area_matches_skimage_and_the_exact_area(radii):
    logits = ellipsoid(radii)
    mesh = marching_cubes_twin(logits).to_mesh()
    ref = reference_surface(logits)
    area = mesh_surface_area(mesh.vertices, mesh.faces)
    assert area == pytest.approx(mesh_surface_area(ref.vertices, ref.faces), rel=0.01)
    a, b, c = radii  # Knud Thomsen's ellipsoid area formula, within ~1%
    p = 1.6075
    exact = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    assert area == pytest.approx(exact, rel=0.03)


def test_face_like_field_area_matches_skimage():
    logits = face_like_logits(SMALL, seed=3)
    mesh = marching_cubes_twin(logits).to_mesh()
    ref = reference_surface(logits)
    assert mesh_surface_area(mesh.vertices, mesh.faces) == pytest.approx(
        mesh_surface_area(ref.vertices, ref.faces), rel=0.01)


def test_closed_surface_is_watertight_with_shared_vertices():
    mesh = marching_cubes_twin(ellipsoid()).to_mesh()
    _, uses = edge_use(mesh.faces)
    assert np.all(uses == 2)  # every edge between exactly two triangles: closed, no cracks
    assert len(np.unique(mesh.vertices, axis=0)) == len(mesh.vertices)  # no duplicated vertex
    assert np.array_equal(np.unique(mesh.faces), np.arange(len(mesh.vertices)))  # every vertex used
    v, f = mesh.vertices, mesh.faces
    euler = len(v) - len(edge_use(f)[0]) + len(f)
    assert euler == 2  # a sphere's topology


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_field_is_watertight_away_from_the_border(seed):
    result = marching_cubes_twin(noisy_field(seed), upsample=1)
    v, f = result.positions, result.faces
    edges, uses = edge_use(f)
    assert set(np.unique(uses)) <= {1, 2}
    open_edges = edges[uses == 1]
    ends = v[open_edges]  # (E, 2, 3): both ends of every open edge lie on one border plane
    d, h, w = result.grid.depth, result.grid.height, result.grid.width
    on = lambda axis, value: np.all(np.isclose(ends[:, :, axis], value), axis=1)  # noqa: E731
    border = on(0, 0) | on(0, w - 1) | on(1, 0) | on(1, h - 1) | on(2, 0) | on(2, (d - 1) * 0.5)
    assert border.all()
    assert len(np.unique(v, axis=0)) == len(v)
    # one vertex per crossed edge, each used by a triangle
    assert len(v) == int(result.classification.nverts.sum())
    assert np.array_equal(np.unique(f), np.arange(len(v)))


def test_winding_and_normals_point_outward():
    mesh = marching_cubes_twin(ellipsoid()).to_mesh()
    v, f = mesh.vertices, mesh.faces
    outward = v[f].mean(axis=1) - CENTRE
    assert np.all(np.einsum("ij,ij->i", face_normals(v, f), outward) > 0)
    assert np.all(np.einsum("ij,ij->i", mesh.normals, v - CENTRE) > 0)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-5)


def test_winding_agrees_with_gradient_normals_on_a_face():
    mesh = marching_cubes_twin(face_like_logits(SMALL, seed=1)).to_mesh()
    v, f = mesh.vertices, mesh.faces
    agree = np.einsum("ij,ij->i", face_normals(v, f), mesh.normals[f].sum(axis=1)) > 0
    assert agree.mean() > 0.999


def test_reading_lowres_logits_equals_marching_the_upsampled_volume():
    logits = face_like_logits(SMALL, seed=2)
    on_the_fly = marching_cubes_twin(logits, upsample=4)
    explicit = marching_cubes_twin(upsample_full(logits), upsample=1)
    assert np.array_equal(on_the_fly.faces, explicit.faces)
    assert np.array_equal(on_the_fly.positions, explicit.positions)
    assert np.array_equal(on_the_fly.normals, explicit.normals)
    # and torch's own upsample gives the same surface up to float rounding
    torch_volume = marching_cubes_twin(upsample_torch(logits, 96), upsample=1)
    assert len(torch_volume.faces) == len(on_the_fly.faces)
    np.testing.assert_allclose(torch_volume.positions, on_the_fly.positions, atol=1e-4)


def test_vertices_sit_on_their_edges_in_the_crop_frame():
    result = marching_cubes_twin(face_like_logits(SMALL))
    v = result.positions
    assert v[:, 0].min() >= 0 and v[:, 0].max() <= 95 and v[:, 1].max() <= 95 and v[:, 2].max() <= 63 * 0.5
    frac = np.stack([v[:, 0], v[:, 1], v[:, 2] * 2], axis=1) % 1
    assert np.all((frac == 0).sum(axis=1) >= 2)  # two coordinates on grid nodes, one along the edge


# -- degenerate inputs and phases -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-3.0, 2.0, 0.0], ids=["empty", "full", "zero-is-outside"])
def test_empty_and_full_volumes_give_an_empty_mesh(value):
    result = marching_cubes_twin(np.full((8, 6, 6), value, np.float32))
    assert result.positions.shape == (0, 3) and result.faces.shape == (0, 3)
    assert result.vert_offsets[-1] == result.tri_offsets[-1] == len(result.active_ids) == 0
    assert result.to_mesh().is_empty


def test_phases_are_consistent():
    r = marching_cubes_twin(noisy_field(4), upsample=2)
    c = r.classification
    assert r.vert_offsets[-1] == len(r.positions) and r.tri_offsets[-1] == len(r.faces)
    assert np.array_equal(r.active_ids, np.flatnonzero(c.ntris))
    assert np.all(np.diff(r.active_ids) > 0)
    g = r.grid
    last = np.zeros((g.depth, g.height, g.width), bool)
    last[-1], last[:, -1], last[:, :, -1] = True, True, True
    assert not c.cases.reshape(last.shape)[last].any()  # no cell starts on the last planes


@pytest.mark.parametrize(
    "logits, upsample, error",
    [
        (np.zeros((4, 4), np.float32), 4, ValueError),
        (np.zeros((4, 4, 4), np.float64), 4, ValueError),
        ([[[0.0]]], 4, TypeError),
        (np.zeros((4, 1, 4), np.float32), 4, ValueError),
        (np.zeros((4, 4, 4), np.float32), 0, ValueError),
    ],
    ids=["2d", "float64", "list", "thin", "upsample0"],
)
def test_bad_inputs_are_rejected(logits, upsample, error):
    with pytest.raises(error):
        marching_cubes_twin(logits, upsample)


def test_grid_tables_have_the_documented_layout():
    g = make_grid((10, 12, 8), 4)
    assert (g.depth, g.height, g.width, g.n_points) == (10, 48, 32, 10 * 48 * 32)
    assert g.idx.shape == g.wts.shape == (2 * 32 + 2 * 48,) and g.idx.dtype == np.int32 and g.wts.dtype == np.float32
