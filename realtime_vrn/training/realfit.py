"""Real photos with fitted geometry (300W-LP's recipe, with the ICT model): training samples whose image is a real
photo and whose ground truth is the ICT face fitted to MediaPipe's points on it.

The renders teach exact geometry on synthetic appearance; these teach real appearance with approximate geometry.
For every face MediaPipe finds in a pool photo or clip frame:

1. **Correspondence** (once, :func:`mediapipe_correspondence`; the result ships as
   ``assets/mediapipe_ict_correspondence.txt``): which ICT vertex each of MediaPipe's 468 surface
   points sits on, voted over rendered near-frontal faces where both are known (an annotated evaluation set:
   ``face_vertices`` + the ``.mp.npz`` sidecar of ``realtime-vrn data annotate``): per sample, the face vertex
   nearest each MediaPipe point among those on the front-most layer under it; per point, the vertex nearest the
   median of its votes on the neutral face.
2. **Fit** (:class:`Fitter`): ICT identity (the first ``n_identity`` modes, prior N(0, 1)) and expression
   (53 blendshapes, prior around 0, kept in [0, 1]) and a scaled-orthographic pose, by alternating a pose fit and
   a ridge least-squares fit of the weights to the 468 points: x and y in full, MediaPipe's z with weight
   ``z_weight`` (a weak prior: its depth is the least reliable part of its output).
3. **Sample** (:class:`RealSampler`): the crop the pipeline would cut from MediaPipe's 68 points, and the fitted
   face's closed solid rasterised in that crop frame (the renders' ``front``/``back`` depth maps, same
   :func:`~realtime_vrn.training.synth.face_solid`), written in the renders' shard format so training mixes them.

Photos come from ``../shared/data/faces-pool`` and ``../shared/data/faces`` (MIT/Apache/BSD projects); AFLW photos
are never read (:data:`~realtime_vrn.training.skinbank.EXCLUDED_NAME`). The shards are training data under
``out/``, never committed.

Frames: MediaPipe points (478, 3) frame px, x right, y down, z = z_norm x width (smaller nearer). Fitted head
vertices in the ICT head frame (cm, +y up, +z towards the viewer). Crop frame as in
:mod:`realtime_vrn.training.synth` (x, y crop px, z depth index = 2 x crop scale x frame px, larger nearer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from realtime_vrn.training.facemodel import FaceModel

log = logging.getLogger(__name__)

#: MediaPipe's surface points (the 10 iris points 468-477 are left out: the ICT face area has no iris).
N_SURFACE = 468
#: Seeds of real-photo samples start here (renders use 0.., the held-out renders 1e9..).
REAL_SEED_BASE = 2_000_000_000
#: Weight of MediaPipe's face-oval points in the fit (a silhouette: they slide over the face as it turns).
OVAL_WEIGHT = 0.3
#: Falloff (cm, on the neutral face) of the residual warp that puts the fitted face on MediaPipe's points.
WARP_SIGMA_CM = 1.0
#: The shipped correspondence (package data of ``realtime_vrn.assets``).
CORRESPONDENCE_FILE = "mediapipe_ict_correspondence.txt"
#: Faces fitted: smallest landmark box side (px) and largest |yaw| (deg) of the fitted pose.
MIN_BOX_PX = 60.0
MAX_YAW_DEG = 60.0


def face_oval() -> np.ndarray:
    """Indices (int) of MediaPipe's face-oval points (``FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL``: the
    face's outline)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    return np.array(sorted({i for c in FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL for i in (c.start, c.end)}),
                    np.int64)


