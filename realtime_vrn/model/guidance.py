"""Network input: the crop as a float tensor, plus landmark heatmaps for guided models."""

from __future__ import annotations

import numpy as np

from realtime_vrn.model.network import VRNConfig

#: Standard deviation of the guided model's Gaussian landmark heatmaps, in pixels of a 192-px crop
#: (scaled with the input size). The paper's guided VRN used Gaussians of about this width.
HEATMAP_SIGMA_192 = 2.0


def landmark_heatmaps(points_crop: np.ndarray, size: int, sigma: float | None = None) -> np.ndarray:
    """One Gaussian per landmark.

    points_crop: (K, 2) float, crop pixels (x right, y down, pixel centres at integers).
    Returns (K, size, size) float32 in [0, 1], peak 1 at each point (0 where the point is far outside).
    """
    pts = np.asarray(points_crop, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected (K, 2) landmark points, got shape {pts.shape}")
    sigma = HEATMAP_SIGMA_192 * size / 192 if sigma is None else sigma
    grid = np.arange(size, dtype=np.float32)
    gx = np.exp(-((grid[None, :] - pts[:, 0:1]) ** 2) / (2 * sigma**2))  # (K, size) over x
    gy = np.exp(-((grid[None, :] - pts[:, 1:2]) ** 2) / (2 * sigma**2))  # (K, size) over y
    return (gy[:, :, None] * gx[:, None, :]).astype(np.float32)


def network_input(crop_rgb: np.ndarray, cfg: VRNConfig, points68_crop: np.ndarray | None = None) -> np.ndarray:
    """Build the (1, C, S, S) float32 network input.

    crop_rgb: (S, S, 3) uint8 RGB crop. Channels 0-2: RGB scaled to [0, 1] (no mean/std normalisation, as the
    release). Guided models (C = 3 + 68) append the 68 landmark heatmaps of ``points68_crop`` ((68, 2) crop px).
    """
    s = cfg.input_size
    if crop_rgb.shape != (s, s, 3) or crop_rgb.dtype != np.uint8:
        raise ValueError(f"expected a ({s}, {s}, 3) uint8 crop, got {crop_rgb.shape} {crop_rgb.dtype}")
    rgb = crop_rgb.transpose(2, 0, 1).astype(np.float32) * (1.0 / 255.0)
    if not cfg.guided:
        return rgb[None]
    if points68_crop is None:
        raise ValueError("a guided model needs the 68 landmarks in crop pixels")
    maps = landmark_heatmaps(points68_crop, s)
    if 3 + len(maps) != cfg.in_channels:
        raise ValueError(f"model expects {cfg.in_channels} input channels, got 3 + {len(maps)} heatmaps")
    return np.concatenate([rgb, maps], axis=0)[None]
