"""The ICT face model: loading the converted .npz and converting the original FaceXModel release."""

from __future__ import annotations


import numpy as np
import pytest

from realtime_vrn.training.facemodel import FaceModel, FaceModelError, convert_facexmodel, default_npz

RAW_SAMPLE = default_npz().parent / "raw-sample"
pytestmark = pytest.mark.skipif(not default_npz().is_file(), reason=f"ICT face model not at {default_npz()}")


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


def test_load_shapes_and_parts(model):
    assert model.neutral.shape == (26719, 3) and model.neutral.dtype == np.float32
    assert model.identity_modes.shape == (100, 26719, 3)
    assert model.expression_modes.shape == (53, 26719, 3)
    assert model.landmarks68.shape == (68,)
    assert model.groups["face"] == (0, 9408)
    assert len(model.part("teeth")) == 21450 - 17039 + 1
    assert model.expression_names[model.expression_index("jawOpen")] == "jawOpen"


def test_vertices_are_the_linear_model(model):
    np.testing.assert_array_equal(model.vertices(), model.neutral)
    w = np.zeros(100, np.float32)
    w[3] = 1.5
    e = np.zeros(53, np.float32)
    e[model.expression_index("jawOpen")] = 1.0
    expected = model.neutral + 1.5 * model.identity_modes[3] + model.expression_modes[model.expression_index("jawOpen")]
    np.testing.assert_allclose(model.vertices(w, e), expected, atol=1e-5)
    # the chin moves down when the jaw opens
    chin = model.landmarks68[8]
    assert model.vertices(expression=e)[chin, 1] < model.neutral[chin, 1] - 0.5


def test_vertices_rejects_too_many_weights(model):
    with pytest.raises(ValueError, match="at most 100 identity weights"):
        model.vertices(np.zeros(101))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(FaceModelError, match="not found"):
        FaceModel.load(tmp_path / "nope.npz")


@pytest.mark.skipif(not RAW_SAMPLE.is_dir(), reason="raw-sample folder missing")
def test_convert_raw_sample_matches_the_shipped_npz(model, tmp_path):
    out = convert_facexmodel(RAW_SAMPLE, tmp_path / "ict.npz", require_complete=False)
    conv = FaceModel.load(out)
    np.testing.assert_array_equal(conv.neutral, model.neutral)
    # triangles: the same set (quads split 0-1-2 / 0-2-3)
    as_set = lambda f: set(map(tuple, np.sort(f, axis=1)))  # noqa: E731
    assert as_set(conv.faces) == as_set(model.faces)
    assert conv.identity_names == ("identity000",)
    np.testing.assert_allclose(conv.identity_modes[0], model.identity_modes[0], atol=1e-3)
    assert conv.expression_names == ("jawOpen",)
    np.testing.assert_allclose(conv.expression_modes[0], model.expression_modes[model.expression_index("jawOpen")],
                               atol=1e-3)
    np.testing.assert_array_equal(conv.landmarks68, model.landmarks68)
    np.testing.assert_array_equal(conv.rigid_vertices, model.rigid_vertices)
    assert conv.groups == model.groups
    np.testing.assert_allclose(conv.uvs, model.uvs)


@pytest.mark.skipif(not RAW_SAMPLE.is_dir(), reason="raw-sample folder missing")
def test_convert_rejects_incomplete_or_wrong_folders(tmp_path):
    with pytest.raises(FaceModelError, match="incomplete"):
        convert_facexmodel(RAW_SAMPLE, tmp_path / "ict.npz")
    with pytest.raises(FaceModelError, match="vertex_indices.json is missing"):
        convert_facexmodel(tmp_path, tmp_path / "ict.npz")