def mediapipe_correspondence(face_vertices: np.ndarray, mp_points: np.ndarray, pose: np.ndarray,
                             neutral: np.ndarray, max_yaw: float = 20.0) -> np.ndarray:
    """(468,) int32 ICT vertex index of each MediaPipe surface point, voted over rendered faces.

    face_vertices: (N, V_f, 3) float32 face-area vertices in the crop frame (x, y px, z larger nearer);
    mp_points: (N, 478, 3) MediaPipe points in the same crop px (NaN rows: no face); pose: (N, 3) degrees;
    neutral: (V, 3) the ICT neutral vertices (cm), whose first V_f are the face area."""
    from scipy.spatial import cKDTree

    n_face = face_vertices.shape[1]
    votes = [[] for _ in range(N_SURFACE)]
    for verts, pts, angles in zip(face_vertices, mp_points, pose):
        if not np.isfinite(pts[0, 0]) or abs(angles[0]) > max_yaw or abs(angles[1]) > max_yaw:
            continue
        tree = cKDTree(verts[:, :2])
        spacing = float(np.median(tree.query(verts[:, :2], k=2)[0][:, 1]))
        for i, near in enumerate(tree.query_ball_point(pts[:N_SURFACE, :2], r=2.0 * spacing)):
            if near:  # the nearest of the vertices on the front-most layer (z: 2 x px)
                near = np.asarray(near)
                front = near[verts[near, 2] >= verts[near, 2].max() - 16.0 * spacing]
                votes[i].append(front[int(np.argmin(np.linalg.norm(verts[front, :2] - pts[i, :2], axis=1)))])
    if min(len(v) for v in votes) == 0:
        raise ValueError("too few near-frontal annotated faces to place every MediaPipe point")
    face_tree = cKDTree(neutral[:n_face])
    out = np.empty(N_SURFACE, np.int32)
    for i, v in enumerate(votes):
        out[i] = face_tree.query(np.median(neutral[np.asarray(v)], axis=0))[1]
    return out


@dataclass(frozen=True)
class Fit:
    """One face's fit. identity (K_id,), expression (K_ex,) float32 weights; scale px/cm; rotation (3, 3) head ->
    camera (rows: image x, image up, towards the viewer; :meth:`Fitter.project`); shift (3,) frame px (x, y,
    z); yaw degrees (> 0: the subject turns to its left, as :func:`~realtime_vrn.training.synth.rotation_matrix`);
    rms_px: the fit's xy residual over the 468 points."""

    identity: np.ndarray
    expression: np.ndarray
    scale: float
    rotation: np.ndarray
    shift: np.ndarray
    yaw: float
    rms_px: float


