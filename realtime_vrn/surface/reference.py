"""The reference the fast extractor is measured against, the distance between meshes, and test volumes.

``reference_surface`` is the straightforward route: the release's full upsample with torch (the same call as
``model.network.upsample_logits``), then scikit-image's marching cubes on the whole (D, S, S) volume, with the
same crop-frame mapping as :mod:`realtime_vrn.surface.extract`. ``compare_with_reference`` times both on one
frame's logits and reports their distance, for the benchmark. ``face_like_logits`` makes a VRN-like
low-resolution logit field (a face-shaped height field back-filled to a flat back plane, like the training
volumes) for tests and measurements without a network.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from realtime_vrn.model.network import HEAD_UPSAMPLE, VRNConfig

from .extract import LEVEL, Z_SCALE, SurfaceExtractor, mesh_from_marching_cubes
from .mesh import Mesh

#: Nearest triangles (by centroid) searched per query point in :func:`surface_distance`.
CANDIDATE_TRIANGLES = 8
#: Logits per crop pixel of signed distance in :func:`face_like_logits`: p goes 0.1 -> 0.9 over ~4 px, about
#: one low-res cell, like a trained network's soft boundary.
FACE_LOGIT_SLOPE = 1.0
#: |logit| cap in :func:`face_like_logits` (p within 1e-5 of 0 or 1 far from the surface).
FACE_LOGIT_SATURATION = 12.0
#: Consecutive runs of one method in compare_with_reference before switching to the other.
ROUND_RUNS = 5
#: Query points per vectorised batch in :func:`surface_distance` (bounds its memory to ~150 MB).
DISTANCE_BATCH = 65536


def config_for(logits: np.ndarray, output_stride: int = HEAD_UPSAMPLE) -> VRNConfig:
    """The VRNConfig whose output has this (D, h, w) shape at this output stride (the release's 4 by default;
    only input_size, depth_bins and output_stride matter here)."""
    d, h, w = np.shape(logits)[-3:]
    if h != w:
        raise ValueError(f"expected square logits (D, h, h), got {np.shape(logits)}")
    return VRNConfig(input_size=h * output_stride, depth_bins=d, output_stride=output_stride)


def upsample_torch(logits: np.ndarray, size: int) -> np.ndarray:
    """(D, h, w) float32 -> (D, size, size) float32 with the release's own op (torch, align_corners=True)."""
    import torch

    from realtime_vrn.model.network import upsample_logits

    with torch.no_grad():
        return upsample_logits(torch.from_numpy(np.ascontiguousarray(logits, np.float32))[None], size)[0].numpy()


def mesh_from_volume(volume: np.ndarray) -> Mesh:
    """Marching cubes of a full-resolution (D, S, S) logit volume (z, y, x) at logit 0 -> crop-frame Mesh.

    scikit-image's defaults (Lewiner, degenerate triangles kept) on the whole volume: the surface stays open
    where the solid meets the volume's border. Empty or full volumes give ``Mesh.empty()``.
    """
    volume = np.ascontiguousarray(volume, np.float32)
    if not (volume.max() > LEVEL and volume.min() <= LEVEL):
        return Mesh.empty()
    try:
        verts, faces, normals, _ = marching_cubes(volume, LEVEL)
    except RuntimeError:  # no cube straddles the level
        return Mesh.empty()
    return mesh_from_marching_cubes(verts, faces, normals)


def reference_surface(logits: np.ndarray, output_stride: int = HEAD_UPSAMPLE) -> Mesh:
    """(D, h, w) float32 low-res logits -> crop-frame Mesh: full torch upsample (x ``output_stride``, the
    network's; the release's 4 by default), full-volume marching cubes."""
    logits = np.asarray(logits, np.float32)
    return mesh_from_volume(upsample_torch(logits, logits.shape[-1] * output_stride))


