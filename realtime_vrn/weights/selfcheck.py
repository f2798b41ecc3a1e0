"""After a conversion: does the network see a face where there is one? A check on a bundled real photo.

The photo is ``assets/selfcheck/astronaut-face.jpg`` (a 240 x 240 cut of scikit-image's ``astronaut``, NASA,
public domain; see ``assets/selfcheck/README.md``), stored with its 68 iBUG landmarks (MediaPipe Face Mesh through
the pipeline's iBUG mapping). The crop is the pipeline's: ``CropTransform.from_landmarks(landmarks68, S)``.

The criterion, on the network's full-resolution output volume ``V`` (D, S, S) of logits (occupied where V > 0,
i.e. p > 0.5), in crop pixels, with ``B`` the landmarks' bounding box in the crop (its geometric-mean side is
90 px at S = 192 by construction of the crop) and ``s`` that side:

1. ``occupancy``: between 0.5 % and 60 % of all voxels are occupied (not empty, not full);
2. ``one blob``: the silhouette (pixels with any occupied voxel) has one 4-connected component holding at least
   90 % of its pixels (a face, not speckle);
3. ``face-sized``: that blob's area is between 0.6 and 3 times the area of B (a face with forehead and cheeks
   is larger than the landmark box, and far smaller than the crop);
4. ``in place``: the blob's centroid lies inside B, and the blob covers at least 90 % of B's central part (B
   shrunk to 60 % of its width and height, around B's centre);
5. ``faces the camera``: the front surface (highest occupied z per pixel; higher z = nearer the camera) at the
   nose tip (iBUG point 30; median over a square patch of side 0.2 s around it, in the blob) is at least 5 % of D
   in front of its median along the blob's outline (the face bulges towards the camera; catches a volume
   flipped along z).

A model that fails any item is refused by :func:`require_face`, with every item's measured value in the message.
A random or damaged network fails (tests check this); the released model's output on a frontal face has all five
properties (``shared/docs/vrn-reference.md`` §1.5: a face surface, nose front-most, flat back).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime_vrn.errors import WeightsError

log = logging.getLogger(__name__)

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "selfcheck"
PHOTO = ASSET_DIR / "astronaut-face.jpg"
LANDMARKS = ASSET_DIR / "astronaut-face.json"

#: Fraction of occupied voxels allowed (1).
OCCUPANCY_RANGE = (0.005, 0.60)
#: Share of the silhouette that its largest 4-connected component must hold (2).
MIN_MAIN_BLOB_SHARE = 0.90
#: Blob area over landmark-box area (3).
AREA_RATIO_RANGE = (0.6, 3.0)
#: Central part of the landmark box that must be covered, as a fraction of its width/height, and how much (4).
INNER_BOX_FRACTION = 0.6
MIN_INNER_COVERAGE = 0.90
#: Nose tip (iBUG 68, 0-based) and the half side of the patch around it, as a fraction of s (5): large enough
#: for a stable median (~300 px at S = 192), small enough to stay on the nose and the cheeks beside it.
NOSE_TIP = 30
NOSE_PATCH_HALF_FRACTION = 0.1
#: How far in front of the outline the nose must be, as a fraction of the depth bins (5).
MIN_NOSE_RELIEF = 0.05


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SelfCheckReport:
    """The five checks of the module docstring, each with its measured value."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        return "; ".join(f"{c.name}: {'ok' if c.passed else 'FAILED'} ({c.detail})" for c in self.checks)