class Fitter:
    """Fits the ICT model to MediaPipe's 468 surface points (see module docstring, step 2)."""

    def __init__(self, model: FaceModel, correspondence: np.ndarray, *, n_identity: int = 60,
                 z_weight: float = 1.0, identity_reg: float = 0.05, expression_reg: float = 0.2,
                 iterations: int = 6) -> None:
        self.model = model
        self.ids = np.asarray(correspondence, np.int64)
        self.neutral = model.neutral[self.ids].astype(np.float64)                       # (P, 3)
        self.basis = np.concatenate([model.identity_modes[:n_identity], model.expression_modes])[:, self.ids]
        self.basis = self.basis.astype(np.float64)                                      # (K, P, 3)
        self.n_identity = n_identity
        self.z_weight, self.iterations = z_weight, iterations
        self.point_weight = np.ones(N_SURFACE)
        self.point_weight[face_oval()] = OVAL_WEIGHT
        self._warp: tuple[float, np.ndarray] | None = None
        self.reg = np.concatenate([np.full(n_identity, identity_reg), np.full(model.n_expressions, expression_reg)])

    @staticmethod
    def pose(shape: np.ndarray, target_xy: np.ndarray, scale: float | None = None
             ) -> tuple[float, np.ndarray, np.ndarray]:
        """Scaled-orthographic pose of (P, 3) head points onto (P, 2) image points (y down): scale (px/cm; the
        given one if not None), rotation (3, 3) whose rows are the head->image x axis, image up axis (-y) and the
        towards-viewer axis, and the image shift (2,) of the head origin."""
        from realtime_vrn.training.meshops import scaled_orthographic

        flip = np.array([1.0, -1.0])
        fitted, r12, cm, ci = scaled_orthographic(shape, np.asarray(target_xy, np.float64) * flip)  # image x, up
        rotation = np.vstack([r12, np.cross(r12[0], r12[1])])
        scale = fitted if scale is None else scale
        shift = (ci - scale * (cm @ r12.T)) * flip
        return scale, rotation, shift

    def project(self, vertices: np.ndarray, fit: Fit) -> np.ndarray:
        """Head-frame vertices (V, 3) cm -> (V, 3) frame px: x, y (y down), z px larger nearer (zero at the head
        origin plus ``fit.shift[2]``)."""
        cam = fit.scale * (np.asarray(vertices, np.float64) @ fit.rotation.T)
        return np.column_stack([cam[:, 0] + fit.shift[0], -cam[:, 1] + fit.shift[1], cam[:, 2] + fit.shift[2]])

    def fit(self, points478: np.ndarray) -> Fit:
        """Fit to MediaPipe's (478, 3) frame px points (z = z_norm x width, smaller nearer)."""
        pts = np.asarray(points478, np.float64)[:N_SURFACE]
        target = np.column_stack([pts[:, 0], pts[:, 1], -pts[:, 2]])                   # z larger nearer
        k = self.basis.shape[0]
        tgt = np.column_stack([target[:, 0], -target[:, 1], target[:, 2]])          # px: x right, y up, nearer
        # start: the neutral face's pose; its scale stays (the identity modes carry the face's size: fitting both
        # lets them trade size for scale without end)
        scale, rot, shift = self.pose(self.neutral, target[:, :2])
        t = np.array([shift[0], -shift[1]])
        weights = np.zeros(k)
        rw = np.array([1.0, 1.0, self.z_weight])                                      # residual weights
        prior = np.concatenate([np.zeros(5), self.reg * len(pts)])
        for _ in range(self.iterations):  # Gauss-Newton on pose (rotation, shift) and weights together
            shape = self.neutral + np.tensordot(weights, self.basis, axes=1)          # (P, 3) cm
            rotated = shape @ rot.T
            r = rotated + np.array([t[0], t[1], 0.0]) / scale - tgt / scale           # (P, 3) cm
            r[:, 2] -= r[:, 2].mean()                                                 # MediaPipe's z: no origin
            # d(R v)/d theta for R <- R exp([theta]x): -R [v]x
            skew = np.zeros((len(shape), 3, 3))
            skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -shape[:, 2], shape[:, 1], -shape[:, 0]
            skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = shape[:, 2], -shape[:, 1], shape[:, 0]
            j_rot = -np.einsum("dc,pce->pde", rot, skew)                              # (P, 3, 3)
            j_t = np.zeros((len(shape), 3, 2))
            j_t[:, 0, 0] = j_t[:, 1, 1] = 1.0 / scale
            j_w = np.einsum("kpc,dc->pdk", self.basis, rot)                           # (P, 3, K)
            jac = np.concatenate([j_rot, j_t, j_w], axis=2)
            jac[:, 2] -= jac[:, 2].mean(axis=0)
            both = rw[None, :] * self.point_weight[:, None]                            # (P, 3)
            jac_w = (jac * both[:, :, None]).reshape(-1, 5 + k)
            r_w = (r * both).ravel()
            params = np.concatenate([np.zeros(5), weights])
            step = np.linalg.solve(jac_w.T @ jac_w + np.diag(prior), -(jac_w.T @ r_w + prior * params))
            rot = rot @ Rotation.from_rotvec(step[:3]).as_matrix()
            t = t + step[3:5]
            weights = weights + step[5:]
            weights[self.n_identity:] = np.clip(weights[self.n_identity:], 0.0, 1.0)
        shape = self.neutral + np.tensordot(weights, self.basis, axes=1)
        shift = np.array([t[0], -t[1]])
        posed = scale * (shape @ rot.T)
        xy = np.column_stack([posed[:, 0] + shift[0], -posed[:, 1] + shift[1]])
        z_shift = float(np.mean(target[:, 2] - posed[:, 2]))
        rms = float(np.sqrt(np.mean(np.sum((xy - target[:, :2]) ** 2, axis=1))))
        yaw = float(np.degrees(np.arcsin(np.clip(-rot[2, 0], -1, 1))))    # as synth.rotation_matrix's yaw
        return Fit(weights[: self.n_identity].astype(np.float32), weights[self.n_identity:].astype(np.float32),
                   scale, rot, np.array([shift[0], shift[1], z_shift]), yaw, rms)

    def head(self, fit: Fit, points478: np.ndarray | None = None, sigma_cm: float = WARP_SIGMA_CM) -> np.ndarray:
        """The fitted head's vertices (V, 3) float32 cm, head frame. With ``points478`` (what it was fitted to),
        each face-area vertex also moves parallel to the image by the fit's xy residuals at MediaPipe's inner
        points (not the face oval, a silhouette), spread with a Gaussian falloff of ``sigma_cm`` on the neutral
        face: the fitted face then lies on MediaPipe's points in the image."""
        head = self.model.vertices(fit.identity, fit.expression)
        if points478 is None:
            return head
        inner = self.point_weight == 1.0
        posed = self.project(head[self.ids[inner]], fit)
        residual = (np.asarray(points478, np.float64)[:N_SURFACE][inner, :2] - posed[:, :2]) / fit.scale  # cm
        camera = np.column_stack([residual[:, 0], -residual[:, 1], np.zeros(len(residual))])  # x right, y up
        spread = self._warp_weights(sigma_cm)
        head[: len(spread)] += ((spread @ camera) @ fit.rotation).astype(np.float32)
        return head

    def _warp_weights(self, sigma_cm: float) -> np.ndarray:
        """(V_face, P_inner) float64 normalised Gaussian weights of the inner points' vertices, on the neutral face
        (the same for every fit: computed once)."""
        from realtime_vrn.training.synth import FACE_LAST_VERTEX

        if self._warp is None or self._warp[0] != sigma_cm:
            anchors = self.model.neutral[self.ids[self.point_weight == 1.0]].astype(np.float64)
            face = self.model.neutral[: FACE_LAST_VERTEX + 1].astype(np.float64)
            d2 = ((face[:, None, :] - anchors[None]) ** 2).sum(-1)
            w = np.exp(-d2 / (2 * sigma_cm ** 2))
            self._warp = (sigma_cm, w / (w.sum(axis=1, keepdims=True) + 0.05))
        return self._warp[1]


