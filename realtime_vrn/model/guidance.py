"""Network input: the crop as a float tensor, plus landmark heatmaps for guided models, plus MediaPipe's depth.

Input channels by model (``VRNConfig.in_channels``):

- 3 (unguided): RGB in [0, 1];
- 3 + 68 (guided): RGB, then 68 Gaussian heatmaps of the iBUG-68 points (peak 1);
- 3 + 68 + 1 (guided with MediaPipe's depth): RGB, heatmaps, then MediaPipe's tessellated 468-point surface
  rendered into the crop as a depth map (:func:`mediapipe_depth_map`): a prior the network refines.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from realtime_vrn.contracts import check_image
from realtime_vrn.model.network import VRNConfig

#: Standard deviation of the guided model's Gaussian landmark heatmaps, in pixels of a 192-px crop
#: (scaled with the input size). The paper's guided VRN used Gaussians of about this width.
HEATMAP_SIGMA_192 = 2.0
#: Each Gaussian is written within this many sigmas (+1 px) of its point and is exactly 0 beyond, where the
#: full Gaussian is below 1e-9: 13 x 13 px of 96 x 96 at sigma 1, so the 68 maps cost a zero fill and little else.
HEATMAP_WINDOW_SIGMAS = 6.0


def landmark_heatmaps(points_crop: np.ndarray, size: int, sigma: float | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
    """One Gaussian per landmark.

    points_crop: (K, 2) float, crop pixels (x right, y down, pixel centres at integers).
    out: optional (K, size, size) float32 array to write into (the network input's heatmap channels, so that
    no copy follows).
    Returns (K, size, size) float32 in [0, 1], peak 1 at each point (0 where the point is far outside or not
    finite), exactly 0 beyond :data:`HEATMAP_WINDOW_SIGMAS` sigmas of it.
    """
    pts = np.asarray(points_crop, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected (K, 2) landmark points, got shape {pts.shape}")
    if out is None:
        out = np.empty((len(pts), size, size), np.float32)
    elif out.shape != (len(pts), size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be ({len(pts)}, {size}, {size}) float32, got {out.shape} {out.dtype}")
    _write_heatmaps(pts, size, sigma, out, None)
    return out


def _write_heatmaps(pts: np.ndarray, size: int, sigma: float | None, out: np.ndarray,
                    written: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`landmark_heatmaps` into ``out`` ((K, size, size) float32; pts (K, 2) float32). written: None, or
    the (lo, hi) windows this function returned for ``out`` last time: ``out`` is then taken to be 0 outside
    them and only they are cleared, instead of the whole array (2.5 MB for the shipped model). Returns the
    windows written: (K, 2) int64 corners (x, y), lo inclusive, hi exclusive, clipped to [0, size]."""
    sigma = HEATMAP_SIGMA_192 * size / 192 if sigma is None else sigma
    radius = int(np.ceil(HEATMAP_WINDOW_SIGMAS * sigma)) + 1
    two_sigma2 = np.float32(2 * sigma**2)
    if _compiled_heatmaps is not None:  # one compiled pass: ~0.03 ms instead of ~0.09 in a dozen NumPy calls
        lo, hi = (np.empty((len(pts), 2), np.int64), np.empty((len(pts), 2), np.int64)) if written is None else written
        _compiled_heatmaps(pts, two_sigma2, radius, out, written is None, lo, hi)
        return lo, hi
    grid = np.arange(size, dtype=np.float32)
    far = 4 * size  # a point this far out has an empty window either way (no integer overflow)
    finite = np.isfinite(pts).all(axis=1, keepdims=True)
    centre = np.rint(np.where(finite, np.clip(pts, -far, far), -far)).astype(np.int64)  # not finite: off the crop
    lo, hi = np.clip(centre - radius, 0, size), np.clip(centre + radius + 1, 0, size)
    with np.errstate(over="ignore", invalid="ignore"):  # far points: exp(-inf) = 0, never in a window anyway
        gx = np.exp(-((grid[None, :] - pts[:, 0:1]) ** 2) / two_sigma2)  # (K, size) over x
        gy = np.exp(-((grid[None, :] - pts[:, 1:2]) ** 2) / two_sigma2)  # (K, size) over y
    if written is None:
        out.fill(0.0)
    else:
        for k, ((x0, y0), (x1, y1)) in enumerate(zip(*written)):
            out[k, y0:y1, x0:x1] = 0.0
    # separable: each map is the outer product of its point's x and y Gaussians, within its window
    for k in range(len(pts)):
        (x0, y0), (x1, y1) = lo[k], hi[k]
        if x0 < x1 and y0 < y1:
            np.multiply(gy[k, y0:y1, None], gx[k, None, x0:x1], out=out[k, y0:y1, x0:x1])
    return lo, hi


try:  # numba writes the 68 windows in one compiled pass
    from realtime_vrn.model._heatmaps import write_heatmaps as _compiled_heatmaps
