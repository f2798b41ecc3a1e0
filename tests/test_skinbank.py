"""Real skin baked into the ICT mesh (training/skinbank.py) and worn by the synthetic renders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68


@pytest.fixture(scope="module")
def model(ict_model):
    return ict_model


@pytest.fixture(scope="module")
def baker(model):
    from realtime_vrn.training.skinbank import Baker

    return Baker(model)


def _posed_points(baker, yaw_deg: float, scale: float = 12.0, centre=(320.0, 240.0)) -> np.ndarray:
    """(478, 3) Face Mesh-shaped points whose 68 iBUG entries are the ICT landmarks posed exactly (y down)."""
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    flip = np.diag([1.0, -1.0, -1.0])  # model y up, z to the viewer -> image y down, z into the screen
    lm = (baker.landmarks - baker.landmarks.mean(axis=0)) @ rot.T @ flip.T * scale
    points = np.zeros((478, 3), np.float32)
    points[list(MEDIAPIPE_TO_IBUG68), :2] = lm[:, :2] + np.asarray(centre)
    return points


@pytest.mark.parametrize("yaw", [0.0, 20.0, -25.0])
def test_pose_puts_the_landmark_vertices_on_the_points_and_reads_the_yaw(baker, model, yaw):
    from realtime_vrn.landmarks.ibug68 import to_ibug68

    points = _posed_points(baker, yaw)
    xy, depth, got_yaw, facing, scale = baker.pose(to_ibug68(points))
    where = {v: i for i, v in enumerate(baker.ids)}
    rows = [where[v] for v in model.landmarks68]
    np.testing.assert_allclose(xy[rows], to_ibug68(points), atol=1e-3)
    assert scale == pytest.approx(12.0, rel=1e-5)
    assert abs(got_yaw) == pytest.approx(abs(yaw), abs=1e-4)  # float32 points
    nose_tip = where[int(model.landmarks68[30])]
    assert depth[nose_tip] > np.median(depth)  # larger = nearer: the nose tip is in front
    assert facing[nose_tip] > 0.5


def test_bake_samples_the_photo_where_each_vertex_lands(baker):
    """A photo whose red channel is x / W and green y / H: every seen vertex's colour gives back its position."""
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.stack([xx / w, yy / h, np.full_like(xx, 0.5)], axis=-1)
    image_u8 = np.round(image * 255).astype(np.uint8)
    points = _posed_points(baker, 10.0)
    tex = baker.bake(image_u8, points, delight=0.0)
    assert tex is not None and tex.shape == (baker.ids.size, 3) and tex.dtype == np.float32
    from realtime_vrn.landmarks.ibug68 import to_ibug68

    xy, depth, _, facing, scale = baker.pose(to_ibug68(points))
    seen = baker.seen(xy, depth, facing, (h, w), scale)
    assert seen[baker.is_face].mean() > 0.6
    # 8-bit rounding: half a grey level of x / W is 1.25 px; the linear ramp survives the blur
    np.testing.assert_allclose(tex[seen, 0] * w, xy[seen, 0], atol=1.5)
    np.testing.assert_allclose(tex[seen, 1] * h, xy[seen, 1], atol=1.5)
    assert np.all((tex >= 0) & (tex <= 1))


def test_bake_refuses_small_and_turned_faces(baker):
    image = np.full((480, 640, 3), 128, np.uint8)
    assert baker.bake(image, _posed_points(baker, 0.0, scale=3.0)) is None   # box ~ 40 px
    assert baker.bake(image, _posed_points(baker, 60.0)) is None


def test_bake_a_real_photo_keeps_its_features(baker, model):
    """On a real face (bundled, not an AFLW photo) the mouth and the eyes land where they are: their vertices come
    out darker than the nose's (a vertex off by a feature's width would read cheek skin)."""
    import cv2

    from realtime_vrn.landmarks.registry import open_backend

    photo = Path(__file__).parent / "data" / "faces" / "asj.jpg"
    rgb = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
    with open_backend("auto", static=True, max_faces=1) as mesh:
        faces = mesh.detect(rgb, 0.0)
    assert len(faces) == 1
    tex = baker.bake(rgb, faces[0], delight=0.0)
    assert tex is not None
    rows = {v: i for i, v in enumerate(baker.ids)}
    lm = model.landmarks68

    def at(idx):
        return tex[[rows[int(v)] for v in lm[idx]]]

    nose = at([27, 28, 29, 30]).mean()                       # bridge and tip catch the light
    assert at([51, 57, 62, 66]).mean() < nose - 0.1          # lips and the mouth line
    assert at([37, 38, 43, 44]).mean() < nose - 0.1          # upper lids: lashes, the glasses' rims


def test_background_patches_keep_clear_of_the_face():
    from realtime_vrn.training.skinbank import background_patches

    image = np.zeros((400, 600, 3), np.uint8)
    image[150:250, 250:350] = 255                       # the "face"
    face = np.array([[250, 150, 0], [349, 249, 0]], np.float32)
    patches = background_patches(image, [face], size=64, margin=0.6)
    assert len(patches) >= 2 and all(p.shape == (64, 64, 3) for p in patches)
    assert max(int(p.max()) for p in patches) == 0


