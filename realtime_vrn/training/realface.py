"""Real-face evaluation: our surface beside MediaPipe's own mesh and a posed mean face, on photos with 3D landmarks.

The folder is in the AFLW2000-3D layout: ``imageNNNNN.jpg`` beside ``imageNNNNN.mat`` holding ``pt3d_68``
(3 x 68: x, y image pixels, y down, pixel centres at integers; z in the same pixel units, **larger = nearer**)
and ``Pose_Para`` (1 x 7: pitch, yaw, roll in radians, then translation and scale).

The surfaces of each photo, all in the image frame (x, y pixels, z pixels, larger z nearer):

- **ours**: the mesh the pipeline produces (:class:`realtime_vrn.pipeline.Reconstructor`, still-image tracker,
  no smoothing): the network's surface with MediaPipe's depth averaged in at the run's weight
  (:mod:`realtime_vrn.surface.fusion`, default 0.5);
- **network**: the network's surface alone (the same logits, weight 0);
- **MediaPipe**: its 468 Face Mesh points, z = -z_norm x image width (``FaceLandmarks.points`` already holds
  z_norm x width with MediaPipe's sign), triangulated by the 3-cliques of ``FACEMESH_TESSELATION``'s edges;
- **mean face**: the ICT neutral face area, rigidly posed by a scaled-orthographic fit of its 68 landmarks to
  MediaPipe's 68 2D points (a surface that knows the pose and nothing about the person);
- **ICT fit**: the ICT face area fitted to MediaPipe's 468 points (identity, expression and pose, then warped onto
  them; :class:`realtime_vrn.training.realfit.Fitter`): what ``data fit`` gives the network as ground truth on
  real photos, so also the ceiling of what training on those labels alone can teach.

Each surface is sampled at the ground-truth (x, y) of the 51 inner landmarks (17-67: brows, nose, eyes, mouth):
the z of the front-most triangle under the point (barycentric). On the points that both ours and MediaPipe's
cover, each side (and the ground truth) has its mean z removed, and the surface error is mean |dz| / sqrt(w * h),
w x h the ground-truth 68-point box; the mean face is scored on those of these points it covers (nearly all: the
ICT face area has eye and mouth openings like MediaPipe's). A photo needs :data:`MIN_COMMON_POINTS` common points.

Also reported: the 68-landmark 3D NME with MediaPipe's (x, y) and z read from each surface (our surface where it
covers the point, else the z of the nearest vertex in (x, y)) against MediaPipe's own z, depth offsets aligned by
means, same normaliser. MediaPipe places its jaw points on a 3D model; our surface ends at the visible face, so
this number is dominated by the jaw and is reported, not optimised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from realtime_vrn.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68
from realtime_vrn.landmarks.topology import face_mesh_triangles
from realtime_vrn.surface.colour import to_image_frame
from realtime_vrn.surface.fusion import DEFAULT_WEIGHT, DepthFusion
from realtime_vrn.training.evaluate import YAW_BUCKETS  # |yaw| buckets of the synthetic evaluation

log = logging.getLogger(__name__)

#: iBUG-68 indices of the inner landmarks (brows, nose, eyes, mouth): the surface error's sample points.
INNER = np.arange(17, 68)
#: A photo is scored when ours and MediaPipe's surface both cover at least this many of the 51 inner points.
MIN_COMMON_POINTS = 10
#: Barycentric tolerance: a point on a shared edge counts as inside (float error must not open cracks).
INSIDE_TOLERANCE = 1e-6
SURFACES = ("ours", "network", "mediapipe", "mean_face", "ict_fit")
METRIC = ("inner-51 surface error: mean |dz| / sqrt(w h) on the inner points both ours and MediaPipe's surface "
          "cover (the mean face: those of them it covers), each side's mean z removed")


class RealFaceError(ValueError):
    """The folder is not in the AFLW2000-3D layout (message says what is missing)."""


# ------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class RealPhoto:
    """One photo with 3D ground truth.

    image: path of the JPEG. points: (68, 3) float64 ground truth (x, y image px y down, z px larger nearer).
    yaw_deg: the ground-truth yaw in degrees (sign as in the file).
    """

    image: Path
    points: np.ndarray
    yaw_deg: float

    @property
    def box_side(self) -> float:
        """sqrt(w * h) of the (x, y) box of the 68 ground-truth points, pixels: the normaliser."""
        extent = self.points[:, :2].max(axis=0) - self.points[:, :2].min(axis=0)
        return float(np.sqrt(extent[0] * extent[1]))


def load_real_folder(folder: str | Path, limit: int | None = None) -> list[RealPhoto]:
    """Photos of an AFLW2000-3D-layout folder, sorted by name (the first ``limit`` of them).

    Raises RealFaceError when the folder is missing, holds no ``.jpg`` with a ``.mat`` beside it, or a ``.mat``
    lacks ``pt3d_68`` (3 x 68) or ``Pose_Para``.
    """
    import scipy.io

    folder = Path(folder)
    if not folder.is_dir():
        raise RealFaceError(f"{folder} is not a folder of photos with 3D landmarks (AFLW2000-3D layout)")
    pairs = [(jpg, jpg.with_suffix(".mat")) for jpg in sorted(folder.glob("*.jpg"))
             if jpg.with_suffix(".mat").is_file()]
    if not pairs:
        raise RealFaceError(f"{folder} holds no imageNNNNN.jpg with an imageNNNNN.mat beside it (AFLW2000-3D layout)")
    photos = []
    for jpg, mat in pairs[:limit]:
        try:
            data = scipy.io.loadmat(str(mat), variable_names=("pt3d_68", "Pose_Para"))
        except (OSError, ValueError, TypeError) as err:
            raise RealFaceError(f"cannot read {mat}: {err}") from err
        pts, pose = data.get("pt3d_68"), data.get("Pose_Para")
        if pts is None or pts.shape != (3, 68) or pose is None or pose.size < 3:
            raise RealFaceError(f"{mat} lacks pt3d_68 (3 x 68) or Pose_Para (pitch, yaw, roll, ...)")
        photos.append(RealPhoto(jpg, np.asarray(pts, np.float64).T.copy(), float(np.degrees(pose.ravel()[1]))))
    return photos


# ------------------------------------------------------------------------------------------------ surfaces


def mediapipe_surface(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's own surface from ``FaceLandmarks.points``.

    points: (478, 3) frame px, z = z_norm x width with MediaPipe's sign (smaller nearer).
    Returns vertices (468, 3) float64 (x, y px, z px **larger nearer**) and faces (T, 3) int32.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[0] < 468 or pts.shape[1] != 3:
        raise ValueError(f"expected (478, 3) Face Mesh points, got {pts.shape}")
    vertices = pts[:468].copy()
    vertices[:, 2] = -vertices[:, 2]
    return vertices, face_mesh_triangles()


def sample_front(vertices: np.ndarray, faces: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """z of the front-most triangle under each point (barycentric interpolation).

    vertices: (V, 3) x, y, z with larger z nearer (any consistent units); faces: (F, 3) int vertex indices;
    xy: (N, 2) points in the vertices' x, y units. Returns (N,) float64, NaN where no triangle covers the point
    (degenerate triangles, zero area in x, y, never cover anything).
    """
    v = np.asarray(vertices, np.float64)
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    out = np.full(len(p), np.nan)
    if len(faces) == 0 or len(v) == 0:
        return out
    tri = v[np.asarray(faces, np.intp)]  # (F, 3, 3)
    lo, hi = tri[:, :, :2].min(axis=1), tri[:, :, :2].max(axis=1)
    for i, q in enumerate(p):
        cand = np.flatnonzero((lo[:, 0] <= q[0]) & (hi[:, 0] >= q[0]) & (lo[:, 1] <= q[1]) & (hi[:, 1] >= q[1]))
        if cand.size == 0:
            continue
        t = tri[cand]
        e1, e2, d = t[:, 1, :2] - t[:, 0, :2], t[:, 2, :2] - t[:, 0, :2], q - t[:, 0, :2]
        den = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
        ok = np.abs(den) > 1e-12
        den = np.where(ok, den, 1.0)
        u = (d[:, 0] * e2[:, 1] - e2[:, 0] * d[:, 1]) / den  # weight of corner 1
        w = (e1[:, 0] * d[:, 1] - d[:, 0] * e1[:, 1]) / den  # weight of corner 2
        inside = ok & (u >= -INSIDE_TOLERANCE) & (w >= -INSIDE_TOLERANCE) & (1 - u - w >= -INSIDE_TOLERANCE)
        if inside.any():
            z = (1 - u - w) * t[:, 0, 2] + u * t[:, 1, 2] + w * t[:, 2, 2]
            out[i] = z[inside].max()
    return out


def nearest_vertex_z(vertices: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N,) z of the vertex nearest each (N, 2) point in x, y (the fallback where a surface leaves a point
    uncovered). vertices: (V, 3), V >= 1."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    _, idx = cKDTree(v[:, :2]).query(np.asarray(xy, np.float64).reshape(-1, 2))
    return v[idx, 2]


@dataclass(frozen=True)
class MeanFace:
    """The ICT neutral face area and its 68 landmarks (model units cm, y up, z towards the viewer)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int32, indices into vertices
    landmarks: np.ndarray  # (68, 3) float64

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MeanFace":
        from realtime_vrn.training.facemodel import FaceModel

        return cls.of(FaceModel.load(path))

    @classmethod
    def of(cls, model) -> "MeanFace":
        """The mean face of a loaded :class:`~realtime_vrn.training.facemodel.FaceModel`."""
        from realtime_vrn.training.synth import FACE_LAST_VERTEX

        faces = model.faces[(model.faces <= FACE_LAST_VERTEX).all(axis=1)]
        return cls(model.neutral[: FACE_LAST_VERTEX + 1].astype(np.float64), faces.astype(np.int32),
                   model.neutral[model.landmarks68].astype(np.float64))

    def posed(self, points68: np.ndarray) -> np.ndarray:
        """The face area posed on (68, 2) image points (x, y px, y down) by a scaled-orthographic fit.

        :func:`~realtime_vrn.training.meshops.scaled_orthographic` of its 68 landmarks (r3 = r1 x r2). Returns (V, 3) float64 image-frame vertices: x, y px, z px larger nearer (z = -s r3 . X; the model's +z
        faces the viewer, the image frame's z = r1 x r2 points into the screen).
        """
        from realtime_vrn.training.meshops import scaled_orthographic

        scale, r12, centre_model, centre_image = scaled_orthographic(self.landmarks, np.asarray(points68)[:, :2])
        r3 = np.cross(r12[0], r12[1])
        centred = self.vertices - centre_model
        out = np.empty_like(self.vertices)
        out[:, :2] = scale * centred @ r12.T + centre_image
        out[:, 2] = -scale * centred @ r3
        return out


