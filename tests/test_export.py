"""Colours from the crop, the crop -> image frame mapping, and OBJ / PLY files read back with trimesh."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from realtime_vrn.errors import OutputError
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.colour import sample_colours, to_image_frame
from realtime_vrn.surface.export import write_obj, write_ply
from realtime_vrn.surface.extract import SurfaceExtractor
from realtime_vrn.surface.mesh import Mesh
from realtime_vrn.surface.reference import ellipsoid_logits

SMALL = VRNConfig(input_size=64, depth_bins=48)


class StandInCrop:
    """The duck-typed part of crop.CropTransform: crop = scale * (frame - centre) + c0, no rotation."""

    def __init__(self, scale=2.0, centre=(300.0, 200.0), c0=(31.5, 31.5), mirror=False):
        self.scale = scale
        self.centre = np.asarray(centre)
        self.c0 = np.asarray(c0)
        self.sign = np.array([-1.0 if mirror else 1.0, 1.0])

    def to_frame(self, uv):
        return (np.asarray(uv, np.float64) - self.c0) * self.sign / self.scale + self.centre


@pytest.fixture(scope="module")
def blob() -> Mesh:
    """A closed ellipsoid mesh in the crop frame, coloured."""
    mesh = SurfaceExtractor(SMALL).extract(ellipsoid_logits(SMALL, (30, 33, 12), (18, 14, 7)))
    rng = np.random.default_rng(0)
    mesh.colors = rng.integers(0, 256, (len(mesh.vertices), 3)).astype(np.uint8)
    return mesh


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices.astype(np.float64)[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


# --- colours ---------------------------------------------------------------------------------------------------


def test_sample_colours_takes_the_nearest_crop_pixel():
    s = 64
    image = np.zeros((s, s, 3), np.uint8)
    image[..., 0] = np.arange(s)[None, :]  # R = x
    image[..., 1] = np.arange(s)[:, None]  # G = y
    image[..., 2] = 7
    vertices = np.float32([[10.4, 20.6, 3.0], [0.0, 0.0, 1.0], [63.4, 62.6, 9.0], [-0.4, 63.49, 0.0]])
    mesh = Mesh(vertices, np.zeros((0, 3), np.int32), np.zeros_like(vertices))
    colours = sample_colours(mesh, image)
    assert colours.dtype == np.uint8 and colours.shape == (4, 3)
    np.testing.assert_array_equal(colours, [[10, 21, 7], [0, 0, 7], [63, 63, 7], [0, 63, 7]])


def test_sample_colours_on_a_real_face_crop(astronaut, blob):
    crop = astronaut[40:104, 180:244]  # 64 x 64 RGB around the face
    colours = sample_colours(blob, crop)
    x = np.rint(blob.vertices[:, 0]).astype(int)
    y = np.rint(blob.vertices[:, 1]).astype(int)
    np.testing.assert_array_equal(colours, crop[y, x])


def test_sample_colours_rejections(blob):
    with pytest.raises(ValueError, match="uint8 RGB crop"):
        sample_colours(blob, np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB crop"):
        sample_colours(blob, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="crop frame"):
        sample_colours(replace(blob, frame="image"), np.zeros((64, 64, 3), np.uint8))


# --- crop -> image frame -----------------------------------------------------------------------------------------


def test_to_image_frame_inverts_the_crop_and_scales_z(blob):
    crop = StandInCrop(scale=2.0)
    out = to_image_frame(blob, crop)
    assert out.frame == "image" and out.vertices.dtype == np.float32
    np.testing.assert_allclose(out.vertices[:, :2], crop.to_frame(blob.vertices[:, :2]), atol=1e-4)
    np.testing.assert_allclose(out.vertices[:, 2], blob.vertices[:, 2] / 2.0, atol=1e-6)
    np.testing.assert_allclose(out.normals, blob.normals, atol=1e-6)  # a uniform scale keeps directions
    np.testing.assert_array_equal(out.faces, blob.faces)
    assert out.colors is blob.colors
    volume = signed_volume(out.vertices, out.faces)
    assert volume == pytest.approx(signed_volume(blob.vertices, blob.faces) / 8.0, rel=1e-5)


def test_to_image_frame_keeps_winding_outward_for_a_mirroring_transform(blob):
    out = to_image_frame(blob, StandInCrop(mirror=True))
    assert signed_volume(out.vertices, out.faces) > 0
    np.testing.assert_allclose(out.normals[:, 0], -blob.normals[:, 0], atol=1e-6)


def test_to_image_frame_rejects_a_bad_scale(blob):
    with pytest.raises(ValueError, match="positive crop scale"):
        to_image_frame(blob, StandInCrop(scale=0.0))


def test_to_image_frame_of_an_empty_mesh():
    out = to_image_frame(Mesh.empty(), StandInCrop())
    assert out.is_empty and out.frame == "image"
    with pytest.raises(ValueError, match="crop frame"):
        to_image_frame(out, StandInCrop())


# --- files ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer, name", [(write_obj, "m.obj"), (write_ply, "m.ply"), (write_ply, "m_ascii.ply")])
def test_round_trip_with_trimesh(tmp_path, blob, writer, name):
    path = tmp_path / name
    writer(path, blob, **({"binary": False} if "ascii" in name else {}))
    loaded = trimesh.load(path, process=False)
    np.testing.assert_allclose(loaded.vertices, blob.vertices, atol=1e-4)
    np.testing.assert_array_equal(loaded.faces, blob.faces)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], blob.colors)
    np.testing.assert_allclose(loaded.vertex_normals, blob.normals, atol=1e-4)
    assert loaded.is_watertight and loaded.volume > 0  # outward winding survives the file
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_obj_layout_and_header(tmp_path, blob):
    path = tmp_path / "m.obj"
    write_obj(path, to_image_frame(blob, StandInCrop()))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# realtime-vrn") and any("image frame" in line for line in lines if line[0] == "#")
    v = [line for line in lines if line.startswith("v ")]
    f = [line for line in lines if line.startswith("f ")]
    assert len(v) == len(blob.vertices) and len(v[0].split()) == 7  # v x y z r g b
    rgb = np.array([line.split()[4:] for line in v], float)
    assert rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(np.rint(rgb * 255).astype(np.uint8), blob.colors)
    a, b, c = blob.faces[0] + 1
    assert f[0] == f"f {a}//{a} {b}//{b} {c}//{c}"
    assert sum(line.startswith("vn ") for line in lines) == len(blob.vertices)


def test_files_without_colours(tmp_path, blob):
    plain = replace(blob, colors=None)
    write_obj(tmp_path / "p.obj", plain)
    write_ply(tmp_path / "p.ply", plain)
    assert len(next(line for line in open(tmp_path / "p.obj") if line.startswith("v ")).split()) == 4
    assert b"property uchar red" not in (tmp_path / "p.ply").read_bytes()[:1000]
    loaded = trimesh.load(tmp_path / "p.ply", process=False)
    np.testing.assert_array_equal(loaded.faces, blob.faces)


@pytest.mark.parametrize("writer", [write_obj, write_ply])
def test_y_up_flips_y_normals_and_winding(tmp_path, blob, writer):
    path = tmp_path / f"up.{'obj' if writer is write_obj else 'ply'}"
    writer(path, blob, y_up=True)
    loaded = trimesh.load(path, process=False)
    np.testing.assert_allclose(loaded.vertices, blob.vertices * [1, -1, 1], atol=1e-4)
    np.testing.assert_allclose(loaded.vertex_normals, blob.normals * [1, -1, 1], atol=1e-4)
    np.testing.assert_array_equal(loaded.faces, blob.faces[:, [0, 2, 1]])
    assert signed_volume(loaded.vertices, loaded.faces) > 0  # still outward in the right-handed file
    # The winding agrees with the stored normals.
    tri = loaded.vertices[loaded.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", cross, loaded.vertex_normals[loaded.faces].sum(axis=1)) > 0).all()


def test_empty_mesh_writes_valid_files(tmp_path):
    write_obj(tmp_path / "e.obj", Mesh.empty())
    write_ply(tmp_path / "e.ply", Mesh.empty())
    assert b"element vertex 0" in (tmp_path / "e.ply").read_bytes()


def test_overwrites_atomically(tmp_path, blob):
    path = tmp_path / "m.ply"
    path.write_text("old")
    write_ply(path, blob)
    assert path.read_bytes().startswith(b"ply\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ply"]


@pytest.mark.parametrize("writer", [write_obj, write_ply])
def test_unwritable_paths_raise_output_error(tmp_path, blob, writer):
    with pytest.raises(OutputError, match="cannot write mesh file"):
        writer(tmp_path / "missing" / "m.obj", blob)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="cannot write mesh file"):
        writer(tmp_path / "dir", blob)  # a directory in the way
    assert [p.name for p in (tmp_path / "dir").iterdir()] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_raises_output_error(tmp_path, blob):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError):
            write_obj(ro / "m.obj", blob)
    finally:
        ro.chmod(0o700)


def test_rejects_inconsistent_meshes(tmp_path, blob):
    with pytest.raises(ValueError, match="out of range"):
        write_ply(tmp_path / "bad.ply", replace(blob, faces=blob.faces + len(blob.vertices)))
    with pytest.raises(ValueError, match="uint8 colours"):
        write_obj(tmp_path / "bad.obj", replace(blob, colors=blob.colors.astype(np.float32)))