# ------------------------------------------------------------------------------------------------ samples


class RealSampler:
    """Training samples (:class:`~realtime_vrn.training.synth.SynthSample`) from real photos and their fits.

    cfg: a :class:`~realtime_vrn.training.synth.SynthConfig` (its ``size``, ``depth_bins``, ``front_margin``,
    ``landmark_noise``, ``crop_shift`` and ``crop_scale`` are used). Owns a moderngl context (context manager)."""

    def __init__(self, cfg, model: FaceModel, correspondence: np.ndarray, **fit_options) -> None:
        from realtime_vrn.training.synth import FaceAssets, SynthRasteriser

        self.cfg, self.model = cfg, model
        self.assets = FaceAssets.build(model)
        self.fitter = Fitter(model, correspondence, **fit_options)
        self._raster = SynthRasteriser(cfg.size, 1)

    def __enter__(self) -> "RealSampler":
        self._raster.open()
        return self

    def __exit__(self, *exc) -> None:
        self._raster.close()

    def fit(self, points478: np.ndarray, image_shape: tuple[int, ...] | None = None) -> Fit | None:
        """The face's fit, or None when it is too small, too turned, fitted badly (rms over 4% of its box) or,
        given the image's (H, W, ...) shape, partly outside the image (a face cut by the border: MediaPipe
        guesses the rest)."""
        from realtime_vrn.landmarks.ibug68 import to_ibug68
        from realtime_vrn.training.synth import landmark_box_side

        box = landmark_box_side(to_ibug68(points478)[:, :2])
        if box < MIN_BOX_PX:
            return None
        if image_shape is not None:
            h, w = image_shape[:2]
            xy = np.asarray(points478)[:N_SURFACE, :2]
            if not ((xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)).all():
                return None
        fit = self.fitter.fit(points478)
        if abs(fit.yaw) > MAX_YAW_DEG or fit.rms_px > 0.04 * box:
            return None
        return fit

    def sample(self, image_rgb: np.ndarray, points478: np.ndarray, fit: Fit, seed: int,
               jitter: bool, head: np.ndarray | None = None) -> "SynthSample":
        """One sample: the crop the pipeline cuts from MediaPipe's 68 points (with ``jitter``, the points moved
        by the renders' tracker noise first, for both the crop and the guidance points) and the fitted face's
        volume in it. image_rgb: (H, W, 3) uint8 RGB; points478: MediaPipe's (478, 3) frame px; head: the fitted
        head's vertices (``fitter.head(fit, points478)``) when the caller already has them (several crops of one
        face)."""
        from realtime_vrn.crop import CropTransform
        from realtime_vrn.landmarks.ibug68 import to_ibug68
        from realtime_vrn.training.synth import (_ZFAR_BINS, _ZNEAR_BINS, FACE_LAST_VERTEX, SynthSample,
                                                 face_solid, tracker_noise)

        cfg = self.cfg
        rng = np.random.default_rng([seed, 0xF17])
        points68 = to_ibug68(points478)[:, :2].astype(np.float32)
        if jitter:
            points68 = tracker_noise(rng, points68, cfg)
        crop = CropTransform.from_landmarks(points68, size=cfg.size)
        if head is None:
            head = self.fitter.head(fit, points478)
        posed = self.fitter.project(head, fit)

        def to_crop_frame(p: np.ndarray) -> np.ndarray:
            return np.column_stack([crop.to_crop(p[:, :2]), 2.0 * crop.scale * p[:, 2]]).astype(np.float32)

        z_shift = cfg.front_index - 2.0 * crop.scale * posed[: FACE_LAST_VERTEX + 1, 2].max()
        solid_v, solid_f = face_solid(head, self.assets)
        solid = to_crop_frame(self.fitter.project(solid_v, fit))
        solid[:, 2] += z_shift
        zrange = (cfg.depth_bins * _ZNEAR_BINS, cfg.depth_bins * _ZFAR_BINS)
        front, back = self._raster.depth_extremes(solid, solid_f, zrange)
        landmarks = to_crop_frame(posed[self.model.landmarks68])
        landmarks[:, 2] += z_shift
        faces = to_crop_frame(posed[: FACE_LAST_VERTEX + 1])
        faces[:, 2] += z_shift
        pitch = float(np.degrees(np.arcsin(np.clip(-fit.rotation[2, 1], -1, 1))))
        roll = float(np.degrees(np.arctan2(fit.rotation[0, 1], fit.rotation[1, 1])))
        return SynthSample(image=crop.warp(image_rgb), landmarks=landmarks,
                           crop_points=crop.to_crop(points68).astype(np.float32), front=front, back=back,
                           face_vertices=faces, pose=np.array([fit.yaw, pitch, roll], np.float32), seed=int(seed))