except ImportError:  # numba missing or broken: the NumPy route of _write_heatmaps (the surface falls back to scikit-image)
    _compiled_heatmaps = None


#: Input channels of a guided model that also takes MediaPipe's depth map.
MP_DEPTH_CHANNELS = 3 + 68 + 1


def uses_mediapipe_depth(cfg: VRNConfig) -> bool:
    """True for models whose last input channel is MediaPipe's depth map."""
    return cfg.in_channels == MP_DEPTH_CHANNELS


def mediapipe_depth_map(points_crop: np.ndarray, size: int) -> np.ndarray:
    """MediaPipe's face surface rendered into the crop as a depth map.

    points_crop: (>= 468, 3) float Face Mesh points in crop pixels: x right, y down (pixel centres at integers),
    z in crop pixels with **larger = nearer** (``-z_norm * frame width * crop scale``). The 468 surface points are
    triangulated (:func:`realtime_vrn.landmarks.topology.face_mesh_triangles`), drawn far to near (painter's
    order by mean depth, OpenCV's filled polygons with 1/16-px vertices), and each covered pixel centre gets the
    depth of its triangle's plane there (barycentric, extrapolated for edge pixels just outside it).
    Returns (size, size) float32: ``1 + (z - z_max) / (size / 2)`` on the face (1 at its front-most point,
    lower behind it, clipped to [0.05, 1]), 0 where the face does not cover the pixel.
    """
    import cv2

    from realtime_vrn.landmarks.topology import N_SURFACE_POINTS, face_mesh_triangles

    pts = np.asarray(points_crop, np.float64)
    if pts.ndim != 2 or pts.shape[0] < N_SURFACE_POINTS or pts.shape[1] != 3:
        raise ValueError(f"expected (478, 3) Face Mesh points in crop pixels, got shape {pts.shape}")
    pts = pts[:N_SURFACE_POINTS]
    tri = face_mesh_triangles()
    order = np.argsort(pts[tri, 2].mean(axis=1))  # far first: nearer triangles overwrite them
    ids = np.full((size, size), -1, np.int32)
    fixed = np.round(pts[:, :2] * 16).astype(np.int32)  # 4 fractional bits (cv2 shift=4)
    for t in order:
        cv2.fillConvexPoly(ids, fixed[tri[t]], int(t), lineType=cv2.LINE_8, shift=4)
    out = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(ids >= 0)
    if len(ys) == 0:
        return out
    corners = pts[tri[ids[ys, xs]]]  # (P, 3, 3)
    e1, e2 = corners[:, 1, :2] - corners[:, 0, :2], corners[:, 2, :2] - corners[:, 0, :2]
    d = np.column_stack([xs, ys]).astype(np.float64) - corners[:, 0, :2]
    den = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    den = np.where(np.abs(den) > 1e-12, den, 1e-12)
    # OpenCV also fills pixels whose centre lies just outside the triangle (its outline): extrapolate the
    # triangle's plane there (exact for a plane), bounded for slivers.
    u = np.clip((d[:, 0] * e2[:, 1] - e2[:, 0] * d[:, 1]) / den, -4.0, 5.0)
    w = np.clip((e1[:, 0] * d[:, 1] - d[:, 0] * e1[:, 1]) / den, -4.0, 5.0)
    z = (1 - u - w) * corners[:, 0, 2] + u * corners[:, 1, 2] + w * corners[:, 2, 2]
    out[ys, xs] = np.clip(1.0 + (z - pts[:, 2].max()) / (size / 2), 0.05, 1.0)
    return out


def mediapipe_in_crop(points: np.ndarray, crop) -> np.ndarray:
    """``FaceLandmarks.points`` (478, 3) frame px (z = z_norm x width, smaller nearer) -> (478, 3) float64 crop
    px with z larger nearer, as :func:`mediapipe_depth_map` takes them. crop: a ``CropTransform``."""
    pts = np.asarray(points, np.float64)
    return np.column_stack([crop.to_crop(pts[:, :2]), -pts[:, 2] * crop.scale])


def image_channels(image_rgb: np.ndarray) -> np.ndarray:
    """The network's image channels: (..., H, W, 3) uint8 RGB -> (..., 3, H, W) float32 RGB in [0, 1] (channels
    first; no mean/std normalisation, as the release). The one rule of inference, training, the self-check and the
    benchmarks: a division by 255, the same values as torch's ``.float().div_(255)``."""
    return np.moveaxis(np.asarray(image_rgb), -1, -3).astype(np.float32) / np.float32(255.0)