class FittedFace:
    """The ICT face area fitted to MediaPipe's 468 points (:mod:`realtime_vrn.training.realfit`)."""

    def __init__(self, fitter) -> None:
        from realtime_vrn.training.synth import FACE_LAST_VERTEX

        self.fitter = fitter
        self.n_face = FACE_LAST_VERTEX + 1
        model = fitter.model
        self.faces = model.faces[(model.faces < self.n_face).all(axis=1)].astype(np.int32)

    @classmethod
    def of(cls, model) -> "FittedFace":
        """The fitter of a loaded :class:`~realtime_vrn.training.facemodel.FaceModel`."""
        from realtime_vrn.training.realfit import Fitter, packaged_correspondence

        return cls(Fitter(model, packaged_correspondence()))

    def surface(self, points478: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V, 3) float64 image frame, x, y px, z px larger nearer; faces (F, 3) int32) for MediaPipe's
        (478, 3) frame px points (z = z_norm x width, smaller nearer)."""
        fit = self.fitter.fit(points478)
        head = self.fitter.head(fit, points478)[: self.n_face]
        return self.fitter.project(head, fit), self.faces


# ------------------------------------------------------------------------------------------------ metrics


def surface_errors(truth: np.ndarray, sampled: dict[str, np.ndarray], norm: float,
                   min_points: int = MIN_COMMON_POINTS,
                   pair: tuple[str, ...] = ("ours", "mediapipe")) -> tuple[dict[str, float] | None, int]:
    """Inner-51 surface error of each surface.

    truth: (51,) ground-truth z (larger nearer); sampled: name -> (51,) z sampled at the ground-truth (x, y),
    NaN where uncovered; norm: sqrt(w * h) of the ground-truth box, > 0. The compared points are those every
    surface named in ``pair`` covers (those present in ``sampled``); any other surface (the mean face) is scored
    on the ones of these it covers too. On its points each side has its mean z removed (the ground truth's over
    the same points); error = mean |dz| / norm. Returns ({name: error}, number of common points), or
    (None, count) when fewer than ``min_points`` are common (a surface left with none scores NaN).
    """
    common = np.isfinite(truth)
    for name in pair:
        if name in sampled:
            common &= np.isfinite(sampled[name])
    n = int(common.sum())
    if n < min_points:
        return None, n
    errors = {}
    for name, z in sampled.items():
        use = common & np.isfinite(z)
        if not use.any():
            errors[name] = float("nan")
            continue
        t = truth[use] - truth[use].mean()
        errors[name] = float(np.abs(z[use] - z[use].mean() - t).mean() / norm)
    return errors, n


def landmark_nme3d(truth: np.ndarray, xy: np.ndarray, z: np.ndarray, norm: float) -> float:
    """68-landmark 3D NME: predicted points (x, y from ``xy`` (68, 2), z (68,)) against ``truth`` (68, 3), the
    z offset aligned by means, mean 3D distance / ``norm``."""
    pred = np.column_stack([xy, z - z.mean() + truth[:, 2].mean()])
    return float(np.linalg.norm(pred - truth, axis=1).mean() / norm)


def bucket_of(yaw_deg: float) -> str:
    a = abs(yaw_deg)
    for lo, hi in YAW_BUCKETS:
        if lo <= a < hi:
            return f"{lo:.0f}-{min(hi, 90):.0f}"
    return f"{YAW_BUCKETS[-1][0]:.0f}-90"


def summarise(per_photo: list[dict], photos: int, detected: int) -> dict:
    """Means over the scored photos, overall and per |yaw| bucket, for each surface and each metric."""
    scored = [p for p in per_photo if p.get("surface_error")]

    def means(rows: list[dict]) -> dict:
        out: dict[str, Any] = {"count": len(rows)}
        for name in SURFACES:
            errs = [r["surface_error"][name] for r in rows]
            nmes = [r["nme3d"][name] for r in rows]
            out[name] = {"surface_error": float(np.mean(errs)) if errs else None,
                         "nme3d": float(np.mean(nmes)) if nmes else None}
        return out

    buckets = {}
    for lo, hi in YAW_BUCKETS:
        key = f"{lo:.0f}-{min(hi, 90):.0f}"
        buckets[key] = means([p for p in scored if p["bucket"] == key])
    return {"photos": photos, "mediapipe_found": detected, "scored": len(scored), "overall": means(scored),
            "buckets": buckets}


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class PhotoSurfaces:
    """What one photo gave: image (H, W, 3) uint8 RGB, the MediaPipe landmarks, and per surface
    (vertices (V, 3) image frame px larger z nearer, faces (F, 3)); ``ours`` may be empty."""

    image: np.ndarray
    landmarks: Any
    crop: Any
    surfaces: dict[str, tuple[np.ndarray, np.ndarray]]


class RealFaceRunner:
    """Reconstructs photos with the pipeline's own stages and gives every surface of each. Use in a with block."""

    def __init__(self, weights: str | Path, backend: str = "auto", device: str = "auto",
                 face_model: str | Path | None = None, mediapipe_weight: float = DEFAULT_WEIGHT) -> None:
        """mediapipe_weight: MediaPipe's share of "ours" (:mod:`realtime_vrn.surface.fusion`)."""
        self.weights, self.backend_name, self.device, self.face_model = Path(weights), backend, device, face_model
        self.mediapipe_weight = mediapipe_weight

    def __enter__(self) -> "RealFaceRunner":
        from realtime_vrn.backends.registry import open_backend
        from realtime_vrn.landmarks import open_tracker
        from realtime_vrn.model.checkpoint import read_checkpoint_header
        from realtime_vrn.pipeline import Reconstructor

        self.cfg = read_checkpoint_header(self.weights).cfg
        from realtime_vrn.training.facemodel import FaceModel

        face_model = FaceModel.load(self.face_model)  # once, for both baselines
        self.mean_face = MeanFace.of(face_model)
        self.fitted = FittedFace.of(face_model)
        self._backend = open_backend(self.backend_name, self.weights, self.device)
        try:
            self._tracker = open_tracker(static=True, smoothing=False)
        except BaseException:
            self._backend.close()
            raise
        self.describe = self._backend.describe()
        self._rec = Reconstructor(self._tracker, self._backend, self.cfg,
                                  fusion=DepthFusion(self.cfg.input_size, self.mediapipe_weight).warm_up())
        return self

    def __exit__(self, *exc: object) -> None:
        self._tracker.close()
        self._backend.close()

    def run(self, image_rgb: np.ndarray, index: int = 0) -> PhotoSurfaces | None:
        """image_rgb: (H, W, 3) uint8 RGB. None when MediaPipe finds no face."""
        from realtime_vrn.sources.base import Frame

        rec = self._rec.process(Frame(image=image_rgb, index=index, timestamp=0.0))
        if rec.landmarks is None:
            return None
        mesh = rec.mesh
        alone = to_image_frame(self._rec.extractor.extract(rec.logits), rec.crop) if self.mediapipe_weight else mesh
        surfaces = {"ours": (mesh.vertices.astype(np.float64), mesh.faces),
                    "network": (alone.vertices.astype(np.float64), alone.faces),
                    "mediapipe": mediapipe_surface(rec.landmarks.points),
                    "mean_face": (self.mean_face.posed(rec.landmarks.points68), self.mean_face.faces),
                    "ict_fit": self.fitted.surface(rec.landmarks.points)}
        return PhotoSurfaces(image_rgb, rec.landmarks, rec.crop, surfaces)