def _point_triangle_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Euclidean distance from points p to triangles (a, b, c); all (..., 3) float64, broadcast."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.einsum("...i,...i", n, n)
    ap = p - a
    # Barycentric coordinates of p's projection on the triangle's plane.
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.einsum("...i,...i", np.cross(ap, ac), n) / nn
        w = np.einsum("...i,...i", np.cross(ab, ap), n) / nn
        plane = np.abs(np.einsum("...i,...i", ap, n)) / np.sqrt(nn)
    inside = (nn > 0) & (v >= 0) & (w >= 0) & (v + w <= 1)

    def segment(s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
        d = s1 - s0
        dd = np.einsum("...i,...i", d, d)
        t = np.clip(np.einsum("...i,...i", p - s0, d) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
        return np.linalg.norm(p - (s0 + t[..., None] * d), axis=-1)

    edges = np.minimum(np.minimum(segment(a, b), segment(b, c)), segment(c, a))
    return np.where(inside, plane, edges)


def _distances_to_surface(points: np.ndarray, mesh: Mesh) -> np.ndarray:
    """(N,) distance from each point to the nearest of the CANDIDATE_TRIANGLES triangles of ``mesh`` whose
    centroids are nearest. An upper bound of the true point-to-mesh distance, equal to it unless the closest
    triangle is not among those candidates (it is for any reasonably uniform marching-cubes mesh)."""
    tri = mesh.vertices.astype(np.float64)[mesh.faces]  # (F, 3, 3)
    k = min(CANDIDATE_TRIANGLES, len(tri))
    tree = cKDTree(tri.mean(axis=1))
    out = np.empty(len(points))
    for start in range(0, len(points), DISTANCE_BATCH):
        p = points[start : start + DISTANCE_BATCH].astype(np.float64)
        _, idx = tree.query(p, k=k)
        cand = tri[idx.reshape(len(p), k)]  # (n, k, 3, 3)
        d = _point_triangle_distance(p[:, None, :], cand[:, :, 0], cand[:, :, 1], cand[:, :, 2])
        out[start : start + len(p)] = d.min(axis=1)
    return out


def surface_distance(mesh_a: Mesh, mesh_b: Mesh) -> dict[str, float]:
    """Symmetric vertex-to-surface distance between two meshes in the same frame, in its units.

    For every vertex of each mesh, the distance to the other mesh's triangles (point-to-triangle, exact among
    the nearest candidates, see :func:`_distances_to_surface`); both directions pooled. In the crop frame the
    unit is a crop pixel = one voxel side in x and y (two voxels in z). Returns {"mean", "p95", "max"};
    two empty meshes are at distance 0, an empty and a non-empty one at infinity.
    """
    if mesh_a.is_empty or mesh_b.is_empty:
        d = 0.0 if mesh_a.is_empty and mesh_b.is_empty else float("inf")
        return {"mean": d, "p95": d, "max": d}
    d = np.concatenate([_distances_to_surface(mesh_a.vertices, mesh_b), _distances_to_surface(mesh_b.vertices, mesh_a)])
    return {"mean": float(d.mean()), "p95": float(np.percentile(d, 95)), "max": float(d.max())}


def _timed(fn, arg) -> tuple[float, Mesh]:
    t0 = time.perf_counter()
    out = fn(arg)
    return (time.perf_counter() - t0) * 1e3, out


def compare_with_reference(logits: np.ndarray, runs: int = 20, extractor=None, crop_image: np.ndarray | None = None,
                           crop=None) -> dict:
    """Time the fast surface stage against :func:`reference_surface` on one frame's (D, h, w) logits.

    extractor: a CPU extractor (:mod:`realtime_vrn.surface.extractors`; default: the scikit-image one).
    crop_image, crop: the frame's (S, S, 3) uint8 RGB network input and its crop transform; when given, the
    fast side is the whole stage as the pipeline runs it (iso-surface, colours, frame mapping), the reference
    still only scikit-image's marching cubes on the full volume (so the ratio is conservative).

    One warm-up run of each (its meshes give the distances: correctness is checked before timing), then ``runs``
    runs of each, alternating in rounds of ROUND_RUNS so that load drifting on a busy machine hits both alike,
    while most runs still find the caches as a steady stream of frames leaves them (one run right after the
    other method's 30 MB volume is slower). Times are wall-clock ms of the whole call, on whatever threads
    torch and BLAS are configured to use. ``speedup`` = reference median / fast median;
    distances are :func:`surface_distance` between the two meshes, in crop pixels (voxel sides).
    """
    from .colour import coloured_in_image_frame

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if (crop_image is None) != (crop is None):
        raise ValueError("give both crop_image and crop, or neither")
    logits = np.ascontiguousarray(logits, np.float32)
    extractor = extractor or SurfaceExtractor(config_for(logits))
    stride = extractor.cfg.output_stride
    fast_mesh = extractor.extract(logits)
    ref_mesh = reference_surface(logits, stride)
    dist = surface_distance(fast_mesh, ref_mesh)

    def stage(x: np.ndarray) -> Mesh:
        mesh = extractor.extract(x)
        return mesh if crop is None else coloured_in_image_frame(mesh, crop_image, crop)

    stage(logits)  # warm-up of the colour and frame mapping path too
    fast, ref = [], []
    for start in range(0, runs, ROUND_RUNS):
        n = min(ROUND_RUNS, runs - start)
        fast += [_timed(stage, logits)[0] for _ in range(n)]
        ref += [_timed(lambda x: reference_surface(x, stride), logits)[0] for _ in range(n)]
    fast_median, ref_median = float(np.median(fast)), float(np.median(ref))
    return {
        "fast_median_ms": fast_median,
        "fast_p95_ms": float(np.percentile(fast, 95)),
        "reference_median_ms": ref_median,
        "reference_p95_ms": float(np.percentile(ref, 95)),
        "speedup": ref_median / fast_median,
        "mean_distance": dist["mean"],
        "p95_distance": dist["p95"],
        "max_distance": dist["max"],
        "fast_vertices": int(len(fast_mesh.vertices)),
        "fast_faces": int(len(fast_mesh.faces)),
        "reference_vertices": int(len(ref_mesh.vertices)),
        "reference_faces": int(len(ref_mesh.faces)),
        "runs": runs,
        "extractor": getattr(extractor, "name", type(extractor).__name__),
        "fast_stage": "iso-surface" if crop is None else "iso-surface + colours + frame mapping",
    }


def _lowres_node_coordinates(cfg: VRNConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop-frame coordinates of the low-res logit nodes, broadcastable (D,1,1), (1,h,1), (1,1,h).

    With align_corners=True, low-res node i sits on full-res pixel i * (S - 1) / (h - 1).
    """
    pitch = (cfg.input_size - 1) / (cfg.grid_size - 1)
    z = np.arange(cfg.depth_bins, dtype=np.float64)[:, None, None] * Z_SCALE
    y = np.arange(cfg.grid_size, dtype=np.float64)[None, :, None] * pitch
    x = np.arange(cfg.grid_size, dtype=np.float64)[None, None, :] * pitch
    return z, y, x


def ellipsoid_logits(cfg: VRNConfig, centre, radii, slope: float = 1.0) -> np.ndarray:
    """(D, h, h) float32 low-res logits of a solid ellipsoid, positive inside.

    centre, radii: (x, y, z) in the crop frame (crop pixels; z = depth index * 0.5). The logit is
    ``slope * R * (1 - |q|^2) / 2`` with q the point in ellipsoid-normalised coordinates and R the mean radius:
    about ``slope`` x the signed distance near a near-spherical surface.
    """
    z, y, x = _lowres_node_coordinates(cfg)
    (cx, cy, cz), (rx, ry, rz) = centre, radii
    q2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2
    r = (rx + ry + rz) / 3.0
    return (slope * r * (1.0 - q2) / 2.0).astype(np.float32)


def face_like_logits(cfg: VRNConfig | None = None, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    """(D, h, h) float32 low-res logits shaped like a VRN output for a frontal face; higher z = nearer.

    The solid is what the training volumes hold: a face-shaped front height field (an ellipsoidal dome with a
    nose, brow ridge, eye sockets and lips) over an elliptical outline, back-filled to a flat back plane at a
    fixed depth. Logits are FACE_LOGIT_SLOPE x an approximate signed distance in crop pixels, saturated at
    +-FACE_LOGIT_SATURATION, plus smooth noise of amplitude ``noise``. Deterministic in ``seed``. Sizes scale
    with the crop and depth (192 x 200: face 124 px wide, 156 px tall, back plane at depth index 36, nose tip
    at 174; about 80k vertices).
    """
    cfg = cfg or VRNConfig()
    slope, saturation = FACE_LOGIT_SLOPE, FACE_LOGIT_SATURATION
    z, y, x = _lowres_node_coordinates(cfg)
    s = cfg.input_size / 192.0
    depth_px = cfg.depth_bins * Z_SCALE
    cx, cy, ax, ay = 96 * s, 92 * s, 62 * s, 78 * s
    back, relief = 0.18 * depth_px, 0.7 * depth_px - 0.18 * depth_px  # back plane, dome height (crop px)
    u, v = (x - cx) / ax, (y - cy) / ay
    rho = np.sqrt(u**2 + v**2)
    dome = np.sqrt(np.clip(1.0 - rho**2, 0.0, None)) ** 0.8

    def bump(px, py, sx, sy, height):
        return height * np.exp(-(((x - cx - px * s) / (sx * s)) ** 2 + ((y - cy - py * s) / (sy * s)) ** 2))

    features = (
        bump(0, 8, 7, 20, 20)  # nose
        + bump(0, -30, 40, 8, 5)  # brow ridge
        - bump(-22, -14, 11, 7, 7)  # eye sockets
        - bump(22, -14, 11, 7, 7)
        + bump(0, 40, 16, 5, 4)  # lips
    ) * s
    front = back + relief * dome + features * np.clip(1.0 - rho, 0.0, 1.0)
    sd = np.minimum(np.minimum(front - z, z - back), (1.0 - rho) * min(ax, ay))
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((cfg.depth_bins // 8 + 2, 4, 4))
    smooth = _smooth_upsample(coarse, (cfg.depth_bins, cfg.grid_size, cfg.grid_size))
    return (np.clip(slope * sd, -saturation, saturation) + noise * smooth).astype(np.float32)


def _smooth_upsample(coarse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    from scipy.ndimage import zoom

    factors = [n / c for n, c in zip(shape, coarse.shape)]
    out = zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1], : shape[2]]