def network_input(crop_rgb: np.ndarray, cfg: VRNConfig, points68_crop: np.ndarray | None = None,
                  mediapipe_crop: np.ndarray | None = None) -> np.ndarray:
    """Build the (1, C, S, S) float32 network input.

    crop_rgb: (S, S, 3) uint8 RGB crop. Channels 0-2: RGB scaled to [0, 1] (no mean/std normalisation, as the
    release). Guided models (C = 3 + 68) append the 68 landmark heatmaps of ``points68_crop`` ((68, 2) crop px);
    models with C = 3 + 68 + 1 append :func:`mediapipe_depth_map` of ``mediapipe_crop`` ((478, 3) crop px, z
    larger nearer), or a zero map when it is None (no MediaPipe face: how such training samples were shown).
    A stream of frames builds the same arrays faster in reused memory with :class:`NetworkInputs`.
    """
    s = cfg.input_size
    batch = np.empty((1, cfg.in_channels, s, s), np.float32)  # every channel written in place: no concatenation
    _fill_input(batch, crop_rgb, cfg, points68_crop, mediapipe_crop, None)
    return batch


def _fill_input(batch: np.ndarray, crop_rgb: np.ndarray, cfg: VRNConfig, points68_crop: np.ndarray | None,
                mediapipe_crop: np.ndarray | None, written: tuple[np.ndarray, np.ndarray] | None
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`network_input` into ``batch`` ((1, C, S, S) float32); ``written``: the heatmap windows this
    function returned for ``batch`` last time, or None (see :func:`_write_heatmaps`). Returns the heatmap
    windows written (None for an unguided model)."""
    s = cfg.input_size
    check_image(crop_rgb, "crop", size=s)
    np.divide(np.moveaxis(crop_rgb, -1, 0), np.float32(255.0), out=batch[0, :3], dtype=np.float32)
    if not cfg.guided:
        return None
    if points68_crop is None:
        raise ValueError("a guided model needs the 68 landmarks in crop pixels")
    heatmaps = 68 + (1 if uses_mediapipe_depth(cfg) else 0)
    if 3 + heatmaps != cfg.in_channels:
        raise ValueError(f"model expects {cfg.in_channels} input channels, got 3 + {heatmaps} heatmaps")
    pts = np.asarray(points68_crop, dtype=np.float32)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmark points, got shape {pts.shape}")
    windows = _write_heatmaps(pts, s, None, batch[0, 3:71], written)
    if uses_mediapipe_depth(cfg):
        batch[0, 71] = 0.0 if mediapipe_crop is None else mediapipe_depth_map(mediapipe_crop, s)
    return windows


class NetworkInputs:
    """:func:`network_input` for a stream of frames of one model, in arrays that are reused once the backend
    has read them.

    A guided model's 68 heatmap channels are 0 except within each landmark's window, so a reused array only
    has its previous windows cleared instead of its 2.5 MB zero-filled (the pipeline's network input: 0.31 ->
    0.12 ms a frame on two cores). Same values as :func:`network_input`, bit for bit.

    ``build`` may run on another thread than ``release`` (the pipelined loop prepares frame N + 1 while frame
    N is inferred). An array never released (a frame dropped on the way) is not reused, and not kept either.
    """

    #: Released arrays kept for reuse (the pipelined loop has at most three in flight).
    KEEP = 4

    def __init__(self, cfg: VRNConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._free: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]] = []
        # lent arrays by id: a weak reference (to tell the array from a later one at the same address) and the
        # heatmap windows written into it
        self._lent: dict[int, tuple[weakref.ref, tuple[np.ndarray, np.ndarray] | None]] = {}

    def warm_up(self) -> "NetworkInputs":
        """Build and release one input now (a blank crop, the landmarks at its middle), so that the heatmaps'
        compiled pass is compiled or loaded at start-up and not on the first frame; the array is reused."""
        s = self.cfg.input_size
        points = np.full((68, 2), (s - 1) / 2, np.float32) if self.cfg.guided else None
        self.release(self.build(np.zeros((s, s, 3), np.uint8), points))
        return self

    def build(self, crop_rgb: np.ndarray, points68_crop: np.ndarray | None = None,
              mediapipe_crop: np.ndarray | None = None) -> np.ndarray:
        """:func:`network_input`'s (1, C, S, S) float32 array (same arguments), in a released array if any."""
        with self._lock:
            batch, written = self._free.pop() if self._free else (None, None)
        if batch is None:
            s = self.cfg.input_size
            batch = np.empty((1, self.cfg.in_channels, s, s), np.float32)
        # an error here (a bad crop or points) drops the array: half written, it is not reused
        windows = _fill_input(batch, crop_rgb, self.cfg, points68_crop, mediapipe_crop, written)
        with self._lock:
            if len(self._lent) >= 4 * self.KEEP:  # forget the arrays dropped on the way
                self._lent = {key: entry for key, entry in self._lent.items() if entry[0]() is not None}
            self._lent[id(batch)] = (weakref.ref(batch), windows)
        return batch

    def release(self, batch: np.ndarray) -> None:
        """``batch`` (an array :meth:`build` returned) is no longer read: it may be built into again."""
        with self._lock:
            entry = self._lent.pop(id(batch), None)
            if entry is not None and entry[0]() is batch and len(self._free) < self.KEEP:
                self._free.append((batch, entry[1]))