def packaged_correspondence() -> np.ndarray:
    """(468,) int32: the correspondence shipped in ``realtime_vrn/assets/mediapipe_ict_correspondence.txt``
    (made by :func:`correspondence_from_shards`; its header says how)."""
    from importlib.resources import files

    text = files("realtime_vrn.assets").joinpath(CORRESPONDENCE_FILE).read_text()
    out = np.loadtxt(text.splitlines(), dtype=np.int32)
    if out.shape != (N_SURFACE,):
        raise ValueError(f"{CORRESPONDENCE_FILE}: expected {N_SURFACE} rows, got {out.shape}")
    return out


def correspondence_from_shards(folder: str | Path, model: FaceModel) -> np.ndarray:
    """:func:`mediapipe_correspondence` over every annotated shard with ``face_vertices`` in a folder (an
    evaluation set rendered with ``data render --heldout`` and annotated with ``data annotate``)."""
    from realtime_vrn.training.annotate import sidecar_path
    from realtime_vrn.training.dataset import load_shard, shard_files

    verts, points, poses = [], [], []
    for shard in shard_files(folder):
        side = sidecar_path(shard)
        d = load_shard(shard)
        if "face_vertices" not in d or not side.is_file():
            continue
        with np.load(side) as z:
            points.append(z["mp_points"])
        verts.append(d["face_vertices"])
        poses.append(d["pose"])
    if not verts:
        raise FileNotFoundError(f"no annotated evaluation shards (face_vertices + .mp.npz) in {folder}: render "
                                "them with `realtime-vrn data render --heldout` and run `realtime-vrn data annotate`")
    return mediapipe_correspondence(np.concatenate(verts), np.concatenate(points), np.concatenate(poses),
                                    model.neutral)