def score_photo(photo: RealPhoto, result: PhotoSurfaces | None) -> dict:
    """Per-photo record: name, yaw, bucket, and (when MediaPipe found a face) the surface errors on the common
    inner points (None when too few) and the 68-landmark NME3D of each surface."""
    row: dict[str, Any] = {"photo": photo.image.name, "yaw": round(photo.yaw_deg, 3),
                           "bucket": bucket_of(photo.yaw_deg), "found": result is not None, "surface_error": None}
    if result is None:
        return row
    norm = photo.box_side
    inner_xy = photo.points[INNER, :2]
    sampled = {name: sample_front(v, f, inner_xy) for name, (v, f) in result.surfaces.items()}
    errors, common = surface_errors(photo.points[INNER, 2], sampled, norm)
    row["common_points"] = common
    row["covered"] = {name: int(np.isfinite(z).sum()) for name, z in sampled.items()}
    row["surface_error"] = errors
    mp68 = result.landmarks.points68.astype(np.float64)
    nme = {}
    for name, (v, f) in result.surfaces.items():
        if name == "mediapipe":
            z = -result.landmarks.points[list(MEDIAPIPE_TO_IBUG68), 2].astype(np.float64)
        elif len(v) == 0:
            z = np.zeros(68)
        else:
            z = sample_front(v, f, mp68)
            missing = ~np.isfinite(z)
            if missing.any():
                z[missing] = nearest_vertex_z(v, mp68[missing])
        nme[name] = landmark_nme3d(photo.points, mp68, z, norm)
    row["nme3d"] = nme
    return row


