"""Mesh helpers of the training data (synthetic renders and the skin bank): vertex normals, neighbour averaging."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def vertex_adjacency(faces: np.ndarray, n: int) -> sparse.csr_matrix:
    """(n, n) row-normalised averaging matrix of a mesh with n vertices and triangles ``faces`` (F, 3): each row
    averages a vertex with its edge neighbours (itself included)."""
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    a = sparse.csr_matrix((np.ones(i.size, np.float32), (i, j)), shape=(n, n))
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel() + 1.0
    return sparse.diags(1.0 / deg) @ (a + sparse.identity(n, format="csr"))


def smooth_values(values: np.ndarray, adjacency: sparse.csr_matrix, iterations: int) -> np.ndarray:
    """Per-vertex ``values`` (n, ...) averaged over the neighbours ``iterations`` times (``vertex_adjacency``)."""
    for _ in range(iterations):
        values = adjacency @ values
    return values


def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3) float32 of a triangle mesh in a right-handed frame."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        for c in range(3):
            n[:, c] += np.bincount(f[:, k], weights=fn[:, c], minlength=len(v))
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)
