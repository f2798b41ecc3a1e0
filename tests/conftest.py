"""Shared fixtures: real faces (bundled photos, the demo clip, skimage's astronaut), offline only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
FACES = TESTS / "data" / "faces"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def face_photos() -> list[Path]:
    """The five bundled real face photos (AFLW large poses + a frontal portrait), JPEG files."""
    return sorted(FACES.glob("*.jpg"))


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    """The bundled real talking-head clip (512x512, 30 fps, 448 frames)."""
    from realtime_vrn.assets import demo_clip_path

    return demo_clip_path()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut photo, (512, 512, 3) uint8 RGB, public domain."""
    from skimage import data

    return data.astronaut()


@pytest.fixture()
def vrn_home(tmp_path, monkeypatch) -> Path:
    """An empty per-test REALTIME_VRN_HOME (user cache for models and downloads)."""
    home = tmp_path / "vrn-home"
    monkeypatch.setenv("REALTIME_VRN_HOME", str(home))
    return home