def build_real_shards(sources: list[Path], out: str | Path, renders: str | Path | None = None, *, size: int = 96,
                      depth_bins: int = 100, frames_per_clip: int = 64, variants: int = 2,
                      shard_size: int = 500, progress: bool = True, face_model: str | Path | None = None) -> dict:
    """Fit every usable face of the photos and clips under ``sources`` and write samples (``variants`` crops per
    face: the pipeline's own, then jittered ones) as ``shard-K.npz`` files under ``out``, K from
    :data:`REAL_SEED_BASE`, in the renders' shard format plus ``source = "photo-fit"``. ``renders``: an annotated
    evaluation shard folder to vote the correspondence on (None: the packaged one). Returns counts."""
    from tqdm import tqdm

    from realtime_vrn.landmarks.registry import open_backend
    from realtime_vrn.training.dataset import config_json, stack_samples
    from realtime_vrn.training.skinbank import _frames, list_sources
    from realtime_vrn.training.synth import SynthConfig

    model = FaceModel.load(face_model)
    corr = packaged_correspondence() if renders is None else correspondence_from_shards(renders, model)
    cfg = SynthConfig(size=size, depth_bins=depth_bins)
    files = list_sources(sources)
    if not files:
        raise FileNotFoundError(f"no images or videos under {', '.join(map(str, sources))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples, written, counts = [], [], {"files": len(files), "frames": 0, "faces": 0, "fitted": 0, "samples": 0}

    def flush() -> None:
        if not samples:
            return
        path = out / f"shard-{samples[0].seed:010d}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, config=np.array(config_json(cfg)), source=np.array("photo-fit"),
                 **stack_samples(samples))
        tmp.rename(path)
        written.append(path)
        samples.clear()

    seed = REAL_SEED_BASE
    with open_backend("auto", static=True, max_faces=8) as mesh, RealSampler(cfg, model, corr) as sampler:
        for path in tqdm(files, desc="photo fits", unit="file", disable=not progress):
            for _, image in _frames(path, frames_per_clip):
                counts["frames"] += 1
                for pts in mesh.detect(image, 0.0):
                    counts["faces"] += 1
                    fit = sampler.fit(pts, image.shape)
                    if fit is None:
                        continue
                    counts["fitted"] += 1
                    head = sampler.fitter.head(fit, pts)
                    for v in range(variants):
                        samples.append(sampler.sample(image, pts, fit, seed, jitter=v > 0, head=head))
                        seed += 1
                        if len(samples) == shard_size:
                            flush()
    flush()
    counts["samples"] = seed - REAL_SEED_BASE
    counts["shards"] = len(written)
    log.info("photo fits %s: %s", out, counts)
    return counts
