"""MediaPipe run on the training crops, so the network is trained on the landmarks it will get at inference.

At inference the crop and the guided heatmaps come from MediaPipe's 478 points mapped to the iBUG-68 layout
(:mod:`realtime_vrn.landmarks.ibug68`). The renders' ``crop_points`` are the projected ICT landmarks plus noise,
and the two layouts differ systematically: measured on 90 near-frontal renders (``|yaw| < 30``), MediaPipe's
brows sit 4.6 % of the landmark box lower than ICT's, its nose bridge 3.2 % lower, its jaw 1.9 % higher, with a
per-sample scatter of 4-8 % (``docs/model-card.md``). A guided network trained on ICT's points reads its real
inputs as a differently shaped face.

``annotate_shards`` writes, beside each ``shard-K.npz``, a sidecar ``shard-K.mp.npz`` with ``mp_points``
(N, 478, 3) float32: MediaPipe's points on that sample's crop, in crop pixels (x, y; z = MediaPipe's relative
depth x crop width, smaller nearer), NaN where MediaPipe found no face. The crop (S x S) is upscaled x
:data:`UPSCALE` with bicubic interpolation first: MediaPipe's detector does not find 96-px faces reliably.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from realtime_vrn.training.shards import load_shard, shard_files, sidecar_path

log = logging.getLogger(__name__)

#: The crop is shown to MediaPipe this many times larger (96 px -> 384 px).
UPSCALE = 4


def crop_landmarks(tracker, crop_rgb: np.ndarray, upscale: int = UPSCALE) -> np.ndarray:
    """MediaPipe's (478, 3) float32 points on one crop, crop px (x, y; z scaled like x, smaller nearer), or all
    NaN when no face is found. crop_rgb: (S, S, 3) uint8 RGB."""
    import cv2

    big = cv2.resize(crop_rgb, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    found = tracker.process(np.ascontiguousarray(big), 0.0)
    if found is None:
        return np.full((478, 3), np.nan, np.float32)
    pts = found.points.astype(np.float64) / upscale
    pts[:, :2] += (1 - upscale) / (2 * upscale)  # pixel centres: big pixel u shows crop pixel (u + 0.5) / k - 0.5
    return pts.astype(np.float32)


def annotate_shards(folder: str | Path, progress: bool = True, overwrite: bool = False) -> list[Path]:
    """Write ``shard-K.mp.npz`` for every ``shard-K.npz`` in ``folder`` that lacks one. Returns the sidecars
    written. FileNotFoundError when the folder holds no shard."""
    from tqdm import tqdm

    from realtime_vrn.landmarks import open_tracker

    folder = Path(folder)
    shards = shard_files(folder)
    if not shards:
        raise FileNotFoundError(f"no shard-*.npz files in {folder}")
    todo = [p for p in shards if overwrite or not sidecar_path(p).is_file()]
    written = []
    with open_tracker(static=True, smoothing=False) as tracker:
        bar = tqdm(total=sum(len(load_shard(p)["seed"]) for p in todo), desc="MediaPipe on crops", unit="crop",
                   disable=not progress)
        for shard in todo:
            points = []
            for image in load_shard(shard)["image"]:
                points.append(crop_landmarks(tracker, image))
                bar.update(1)
            points = np.stack(points)
            found = int(np.isfinite(points[:, 0, 0]).sum())
            target = sidecar_path(shard)
            tmp = target.with_name(target.name + ".tmp.npz")
            np.savez(tmp, mp_points=points)
            tmp.replace(target)
            log.info("%s: MediaPipe found %d of %d faces", target.name, found, len(points))
            written.append(target)
        bar.close()
    return written


def depth_points(sidecar_points: np.ndarray) -> np.ndarray | None:
    """One sample's sidecar points (478, 3) (z: MediaPipe's sign, smaller nearer) -> (478, 3) float64 crop px with
    z larger nearer, as :func:`realtime_vrn.model.guidance.mediapipe_depth_map` takes them; None where MediaPipe
    found no face (NaN row)."""
    if not np.isfinite(sidecar_points[0, 0]):
        return None
    pts = np.asarray(sidecar_points, np.float64).copy()
    pts[:, 2] = -pts[:, 2]
    return pts


def mediapipe_points68(mp_points: np.ndarray) -> np.ndarray:
    """(N, 478, 3) sidecar points -> (N, 68, 2) float32 iBUG-68 crop px (NaN rows where no face)."""
    from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68

    return np.ascontiguousarray(mp_points[:, list(MEDIAPIPE_TO_IBUG68), :2], dtype=np.float32)
