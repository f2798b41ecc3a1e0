"""Mesh helpers of the training data (synthetic renders, the skin bank, the photo fits): vertex normals, neighbour
averaging, the scaled-orthographic pose of model points on image points."""

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


def scaled_orthographic(model_points: np.ndarray, image_points: np.ndarray
                        ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Scaled-orthographic pose of (P, 3) model points on (P, 2) image points: the least-squares affine 2 x 3 map of
    the centred points made a scaled rotation (nearest orthonormal rows R12 = U Vt of its SVD, scale = mean
    singular value). Returns (scale, r12 (2, 3), model centre (3,), image centre (2,)), so that
    ``image ~ scale * (model - model_centre) @ r12.T + image_centre``. The image axes are the caller's (y down or
    up): the third axis r1 x r2 points away from the viewer for y down, towards it for y up."""
    model_points = np.asarray(model_points, np.float64)
    image_points = np.asarray(image_points, np.float64)
    centre_model, centre_image = model_points.mean(axis=0), image_points.mean(axis=0)
    m, *_ = np.linalg.lstsq(model_points - centre_model, image_points - centre_image, rcond=None)  # (3, 2)
    u, s, vt = np.linalg.svd(m.T, full_matrices=False)
    return float(s.mean()), u @ vt, centre_model, centre_image
