"""Mesh checks shared by the surface tests: exact measures, no tolerance of their own."""

from __future__ import annotations

import numpy as np

from realtime_vrn.surface.mesh import Mesh


def area_and_volume(mesh: Mesh) -> tuple[float, float]:
    """Surface area and signed enclosed volume (divergence theorem; positive for outward winding)."""
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    return float(area), float(volume)


def is_closed(mesh: Mesh) -> bool:
    """Every undirected edge is shared by exactly two faces, used once in each direction."""
    f = mesh.faces.astype(np.int64)
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    n = len(mesh.vertices)
    directed_unique = len(np.unique(a * n + b)) == len(a)
    _, counts = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_counts=True)
    return directed_unique and bool(np.all(counts == 2))


def face_normals(mesh: Mesh) -> np.ndarray:
    """(F, 3) float64 unnormalised face normals by the right-hand rule on each triangle's winding."""
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