def evaluate_real(folder: str | Path, weights: str | Path, *, backend: str = "auto", device: str = "auto",
                  limit: int | None = None, sheet_count: int = 6, progress: bool = True,
                  face_model: str | Path | None = None,
                  mediapipe_weight: float = DEFAULT_WEIGHT) -> tuple[dict, list]:
    """Score every photo of ``folder`` (see the module docstring). Returns (report, sheet rows): the report is
    JSON-ready (``summary`` + ``per_photo``); the sheet rows are the :class:`PhotoSurfaces` of the first
    ``sheet_count`` photos where MediaPipe found a face, for :func:`comparison_sheet`."""
    import cv2
    from tqdm import tqdm

    photos = load_real_folder(folder, limit)
    per_photo, sheet = [], []
    with RealFaceRunner(weights, backend, device, face_model, mediapipe_weight) as runner:
        for i, photo in enumerate(tqdm(photos, desc="real photos", unit="photo", disable=not progress)):
            bgr = cv2.imread(str(photo.image), cv2.IMREAD_COLOR)
            if bgr is None:
                raise RealFaceError(f"cannot read {photo.image}")
            result = runner.run(np.ascontiguousarray(bgr[:, :, ::-1]), i)  # OpenCV reads BGR
            per_photo.append(score_photo(photo, result))
            if result is not None and len(sheet) < sheet_count:
                sheet.append(result)
        describe = runner.describe
    summary = summarise(per_photo, len(photos), sum(p["found"] for p in per_photo))
    report = {"folder": str(folder), "weights": str(weights), "backend": describe,
              "mediapipe_weight": mediapipe_weight, "metric": METRIC,
              "min_common_points": MIN_COMMON_POINTS, "summary": summary, "per_photo": per_photo}
    return report, sheet


