"""int8 models (issue 14, "network"): the shipped model's own, found only for the checkpoint it was made from,
close to float32 on a real face; ``realtime-vrn weights quantize`` on training shards."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime_vrn.backends.registry import open_backend
from realtime_vrn.cli import main
from realtime_vrn.errors import WeightsError
from realtime_vrn.fileio import file_sha256
from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint
from realtime_vrn.model.network import VRN, VRNConfig
from realtime_vrn.model.quantize import find_int8_model, quantize_checkpoint, sibling_path, source_sha256
from realtime_vrn.weights.registry import PACKAGE_MODELS_DIR

SHIPPED = PACKAGE_MODELS_DIR / "vrn-small.safetensors"
TINY = VRNConfig(features=16, stacks=1, levels=1, branch_blocks=1, inner_branch_blocks=1, depth_bins=8,
                 input_size=32, in_channels=3 + 68)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def test_the_shipped_int8_model_was_made_from_the_shipped_checkpoint():
    """Retraining the default model without `realtime-vrn weights quantize` would leave a stale int8 model: the
    backend would refuse it and fall back to f32 silently slower; this catches it before it ships."""
    assert sibling_path(SHIPPED).is_file() and sibling_path(SHIPPED).with_suffix(".bin").is_file()
    assert source_sha256(sibling_path(SHIPPED)) == file_sha256(SHIPPED)
    assert find_int8_model(SHIPPED) == sibling_path(SHIPPED)


@pytest.fixture(scope="module")
def astronaut_input(astronaut) -> np.ndarray:
    """(1, 71, 96, 96) float32: the astronaut's face cropped and guided by MediaPipe's points, as the pipeline."""
    from realtime_vrn.crop import CropTransform
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.model.guidance import network_input

    cfg = read_checkpoint_header(SHIPPED).cfg
    with open_tracker(static=True) as tracker:
        points = tracker.process(astronaut, 0.0).points68
    crop = CropTransform.from_landmarks(points, size=cfg.input_size)
    return network_input(crop.warp(astronaut), cfg, crop.to_crop(points))


def test_shipped_int8_model_agrees_with_float32_on_a_real_face(astronaut_input):
    """Measured 2026-12-06: 99.8% of the voxels on the same side of the surface (held-out crops, 99.5% at worst),
    and the real-face benchmark unchanged within noise (docs/benchmarks.md)."""
    with open_backend("openvino", SHIPPED, "cpu") as f32, open_backend("openvino-int8", SHIPPED, "cpu") as int8:
        reference, out = f32.infer(astronaut_input), int8.infer(astronaut_input)
        assert "int8" in int8.describe()
    assert out.shape == reference.shape
    assert np.mean((out > 0) == (reference > 0)) > 0.995
    assert np.abs(out - reference).mean() < 0.1 * np.abs(reference).mean()


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(path, VRN(TINY), CheckpointMeta(source="random init (tests)", licence="MIT"))
    return path


def test_an_int8_model_is_found_only_for_its_own_checkpoint(vrn_home, tmp_path, caplog):
    ckpt = _tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    with pytest.raises(WeightsError, match=r"no int8 model for a.safetensors .*realtime-vrn weights quantize"):
        find_int8_model(ckpt)
    calibration = np.random.default_rng(0).random((4, 71, 32, 32), dtype=np.float32)
    cached = quantize_checkpoint(ckpt, calibration)  # default: the user cache, by SHA-256
    assert cached.parent.parent == vrn_home and cached.stem == file_sha256(ckpt)
    assert find_int8_model(ckpt) == cached
    beside = quantize_checkpoint(ckpt, calibration, sibling_path(ckpt))
    assert beside == tmp_path / "a.int8.xml" and find_int8_model(ckpt) == beside  # beside first
    # the checkpoint retrained in place: both int8 models are stale and refused, with the command to run
    _tiny_checkpoint(ckpt, seed=1)
    with pytest.raises(WeightsError, match="no int8 model for a.safetensors"):
        find_int8_model(ckpt)
    assert "quantised from another checkpoint" in caplog.text
    with pytest.raises(Exception, match="no int8 model"):
        open_backend("openvino-int8", ckpt, "cpu")


def test_quantize_rejects_inputs_of_the_wrong_shape(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    with pytest.raises(ValueError, match=r"must be \(N, 71, 32, 32\) float32"):
        quantize_checkpoint(ckpt, np.zeros((4, 3, 32, 32), np.float32))


def _shard(folder: Path, first_seed: int, count: int, size: int) -> None:
    """A training shard with what calibration reads: crops (real: the astronaut's face, shifted) and points."""
    import cv2
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(data.astronaut()[30:230, 150:350], (size, size), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(first_seed)
    images = np.stack([np.roll(face, k, axis=(0, 1)) for k in range(count)])
    points = (rng.random((count, 68, 2)) * size).astype(np.float32)
    np.savez(folder / f"shard-{first_seed:010d}.npz", image=images, crop_points=points,
             seed=np.arange(first_seed, first_seed + count))


def test_quantize_command_on_training_shards(vrn_home, tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    _shard(tmp_path / "renders", 0, 5, 32)
    _shard(tmp_path / "photos", 2_000_000_000, 5, 32)
    out = tmp_path / "q" / "a.int8.xml"
    assert main(["weights", "quantize", str(ckpt), "--data", str(tmp_path / "renders"), str(tmp_path / "photos"),
                 "--count", "6", "--out", str(out)]) == 0
    assert "6 calibration crops" in capsys.readouterr().out
    assert source_sha256(out) == file_sha256(ckpt)
    shutil.copy(ckpt, out.parent / "a.safetensors")  # found beside its checkpoint
    with open_backend("openvino-int8", out.parent / "a.safetensors", "cpu") as backend:
        assert backend.infer(np.zeros((1, 71, 32, 32), np.float32)).shape == (1, 8, 8, 8)


def test_quantize_command_errors_are_one_line(vrn_home, tmp_path, capsys, monkeypatch):
    ckpt = _tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    assert main(["weights", "quantize", str(ckpt), "--data", str(tmp_path)]) == 2  # no shards there
    assert "no shard-*.npz files" in capsys.readouterr().err
    _shard(tmp_path / "big", 0, 2, 64)
    assert main(["weights", "quantize", str(ckpt), "--data", str(tmp_path / "big")]) == 2
    assert "holds 64 px crops, the model takes 32" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "nncf", None)  # NNCF not installed: the [train] extra
    assert main(["weights", "quantize", str(ckpt), "--data", str(tmp_path / "big")]) == 2
    assert "pip install 'realtime-vrn[train]'" in capsys.readouterr().err


def test_auto_runs_the_shipped_model_in_int8_on_a_cpu_that_has_it():
    import openvino as ov

    if "INT8" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no int8 support in OpenVINO")
    with open_backend("auto", SHIPPED, "cpu") as backend:
        assert backend.name == "openvino-int8"
        assert "int8" in backend.describe()
