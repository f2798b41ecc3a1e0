"""A PNG contact sheet of synthetic samples, to look at what the network is trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from realtime_vrn.training.synth import SynthConfig, SynthGenerator, SynthSample
from realtime_vrn.training.volumes import volume_from_depths


def _grey(values: np.ndarray, hi: float) -> np.ndarray:
    v = np.nan_to_num(values, nan=0.0)
    g = (np.clip(v / hi, 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def sample_row(s: SynthSample, depth_bins: int) -> np.ndarray:
    """(S, 5 S, 3) uint8 RGB: crop, crop + true (green) and tracker (red) landmarks, front depth, back depth,
    side view of the volume (occupied anywhere along x; z grows to the left = towards the camera)."""
    import cv2

    size = s.image.shape[0]
    marked = s.image.copy()
    for p in s.crop_points:
        cv2.circle(marked, (int(round(p[0])), int(round(p[1]))), 1, (255, 0, 0), -1)
    for p in s.landmarks[:, :2]:
        cv2.circle(marked, (int(round(p[0])), int(round(p[1]))), 1, (0, 255, 0), -1)
    vol = volume_from_depths(s.front, s.back, depth_bins)
    side = (vol.any(axis=2)[::-1].T * 255).astype(np.uint8)  # rows y, columns z (near camera on the left)
    side = np.repeat(cv2.resize(side, (size, size), interpolation=cv2.INTER_NEAREST)[:, :, None], 3, axis=2)
    return np.concatenate([s.image, marked, _grey(s.front, depth_bins), _grey(s.back, depth_bins), side], axis=1)


def preview_grid(path: str | Path, cfg: SynthConfig, seeds: Iterable[int], columns: int = 2) -> Path:
    import cv2

    with SynthGenerator(cfg) as gen:
        rows = [sample_row(gen.sample(seed), cfg.depth_bins) for seed in seeds]
    per_col = int(np.ceil(len(rows) / columns))
    blank = np.zeros_like(rows[0])
    rows += [blank] * (per_col * columns - len(rows))
    grid = np.concatenate([np.concatenate(rows[c * per_col:(c + 1) * per_col], axis=0) for c in range(columns)], axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[:, :, ::-1])  # OpenCV writes BGR
    return path


def shade_mesh(vertices: np.ndarray, faces: np.ndarray, size: int, yaw_deg: float = 0.0,
               colour: tuple[float, float, float] = (0.75, 0.72, 0.68)) -> np.ndarray:
    """Grey shaded render (size, size, 3) uint8 RGB of a crop-frame mesh (x, y crop px, z = depth index * 0.5,
    larger z nearer), seen from the front (yaw 0) or turned by ``yaw_deg`` about the vertical axis through its
    centroid. Normals are recomputed in the camera frame (x right, y up, z towards the viewer)."""
    from realtime_vrn.training.meshops import vertex_normals
    from realtime_vrn.training.synth import SynthRasteriser

    if len(faces) == 0:
        return np.zeros((size, size, 3), np.uint8)
    v = np.asarray(vertices, np.float64)
    cam = np.column_stack([v[:, 0], -v[:, 1], v[:, 2]])  # y up: right-handed camera frame
    c = cam.mean(axis=0)
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    cam = (cam - c) @ rot.T + c
    pos = np.column_stack([cam[:, 0], -cam[:, 1], cam[:, 2] * 2.0]).astype(np.float32)  # back to crop px / index
    normals = vertex_normals(cam.astype(np.float32), faces.astype(np.int32))
    n = len(v)
    lights = {"dirs": np.array([[0.3, 0.4, 1.0], [-0.6, 0.1, 0.5]], np.float32),
              "colours": np.array([[0.75, 0.75, 0.75], [0.25, 0.25, 0.25]], np.float32),
              "ambient": np.full(3, 0.15), "shininess": 20.0, "detail": 0.0, "detail_freq": 1.0}
    zr = float(np.abs(pos[:, 2]).max() + 10)
    with SynthRasteriser(size, 2) as r:
        rgba = r.colour(pos, faces.astype(np.int32), normals, np.tile(np.float32(colour), (n, 1)),
                        np.full(n, 0.15, np.float32), cam.astype(np.float32), (zr, -zr), lights)
    return (np.clip(rgba[:, :, :3], 0, 1) * 255 + 0.5).astype(np.uint8)
