"""Surface jitter on a still face: what the temporal filter (:mod:`realtime_vrn.surface.smoothing`) buys.

Jitter is the motion of the surface between consecutive frames of a still face, after removing the mean
translation: for each vertex of frame t, the distance to the nearest vertex of frame t-1 (the meshes are dense,
spacing well under a pixel), median over vertices, converted to millimetres with the average adult
interpupillary distance (the iris centres are MediaPipe points 468 and 473).
"""

from __future__ import annotations

import numpy as np

from realtime_vrn.config import FUSION_WEIGHT
from realtime_vrn.surface.smoothing import LogitSmoother

#: Average adult interpupillary distance in mm (Dodgson 2004: mean 63 mm), to express pixels in mm.
IPD_MM = 63.0
#: MediaPipe refined-landmark indices of the two iris centres.
IRIS_CENTRES = (468, 473)


def mm_per_pixel(points478: np.ndarray) -> float:
    """Millimetres per frame pixel from the iris centres of (478, 3) frame-pixel landmarks."""
    a, b = points478[IRIS_CENTRES[0], :2], points478[IRIS_CENTRES[1], :2]
    return IPD_MM / max(float(np.linalg.norm(a - b)), 1e-6)


def surface_motion(prev_vertices: np.ndarray, vertices: np.ndarray) -> float:
    """Median nearest-vertex distance from ``vertices`` to ``prev_vertices`` after aligning their centroids.

    Both (V, 3) float32 in the same frame (image frame: pixels). Returns the median distance in those units.
    """
    from scipy.spatial import cKDTree

    if len(prev_vertices) == 0 or len(vertices) == 0:
        return float("nan")
    shifted = vertices - vertices.mean(0) + prev_vertices.mean(0)
    distances, _ = cKDTree(prev_vertices).query(shifted, k=1)
    return float(np.median(distances))


def still_face_frames(image_rgb: np.ndarray, frames: int, noise_sigma: float, seed: int = 0):
    """A still face: the same (H, W, 3) uint8 RGB photo ``frames`` times with fresh Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    base = image_rgb.astype(np.float32)
    for _ in range(frames):
        yield np.clip(base + rng.normal(0.0, noise_sigma, base.shape), 0, 255).astype(np.uint8)


def measure_jitter(checkpoint, image_rgb: np.ndarray, backend: str = "auto", frames: int = 60,
                   noise_sigma: float = 4.0, smoothing: bool = True, mediapipe_weight: float = FUSION_WEIGHT) -> dict:
    """Jitter of the reconstructed surface on a still face (a photo with fresh sensor noise in every frame).

    Runs the video-mode tracker and the network as a live run does, with (landmark One Euro filter + logit
    smoother) or without smoothing, with MediaPipe's depth averaged into the surface at ``mediapipe_weight`` (the
    run's --mediapipe-weight; 0: the network's surface alone). Returns {median_mm, p95_mm, frames, noise_sigma,
    smoothing} of the per-frame surface motion (see :func:`surface_motion`), in mm via :func:`mm_per_pixel`.
    """
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.pipeline import Reconstructor
    from realtime_vrn.surface.fusion import DepthFusion

    class _Frame:
        def __init__(self, image: np.ndarray, index: int) -> None:
            self.image, self.index, self.timestamp, self.media_time = image, index, index / 30.0, None

    cfg = read_checkpoint_header(checkpoint).cfg
    motions: list[float] = []
    with open_backend(backend, checkpoint) as net, open_tracker(static=False, smoothing=smoothing) as tracker:
        rec = Reconstructor(tracker, net, cfg, media_fps=30.0, smoother=LogitSmoother() if smoothing else None,
                            fusion=DepthFusion(cfg.input_size, mediapipe_weight).warm_up())
        prev = None
        for i, image in enumerate(still_face_frames(image_rgb, frames, noise_sigma)):
            out = rec.process(_Frame(image, i))
            if out.mesh is None or out.mesh.is_empty:
                prev = None
                continue
            if prev is not None:
                motions.append(surface_motion(prev, out.mesh.vertices) * mm_per_pixel(out.landmarks.points))
            prev = out.mesh.vertices
    a = np.asarray(motions[5:] if len(motions) > 10 else motions)  # skip the filters' start-up
    return {
        "median_mm": float(np.median(a)) if a.size else None,
        "p95_mm": float(np.percentile(a, 95)) if a.size else None,
        "frames": int(a.size),
        "noise_sigma": noise_sigma,
        "smoothing": smoothing,
    }