def format_table(report: dict) -> str:
    """The summary as a plain-text table: one row per |yaw| bucket and overall, the surface error and the
    68-landmark NME3D of each surface, and the photo counts."""
    s = report["summary"]
    lines = [f"{s['photos']} photos, MediaPipe found a face in {s['mediapipe_found']}, {s['scored']} scored "
             f"(>= {report['min_common_points']} inner points on both surfaces)",
             f"{'|yaw|':>7} {'n':>5}  {'surface error: ours':>19} {'VRN alone':>9} {'MediaPipe':>9} "
             f"{'mean face':>9} {'ICT fit':>9}   {'NME3D: ours':>11} {'MediaPipe':>9} {'mean face':>9} {'ICT fit':>9}"]

    def cell(row: dict, name: str, key: str) -> str:
        value = row[name][key]
        return "-" if value is None else f"{value:.4f}"

    for key, row in list(s["buckets"].items()) + [("all", s["overall"])]:
        lines.append(f"{key:>7} {row['count']:>5}  {cell(row, 'ours', 'surface_error'):>19} "
                     f"{cell(row, 'network', 'surface_error'):>9} {cell(row, 'mediapipe', 'surface_error'):>9} {cell(row, 'mean_face', 'surface_error'):>9} "
                     f"{cell(row, 'ict_fit', 'surface_error'):>9}   "
                     f"{cell(row, 'ours', 'nme3d'):>11} {cell(row, 'mediapipe', 'nme3d'):>9} "
                     f"{cell(row, 'mean_face', 'nme3d'):>9} {cell(row, 'ict_fit', 'nme3d'):>9}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ pictures


LABELS = {"ours": "ours (VRN + MediaPipe depth)", "network": "VRN alone", "mediapipe": "MediaPipe mesh", "mean_face": "posed mean face",
          "ict_fit": "ICT fitted to MediaPipe"}


def plot_real(report: dict, path: str | Path, title: str = "") -> Path:
    """PNG: inner-51 surface error per |yaw| bucket, one bar per surface, with the photo counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    keys = list(summary["buckets"]) + ["all"]
    rows = [summary["buckets"][k] for k in keys[:-1]] + [summary["overall"]]
    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=110)
    width = 0.8 / len(SURFACES)
    for j, name in enumerate(SURFACES):
        values = [r[name]["surface_error"] or 0.0 for r in rows]
        bars = ax.bar(np.arange(len(keys)) + (j - (len(SURFACES) - 1) / 2) * width, values, width,
                      label=LABELS[name])
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value, f" {value:.4f}", ha="center", va="bottom", fontsize=6,
                    rotation=90)
    ax.set_xticks(np.arange(len(keys)), [f"{k}\n(n={r['count']})" for k, r in zip(keys, rows)])
    ax.set_xlabel("|yaw| (degrees)")
    ax.set_ylabel("inner-51 surface error (/ sqrt(w h))")
    ax.set_ylim(0, max(r[name]["surface_error"] or 0.0 for r in rows for name in SURFACES) * 1.2)
    ax.set_title(title or f"real photos: {summary['scored']} scored of {summary['photos']} "
                          f"(MediaPipe found {summary['mediapipe_found']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _facing_camera(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """faces (F, 3) wound consistently across the mesh (trimesh's winding repair: each shared edge runs both ways)
    and, as a whole, outwards: the side where most triangles run clockwise in the image (y down), i.e. face the
    camera. MediaPipe's cliques carry no winding; this orients them for shading."""
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    trimesh.repair.fix_winding(mesh)
    f = np.asarray(mesh.faces, np.int32)
    a, b, c = (vertices[f[:, k], :2] for k in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return f if (cross > 0).sum() >= (cross < 0).sum() else np.ascontiguousarray(f[:, ::-1])


def _to_display(vertices: np.ndarray, crop: Any, display: int) -> np.ndarray:
    """Image-frame vertices -> the crop's pixels scaled to ``display`` px (z in the same px, larger nearer)."""
    k = display / crop.size
    out = np.empty((len(vertices), 3), np.float32)
    out[:, :2] = crop.to_crop(vertices[:, :2]) * k
    out[:, 2] = vertices[:, 2] * crop.scale * k
    out[:, 2] -= out[:, 2].min() if len(out) else 0.0
    return out


def comparison_sheet(rows: Iterable[PhotoSurfaces], path: str | Path, display: int = 160) -> Path:
    """PNG (RGB): one row per photo, [crop | ours at 0, 45, 90 deg | MediaPipe's mesh at 0, 45, 90 deg]."""
    import cv2

    from realtime_vrn.training.preview import shade_mesh

    out_rows = []
    for r in rows:
        crop_img = cv2.resize(r.crop.warp(r.image), (display, display), interpolation=cv2.INTER_AREA)
        panels = [crop_img]
        for name in ("ours", "mediapipe"):
            v, f = r.surfaces[name]
            shown = _to_display(v, r.crop, display)
            f = _facing_camera(v, f) if name == "mediapipe" else f
            panels += [shade_mesh(shown, np.asarray(f, np.int32), display, yaw) for yaw in (0.0, 45.0, 90.0)]
        row = np.concatenate(panels, axis=1)
        for j, label in enumerate(("photo", "ours 0", "ours 45", "ours 90", "MediaPipe 0", "MediaPipe 45",
                                   "MediaPipe 90")):
            cv2.putText(row, label, (j * display + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1,
                        cv2.LINE_AA)
        out_rows.append(row)
    if not out_rows:
        raise RealFaceError("no photo with a face to draw")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(out_rows, axis=0)[:, :, ::-1])  # OpenCV writes BGR
    return path


def photos_sheet(folder: str | Path, weights: str | Path, path: str | Path, *, backend: str = "auto",
                 device: str = "auto", limit: int | None = None, face_model: str | Path | None = None,
                 mediapipe_weight: float = DEFAULT_WEIGHT) -> Path:
    """:func:`comparison_sheet` for any photos (``*.jpg``, ``*.jpeg``, ``*.png`` of ``folder``, sorted; no ground
    truth needed): our mesh beside MediaPipe's. Photos without a face are left out (logged)."""
    import cv2

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not files:
        raise RealFaceError(f"{folder} holds no .jpg or .png photos")
    rows = []
    with RealFaceRunner(weights, backend, device, face_model, mediapipe_weight) as runner:
        for i, photo in enumerate(files):
            bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("%s: not a readable image, left out", photo.name)
                continue
            result = runner.run(np.ascontiguousarray(bgr[:, :, ::-1]), i)  # OpenCV reads BGR
            if result is None:
                log.warning("%s: no face found, left out", photo.name)
                continue
            rows.append(result)
    return comparison_sheet(rows, path)


def write_real_report(report: dict, sheet: list, out_dir: str | Path) -> list[Path]:
    """eval-real.json, surface_error_by_yaw.png and (when a photo had a face) photos.png in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "eval-real.json"
    js.write_text(json.dumps(report, indent=1))
    paths = [js, plot_real(report, out_dir / "surface_error_by_yaw.png")]
    if sheet:
        paths.append(comparison_sheet(sheet, out_dir / "photos.png"))
    return paths
