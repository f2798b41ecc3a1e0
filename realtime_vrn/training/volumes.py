"""Ground-truth volumes as the paper builds them, from two depth maps.

The paper's volumes (``vrn-reference.md`` §4): the face area only, its frontal depth map back-filled to a fixed
depth, placed in the image-aligned crop frame, z stretched x2, binary. :class:`~realtime_vrn.training.synth.
SynthGenerator` rasterises the closed solid "face surface + walls + back plane at a fixed depth behind the face,
in the head's own frame" in the crop frame and keeps, per crop pixel, the nearest (``front``) and farthest
(``back``) depth index of that solid. The volume is then everything between the two:

    volume[z, y, x] = back[y, x] <= z <= front[y, x]      (False where the maps are NaN)

Depth indices: voxel units along z (one voxel = half a crop pixel, the paper's x2 stretch), higher = nearer the
camera; the voxel of index k has its centre at z = k. Voxels beyond [0, D) are cut off.
Storing two (S, S) maps instead of an (D, S, S) volume makes on-disk shards ~D/4 times smaller and lets the
training loop build targets on the fly (one comparison per voxel).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def volume_from_depths(front: np.ndarray, back: np.ndarray, depth_bins: int) -> np.ndarray:
    """Binary volume (D, S, S) bool, ordered (z, y, x), from front/back depth maps (S, S) float (NaN = empty)."""
    if front.shape != back.shape or front.ndim != 2:
        raise ValueError(f"expected two (S, S) depth maps, got {front.shape} and {back.shape}")
    z = np.arange(depth_bins, dtype=np.float32)[:, None, None]
    with np.errstate(invalid="ignore"):
        return (z >= back[None]) & (z <= front[None])


def target_from_depths(front: torch.Tensor, back: torch.Tensor, depth_bins: int) -> torch.Tensor:
    """Batched torch version: (N, S, S) float depth maps (NaN = empty) -> (N, D, S, S) float targets in {0, 1}."""
    z = torch.arange(depth_bins, device=front.device, dtype=front.dtype).view(1, -1, 1, 1)
    return ((z >= back[:, None]) & (z <= front[:, None])).to(front.dtype)


def downsample_target(target: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool (N, D, S, S) targets over factor x factor pixels -> (N, D, S/f, S/f) occupancy in [0, 1]."""
    return F.avg_pool2d(target, factor)


def front_surface(volume: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Depth (S, S) float32 of the first crossing of ``level`` seen from the camera (from high z down), linear
    between voxel centres; NaN where the column never reaches the level. volume (D, S, S) float (occupancy or
    probability), ordered (z, y, x)."""
    v = np.asarray(volume, np.float32)
    d = v.shape[0]
    above = v >= level
    hit = above.any(axis=0)
    flipped = above[::-1]
    k = d - 1 - np.argmax(flipped, axis=0)  # highest z index at or above the level
    y, x = np.indices(k.shape)
    z = k.astype(np.float32)
    nxt = np.minimum(k + 1, d - 1)
    v0, v1 = v[k, y, x], v[nxt, y, x]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where((nxt > k) & (v0 != v1), (v0 - level) / (v0 - v1), 0.0)
    z = z + np.clip(frac, 0.0, 1.0)
    return np.where(hit, z, np.nan).astype(np.float32)