def test_sources_leave_out_aflw_photos(tmp_path):
    from realtime_vrn.training.skinbank import list_sources

    for name in ("AFLW_image00046.jpg", "image00013.jpg", "person.jpg", "clip.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_sources([tmp_path])] == ["clip.mp4", "person.jpg"]


def _bank(path: Path, ids: np.ndarray, colour, background: int = 0) -> Path:
    albedo = np.tile(np.asarray(colour, np.float16), (1, ids.size, 1))
    buf = io.BytesIO()
    np.savez(buf, vertex_ids=ids, albedo=albedo, sources=np.array(["test"]),
             backgrounds=np.full((1, 32, 32, 3), background, np.uint8))
    path.write_bytes(buf.getvalue())
    return path


def test_renders_wear_the_banked_skin(baker, model, tmp_path):
    """A bank of one pure green face: the face pixels of a render turn green, the same seed renders the same
    image, and real_background=1 puts the bank's patch behind the head."""
    from realtime_vrn.training.synth import SynthConfig, SynthGenerator

    bank = _bank(tmp_path / "bank.npz", baker.ids, [0.1, 0.8, 0.1])
    plain = SynthConfig(pitch_max=0.0, roll_max=0.0, yaw_max=5.0)
    green = SynthConfig(pitch_max=0.0, roll_max=0.0, yaw_max=5.0, skin_bank=str(bank), real_skin=1.0,
                        real_background=1.0)
    with SynthGenerator(plain, model) as gen:
        a = gen.sample(3)
    with SynthGenerator(green, model) as gen:
        b, b2 = gen.sample(3), gen.sample(3)
    np.testing.assert_array_equal(b.image, b2.image)
    centre = (slice(40, 56), slice(30, 66))   # cheeks and nose of a frontal crop
    img_a, img_b = a.image[centre].astype(float), b.image[centre].astype(float)
    assert img_a[..., 0].mean() > img_a[..., 1].mean()          # procedural skin: red over green
    assert img_b[..., 1].mean() > 1.5 * img_b[..., 0].mean()    # banked skin: green
    white = SynthConfig(pitch_max=0.0, roll_max=0.0, yaw_max=5.0, real_skin=1.0, real_background=1.0,
                        skin_bank=str(_bank(tmp_path / "white.npz", baker.ids, [0.1, 0.8, 0.1], background=255)))
    with SynthGenerator(white, model) as gen:
        c = gen.sample(3)

    def corners(img):
        return np.concatenate([img[:6, :6].reshape(-1, 3), img[:6, -6:].reshape(-1, 3)]).astype(float)

    assert corners(c.image).mean() > corners(b.image).mean() + 100   # black patch vs white patch
    same = c.image[centre] == b.image[centre]
    assert same.mean() > 0.9   # the face is the same (pixels at its outline see the background)


def test_config_refuses_a_probability_without_a_bank():
    from realtime_vrn.training.synth import SynthConfig

    with pytest.raises(ValueError, match="skin_bank"):
        SynthConfig(real_skin=0.5)
    with pytest.raises(ValueError, match="probabilities"):
        SynthConfig(skin_bank="x.npz", real_skin=1.5)


def test_cli_reports_skin_bank_errors_in_one_line(tmp_path, capsys):
    from realtime_vrn.cli import main

    assert main(["data", "render", str(tmp_path / "d"), "--count", "1", "--real-skin", "0.5"]) == 2
    assert "--skin-bank" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a bank")
    assert main(["data", "render", str(tmp_path / "d"), "--count", "1", "--skin-bank", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable skin bank" in err and "Traceback" not in err
    assert main(["data", "skin", str(tmp_path / "b.npz"), str(tmp_path / "nothing")]) == 2
    assert "is not a file or folder" in capsys.readouterr().err


def test_exported_weights_name_the_real_skin_in_their_licence(tmp_path):
    """Weights trained on real-skin renders say where the skin came from; on procedural renders, only ICT."""
    from realtime_vrn.training.dataset import config_json
    from realtime_vrn.training.synth import SynthConfig
    from realtime_vrn.training.train import TRAINED_LICENCE, TRAINED_LICENCE_REAL_SKIN, training_licence

    plain, skin = tmp_path / "plain", tmp_path / "skin"
    for folder, cfg in ((plain, SynthConfig()), (skin, SynthConfig(skin_bank="bank.npz", real_skin=0.7))):
        folder.mkdir()
        np.savez(folder / "shard-0000000000.npz", config=np.array(config_json(cfg)))
    assert training_licence(str(plain)) == TRAINED_LICENCE
    assert training_licence(str(skin)) == TRAINED_LICENCE_REAL_SKIN
    assert "faces-pool" in TRAINED_LICENCE_REAL_SKIN
    assert training_licence(None) == TRAINED_LICENCE