def load_face(size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """The bundled face cropped for an S = ``size`` network.

    Returns (crop, landmarks): crop (S, S, 3) uint8 RGB; landmarks (68, 2) float64 crop pixels (x right, y down).
    """
    import cv2

    from realtime_vrn.crop import CropTransform

    bgr = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if bgr is None:
        raise WeightsError(f"the self-check photo {PHOTO} is missing or unreadable; reinstall realtime-vrn")
    photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV decodes BGR; the pipeline works in RGB
    points = np.asarray(json.loads(LANDMARKS.read_text(encoding="utf-8"))["landmarks68"], dtype=np.float64)
    crop = CropTransform.from_landmarks(points, size)
    return crop.warp(photo), crop.to_crop(points)


def check_volume(logits: np.ndarray, landmarks: np.ndarray) -> SelfCheckReport:
    """Apply the criterion of the module docstring.

    logits: (D, S, S) float, ordered (z, y, x), higher z nearer the camera; occupied where > 0.
    landmarks: (68, 2) float, the face's iBUG points in the same crop pixels (x, y).
    """
    from scipy import ndimage

    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise ValueError(f"expected a (D, S, S) volume, got shape {logits.shape}")
    depth_bins = logits.shape[0]
    occupied = logits > 0
    silhouette = occupied.any(axis=0)
    box_lo, box_hi = landmarks.min(axis=0), landmarks.max(axis=0)
    box_area = float(np.prod(box_hi - box_lo))
    checks = []

    fraction = float(occupied.mean())
    lo, hi = OCCUPANCY_RANGE
    checks.append(Check("occupancy", lo <= fraction <= hi, f"{fraction:.1%} of voxels, allowed {lo:.1%}-{hi:.0%}"))

    labels, n = ndimage.label(silhouette)
    if n == 0:
        blob = silhouette
        share = 0.0
    else:
        sizes = np.bincount(labels.ravel())[1:]
        blob = labels == (1 + int(sizes.argmax()))
        share = float(sizes.max() / sizes.sum())
    checks.append(Check("one blob", share >= MIN_MAIN_BLOB_SHARE,
                        f"largest of {n} components holds {share:.0%} of the silhouette, needs "
                        f"{MIN_MAIN_BLOB_SHARE:.0%}"))

    ratio = float(blob.sum()) / box_area
    lo, hi = AREA_RATIO_RANGE
    checks.append(Check("face-sized", lo <= ratio <= hi,
                        f"blob area {blob.sum()} px = {ratio:.2f} x the landmark box, allowed {lo}-{hi}"))

    checks.append(_placement(blob, box_lo, box_hi))
    side = float(np.sqrt(box_area))
    checks.append(_relief(occupied, blob, landmarks[NOSE_TIP], round(NOSE_PATCH_HALF_FRACTION * side), depth_bins))
    return SelfCheckReport(tuple(checks))


def _placement(blob: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> Check:
    if not blob.any():
        return Check("in place", False, "no blob")
    ys, xs = np.nonzero(blob)
    centroid = np.array([xs.mean(), ys.mean()])
    inside = bool(np.all(centroid >= box_lo) and np.all(centroid <= box_hi))
    centre, half = (box_lo + box_hi) / 2, (box_hi - box_lo) * INNER_BOX_FRACTION / 2
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    size = blob.shape[0]
    inner = blob[max(y0, 0):min(y1 + 1, size), max(x0, 0):min(x1 + 1, size)]
    coverage = float(inner.mean()) if inner.size else 0.0
    ok = inside and coverage >= MIN_INNER_COVERAGE
    return Check("in place", ok,
                 f"centroid ({centroid[0]:.0f}, {centroid[1]:.0f}) {'inside' if inside else 'outside'} the landmark "
                 f"box ({box_lo[0]:.0f}..{box_hi[0]:.0f}, {box_lo[1]:.0f}..{box_hi[1]:.0f}); covers "
                 f"{coverage:.0%} of its centre, needs {MIN_INNER_COVERAGE:.0%}")


def _relief(occupied: np.ndarray, blob: np.ndarray, nose: np.ndarray, h: int, depth_bins: int) -> Check:
    from scipy import ndimage

    if not blob.any():
        return Check("faces the camera", False, "no blob")
    # Front surface: the highest occupied z of each pixel (argmax on the reversed z axis finds it).
    front = np.where(occupied.any(axis=0), depth_bins - 1 - np.argmax(occupied[::-1], axis=0), -1)
    outline = blob & ~ndimage.binary_erosion(blob)
    x, y = np.round(nose).astype(int)
    patch = front[max(y - h, 0):y + h + 1, max(x - h, 0):x + h + 1]
    patch_blob = blob[max(y - h, 0):y + h + 1, max(x - h, 0):x + h + 1]
    if not patch_blob.any():
        return Check("faces the camera", False, f"nothing at the nose tip ({x}, {y})")
    relief = float(np.median(patch[patch_blob]) - np.median(front[outline]))
    need = MIN_NOSE_RELIEF * depth_bins
    return Check("faces the camera", relief >= need,
                 f"nose tip {relief:+.0f} depth bins in front of the outline, needs +{need:.0f}")


def run_selfcheck(model) -> SelfCheckReport:
    """Run ``model`` (a :class:`~realtime_vrn.model.network.VRN`, RGB input) on the bundled face and check it."""
    import torch

    cfg = model.cfg
    if cfg.in_channels != 3:
        raise ValueError(f"the self-check needs an RGB-only model, got {cfg.in_channels} input channels")
    crop, landmarks = load_face(cfg.input_size)
    from realtime_vrn.model.guidance import image_channels

    batch = torch.from_numpy(image_channels(crop)[None])  # (1, 3, S, S) float32 RGB [0, 1]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(batch.to(device))[0].float().cpu().numpy()
    finally:
        model.train(was_training)
    return check_volume(logits, landmarks)


def require_face(model, source: str = "the model") -> SelfCheckReport:
    """:func:`run_selfcheck`, raising WeightsError (with every measured value) when the model fails it."""
    report = run_selfcheck(model)
    if not report.passed:
        raise WeightsError(f"{source} failed the self-check on a real face, so it was not installed: "
                           f"{report.summary()}. The file is damaged or is not the released VRN model; fetch it "
                           f"again (`realtime-vrn weights fetch`)")
    log.info("self-check passed: %s", report.summary())
    return report
