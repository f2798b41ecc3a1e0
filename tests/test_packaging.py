"""The wheel carries every data file the package reads: each file under realtime_vrn/ that is not Python source
matches a ``[tool.setuptools.package-data]`` pattern of pyproject.toml (shaders, the CUDA kernel, engine
recipes, bundled models and assets are package data found with ``importlib.resources``; no build hook)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "realtime_vrn"
#: Files that are not shipped data: Python sources and what running them leaves behind.
NOT_DATA = {".py", ".pyc", ".pyo", ".so", ".nbi", ".nbc"}


def _package_data_patterns() -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]["package-data"]["realtime_vrn"]


def _data_files() -> set[Path]:
    return {p.relative_to(PACKAGE_DIR) for p in PACKAGE_DIR.rglob("*")
            if p.is_file() and p.suffix not in NOT_DATA and "__pycache__" not in p.parts}


def test_every_data_file_of_the_package_is_package_data():
    shipped = {p.relative_to(PACKAGE_DIR) for pattern in _package_data_patterns() for p in PACKAGE_DIR.glob(pattern)
               if p.is_file()}
    missing = sorted(str(p) for p in _data_files() - shipped)
    assert not missing, f"not in pyproject's package-data, so not in the wheel: {missing}"


@pytest.mark.parametrize("relative", ["surface/gpu/marching_cubes.cu", "backends/tensorrt/recipes/fp16-b1.json",
                                      "render/shaders/mesh.vert"])
def test_the_files_read_with_importlib_resources_are_package_data(relative):
    assert (PACKAGE_DIR / relative).is_file()
    assert any(Path(relative).match(pattern) or PACKAGE_DIR.joinpath(relative) in PACKAGE_DIR.glob(pattern)
               for pattern in _package_data_patterns())


def test_no_build_hook_or_top_level_data_folders():
    """Kernels and recipes live in the package: no setup.py copying them, no MANIFEST.in grafts."""
    assert not (ROOT / "setup.py").exists() and not (ROOT / "MANIFEST.in").exists()
    assert not (ROOT / "kernels").exists() and not (ROOT / "engines").exists()
