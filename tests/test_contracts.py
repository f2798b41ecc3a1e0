"""The shared array contracts (realtime_vrn.contracts, Mesh.validate): one test per rejection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from realtime_vrn.contracts import check_image, check_logits, logits_shape
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.mesh import Mesh


def test_an_rgb_image_passes():
    check_image(np.zeros((4, 6, 3), np.uint8))
    check_image(np.zeros((5, 5, 3), np.uint8), "crop", size=5)


@pytest.mark.parametrize(
    "image, kwargs, message",
    [
        (np.zeros((4, 6, 3), np.float32), {}, r"expected an \(H, W, 3\) uint8 RGB image, got float32 array"),
        (np.zeros((4, 6), np.uint8), {}, r"got uint8 array of shape \(4, 6\)"),
        (np.zeros((4, 6, 4), np.uint8), {"what": "frame"}, r"uint8 RGB frame, got uint8 array of shape \(4, 6, 4\)"),
        ([[0, 0, 0]], {}, "got list"),
        (np.zeros((4, 6, 3), np.uint8), {"what": "crop", "size": 4}, r"expected a \(4, 4, 3\) uint8 RGB crop"),
    ],
)
def test_image_rejections(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_image(image, **kwargs)


def test_logits_pass_and_a_batch_of_one_is_its_volume():
    logits = np.zeros((4, 3, 3), np.float32)
    assert check_logits(logits, (4, 3, 3)) is logits
    assert check_logits(logits[None], (4, 3, 3)).shape == (4, 3, 3)
    assert check_logits(np.zeros((2, 4, 3, 3), np.float32), (2, 4, 3, 3)).shape == (2, 4, 3, 3)
    assert check_logits(logits, (None, None, None)) is logits
    cast = check_logits(np.zeros((4, 3, 3)), (4, 3, 3), cast=True)
    assert cast.dtype == np.float32 and cast.flags.c_contiguous


@pytest.mark.parametrize(
    "logits, shape, cast, error, message",
    [
        (np.zeros((4, 3, 2), np.float32), (4, 3, 3), False, ValueError, r"expected logits of shape \(4, 3, 3\)"),
        (np.zeros((2, 4, 3, 3), np.float32), (4, 3, 3), False, ValueError, r"got \(2, 4, 3, 3\)"),
        (np.zeros((3, 3), np.float32), (None, None, None), False, ValueError, r"shape \(\?, \?, \?\)"),
        (np.zeros((4, 3, 3), np.float64), (4, 3, 3), False, ValueError, "expected float32 logits, got float64"),
        (np.zeros((4, 3, 6), np.float32)[:, :, ::2], (4, 3, 3), False, ValueError, "C-contiguous"),
        (np.zeros((4, 3, 3), np.int32), (4, 3, 3), False, TypeError, "floating-point"),
        (np.zeros((4, 3, 3), np.int32), (4, 3, 3), True, TypeError, "floating-point"),
    ],
)
def test_logits_rejections(logits, shape, cast, error, message):
    with pytest.raises(error, match=message):
        check_logits(logits, shape, cast=cast)


def test_logits_shape_of_a_model():
    cfg = VRNConfig(features=16, stacks=1, levels=1, depth_bins=8, input_size=32)
    assert logits_shape(cfg) == (8, 8, 8) and logits_shape(cfg, 2) == (2, 8, 8, 8)


def _triangle() -> Mesh:
    return Mesh(vertices=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 2]], np.int32),
                normals=np.ones((3, 3), np.float32), colors=np.zeros((3, 3), np.uint8), frame="image")


def test_a_valid_mesh_passes_and_is_returned():
    mesh = _triangle()
    assert mesh.validate() is mesh and mesh.validate("image") is mesh
    Mesh.empty().validate("crop")


@pytest.mark.parametrize(
    "change, frame, message",
    [
        ({}, "crop", "expected a mesh in frame='crop', got frame='image'"),
        ({"vertices": np.eye(3)}, None, r"expected vertices \(V, 3\) float32, got \(3, 3\) float64"),
        ({"vertices": np.zeros((3, 2), np.float32)}, None, "expected vertices"),
        ({"faces": np.array([[0, 1, 2]], np.int64)}, None, r"expected faces \(F, 3\) int32"),
        ({"normals": np.ones((2, 3), np.float32)}, None, "expected normals"),
        ({"colors": np.zeros((3, 3), np.float32)}, None, "uint8 colours"),
        ({"faces": np.array([[0, 1, 3]], np.int32)}, None, "out of range"),
        ({"faces": np.array([[-1, 1, 2]], np.int32)}, None, "out of range"),
    ],
)
def test_mesh_rejections(change, frame, message):
    with pytest.raises(ValueError, match=message):
        replace(_triangle(), **change).validate(frame)


# -- the stage protocols: every implementation has their members ---------------------------------------------------
def _members(protocol) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__)


def test_every_surface_stage_has_the_protocol_members():
    from realtime_vrn.surface.extract import SurfaceExtractor
    from realtime_vrn.surface.extractors import SurfaceStage
    from realtime_vrn.surface.gpu.extractor import DeviceSurfaceExtractor
    from realtime_vrn.surface.marching import NumbaSurfaceExtractor

    assert _members(SurfaceStage) == {"name", "on_device", "asarray", "extract", "describe"}
    for cls in (SurfaceExtractor, NumbaSurfaceExtractor, DeviceSurfaceExtractor):
        assert all(hasattr(cls, m) for m in _members(SurfaceStage)), cls
    assert (SurfaceExtractor.on_device, NumbaSurfaceExtractor.on_device, DeviceSurfaceExtractor.on_device) == (
        False, False, True)


def test_every_tracker_and_backend_has_the_protocol_members():
    from realtime_vrn.backends.base import Backend, InferenceBackend
    from realtime_vrn.landmarks.base import Tracker
    from realtime_vrn.landmarks.recorded import RecordingTracker, ReplayTracker
    from realtime_vrn.landmarks.tracker import LandmarkTracker

    methods = {"process", "process_all", "faces_followed", "most_faces"}  # lost_events: set per instance
    assert methods | {"lost_events"} == _members(Tracker)
    for cls in (LandmarkTracker, ReplayTracker):
        assert all(hasattr(cls, m) for m in methods), cls
    assert hasattr(RecordingTracker, "process_all")  # the counters: the recorded tracker's (__getattr__)
    assert all(hasattr(InferenceBackend, m) for m in _members(Backend))
