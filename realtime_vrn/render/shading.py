"""Lighting model of the mesh shader (``shaders/mesh.frag``) and its NumPy twin for tests.

Lighting is evaluated in view space (x right, y up, z towards the viewer) with a directional light fixed to
the camera and the viewer along +z (exact for the orthographic overlay, the usual approximation for the
perspective 3D view): ``rgb = base * (ambient + diffuse * max(n.l, 0)) + specular * max(n.h, 0) ** shininess``
(Blinn-Phong, the specular term only where ``n.l > 0``), clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Shading modes and their ids in ``mesh.frag``.
SHADING_MODES = {"color": 0, "normals": 1, "clay": 2}


@dataclass(frozen=True)
class Lighting:
    """Light and material constants (colours RGB in [0, 1], directions in view space)."""

    # Up-left and in front of the face: a familiar portrait light that keeps the frontal face bright.
    light_dir: tuple[float, float, float] = (-0.25, 0.35, 1.0)
    # ambient + diffuse = 1: a face lit head-on keeps the colours sampled from the frame.
    ambient: float = 0.35
    diffuse: float = 0.65
    specular: float = 0.15
    shininess: float = 24.0
    clay: tuple[float, float, float] = (0.80, 0.74, 0.68)

    @property
    def light(self) -> np.ndarray:
        """Unit vector towards the light, (3,) float32, view space."""
        d = np.asarray(self.light_dir, np.float64)
        return (d / np.linalg.norm(d)).astype(np.float32)

    @property
    def half(self) -> np.ndarray:
        """Unit Blinn half vector between the light and the viewer (+z), (3,) float32, view space."""
        h = self.light.astype(np.float64) + (0.0, 0.0, 1.0)
        return (h / np.linalg.norm(h)).astype(np.float32)


def shade(base_rgb: np.ndarray, normals: np.ndarray, lighting: Lighting = Lighting()) -> np.ndarray:
    """NumPy twin of the lit shading of ``mesh.frag``.

    base_rgb: (..., 3) float in [0, 1]; normals: (..., 3) float unit vectors in view space (y up).
    Returns (..., 3) float64 in [0, 1] (before the alpha premultiplication and 8-bit quantisation).
    """
    n = np.asarray(normals, np.float64)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    lambert = np.maximum(n @ lighting.light.astype(np.float64), 0.0)
    spec = np.where(lambert > 0, np.maximum(n @ lighting.half.astype(np.float64), 0.0) ** lighting.shininess, 0.0)
    rgb = np.asarray(base_rgb, np.float64) * (lighting.ambient + lighting.diffuse * lambert)[..., None]
    return np.clip(rgb + (lighting.specular * spec)[..., None], 0.0, 1.0)
