"""Held-out evaluation: the paper's dense NME by yaw bucket and a 68-landmark 3D error; JSON and a PNG plot.

Dense NME (``vrn-reference.md`` §5) per sample: the predicted p = 0.5 iso-surface
(:class:`realtime_vrn.surface.SurfaceExtractor`, the pipeline's own mesher) and the ground-truth face-area
vertices, both in the crop frame with z = depth index * 0.5 (the paper's x0.5 on z). The crop is a similarity
with the same scale on x, y and z, so distances divided by the 3D outer interocular distance (landmarks 36-45)
equal those measured after mapping back through the inverse crop. Correspondence is the nearest point of the
predicted **surface** (point-to-triangle, :class:`SurfaceDistance`); no rigid alignment except z aligned by
means (the mean z offset of the matched pairs is removed, then the pairs are matched again). NME = mean over
ground-truth vertices of the distance / interocular distance.

Sessions 1-2 matched the nearest predicted *vertex* instead. On a mesh with about one vertex per crop pixel
that adds up to half a pixel to every distance (about 0.01 NME at a 28-px interocular distance; it is most of
the ground-truth volumes' own score, the metric's floor), so the report keeps it as ``nme_vertex`` for
comparison with those numbers.

Landmark error: for each of the 68 true landmarks visible in the ground truth, the depth of the predicted
surface's first crossing seen from the camera at the landmark's (x, y)
(:func:`realtime_vrn.training.volumes.front_surface`), after the same z alignment; 3D distance to the true
landmark / interocular distance, averaged over the landmarks that hit the surface. Landmarks hidden behind the face (large yaw) are left out: the surface under them is the occluder.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from realtime_vrn.model.network import VRN, upsample_logits
from realtime_vrn.model.guidance import uses_mediapipe_depth
from realtime_vrn.training.annotate import sidecar_path
from realtime_vrn.training.dataset import load_shard, network_input_batch, shard_files

log = logging.getLogger(__name__)

#: Yaw buckets of the paper's tables (absolute yaw, degrees): [0, 30), [30, 60), [60, 90].
YAW_BUCKETS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.01))
#: Outer eye corners in the iBUG-68 layout (the 3D interocular normaliser).
OUTER_EYE_CORNERS = (36, 45)
#: NME given to a sample whose predicted volume holds no surface at all (a miss counts, it is not dropped).
MISS_NME = 1.0
#: Rounds of "match nearest, align z by the pairs' mean" (converges in 2-4 on faces).
Z_ALIGN_ITERATIONS = 8
#: Nearest predicted vertices whose triangles are searched for a point's nearest surface point.
SURFACE_CANDIDATES = 4
#: A landmark counts as visible when it lies within this many crop px of the ground-truth front surface.
VISIBLE_TOLERANCE_PX = 1.5


@dataclass
class SampleResult:
    seed: int
    yaw: float
    nme: float
    landmark_nme: float
    n_vertices: int
    nme_vertex: float | None = None


class SurfaceDistance:
    """Nearest points of a triangle mesh's surface.

    vertices (Q, 3) float, faces (F, 3) int: any consistent frame. For each query point the triangles around its
    ``SURFACE_CANDIDATES`` nearest vertices are tested (``trimesh.triangles.closest_point``); the nearest point
    of the mesh lies on one of them unless the mesh is far coarser than its distance to the point, and the
    answer is never farther than the nearest vertex (which is on those triangles). Without faces (or for
    isolated vertices) it is the nearest vertex.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray | None = None) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = None if faces is None or len(faces) == 0 else np.asarray(faces, np.int64)
        self.tree = cKDTree(self.vertices)
        self.vertex_faces = None
        if self.faces is not None:  # (Q, max degree) incident faces, padded with -1
            self.vertex_faces = trimesh.Trimesh(self.vertices, self.faces, process=False).vertex_faces

    def nearest_vertex(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (P,) and positions (P, 3) of the nearest vertices of points (P, 3)."""
        dist, idx = self.tree.query(points)
        return dist, self.vertices[idx]

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (P,) and positions (P, 3) of the nearest surface points of points (P, 3)."""
        points = np.asarray(points, np.float64)
        if self.vertex_faces is None:
            return self.nearest_vertex(points)
        k = min(SURFACE_CANDIDATES, len(self.vertices))
        dist_k, idx = self.tree.query(points, k=[1] if k == 1 else k)
        idx, dist_k = idx.reshape(len(points), k), dist_k.reshape(len(points), k)
        best_d, best_p = dist_k[:, 0].copy(), self.vertices[idx[:, 0]]  # the nearest vertex, the fallback
        cand = self.vertex_faces[idx].reshape(len(points), -1)
        rows, cols = np.nonzero(cand >= 0)
        pairs = np.unique(rows * len(self.faces) + cand[rows, cols])  # each (point, face) once, sorted by point
        rows, faces = pairs // len(self.faces), pairs % len(self.faces)
        closest = trimesh.triangles.closest_point(self.vertices[self.faces[faces]], points[rows])
        dist = np.linalg.norm(closest - points[rows], axis=1)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])  # pairs are grouped by point
        seg_min = np.minimum.reduceat(dist, starts)
        seg_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
        hit = np.flatnonzero(dist == seg_min[seg_of])
        hit = hit[np.r_[True, rows[hit][1:] != rows[hit][:-1]]]  # one per point
        better = dist[hit] < best_d[rows[hit]]
        best_d[rows[hit][better]] = dist[hit][better]
        best_p[rows[hit][better]] = closest[hit][better]
        return best_d, best_p


def _z_aligned(gt: np.ndarray, surface: SurfaceDistance, exact: bool, shift: float = 0.0) -> tuple[np.ndarray, float]:
    """Distances (P,) from gt points (P, 3) to the predicted surface (``exact``) or its nearest vertices, after
    aligning z by the mean z offset of the matched pairs (re-matched from ``shift`` until the shift settles, at
    most Z_ALIGN_ITERATIONS times), and that z shift."""
    nearest = surface.nearest if exact else surface.nearest_vertex
    for _ in range(Z_ALIGN_ITERATIONS):
        _, matched = nearest(gt - np.array([0.0, 0.0, shift]))
        new = float(np.mean(gt[:, 2] - matched[:, 2]))
        if abs(new - shift) < 1e-3:
            shift = new
            break
        shift = new
    dist, _ = nearest(gt - np.array([0.0, 0.0, shift]))
    return dist, shift


def dense_nme(pred_vertices: np.ndarray, gt_vertices: np.ndarray, gt_landmarks: np.ndarray,
              pred_faces: np.ndarray | None = None) -> tuple[float, float]:
    """NME and the z shift applied. pred (Q, 3) with its faces (F, 3) (without faces: nearest-vertex
    correspondence, the sessions 1-2 metric), gt (P, 3), gt_landmarks (68, 3): crop x, y px and z = depth
    index * 0.5 (crop px). Returns (MISS_NME, 0) when the prediction is empty."""
    surface_nme, _, shift = dense_nmes(pred_vertices, gt_vertices, gt_landmarks, pred_faces)
    return surface_nme, shift  # without faces this is the nearest-vertex NME


def dense_nmes(pred_vertices: np.ndarray, gt_vertices: np.ndarray, gt_landmarks: np.ndarray,
               pred_faces: np.ndarray | None) -> tuple[float, float, float]:
    """(nearest-surface NME, nearest-vertex NME, z shift of the surface match) in one pass over one KD-tree;
    arguments as :func:`dense_nme` (without faces both NMEs are the nearest-vertex one)."""
    if len(pred_vertices) == 0:
        return MISS_NME, MISS_NME, 0.0
    iod = float(np.linalg.norm(gt_landmarks[OUTER_EYE_CORNERS[0]] - gt_landmarks[OUTER_EYE_CORNERS[1]]))
    surface = SurfaceDistance(pred_vertices, pred_faces)
    vertex_dist, shift = _z_aligned(gt_vertices, surface, exact=False)
    vertex_nme = float(vertex_dist.mean() / iod)
    if pred_faces is None or len(pred_faces) == 0:
        return vertex_nme, vertex_nme, shift
    surface_dist, shift = _z_aligned(gt_vertices, surface, exact=True, shift=shift)  # from the cheap alignment
    return float(surface_dist.mean() / iod), vertex_nme, shift


def visible_landmarks(gt_front: np.ndarray, gt_landmarks: np.ndarray, tolerance: float = VISIBLE_TOLERANCE_PX) -> np.ndarray:
    """(68,) bool: landmarks on the ground truth's camera-facing surface (not hidden behind the face at large yaw).

    gt_front: (S, S) ground-truth front depth map, depth indices (NaN = empty); gt_landmarks (68, 3) crop px,
    z = depth index * 0.5."""
    s = gt_front.shape[0]
    xy = np.clip(np.rint(gt_landmarks[:, :2]).astype(int), 0, s - 1)
    front = gt_front[xy[:, 1], xy[:, 0]] * 0.5
    with np.errstate(invalid="ignore"):
        return np.abs(front - gt_landmarks[:, 2]) <= tolerance


def landmark_nme(prob_volume: np.ndarray, gt_landmarks: np.ndarray, z_shift: float,
                 visible: np.ndarray | None = None) -> float:
    """68-landmark 3D error (see module docstring) over the ``visible`` landmarks (default all).

    prob_volume (D, S, S) probabilities or occupancy; gt_landmarks (68, 3) crop px with z = depth index * 0.5."""
    from realtime_vrn.training.volumes import front_surface

    depth = front_surface(prob_volume) * 0.5 + z_shift  # crop px, aligned like the dense NME
    s = depth.shape[0]
    xy = np.clip(np.rint(gt_landmarks[:, :2]).astype(int), 0, s - 1)
    z = depth[xy[:, 1], xy[:, 0]]
    ok = np.isfinite(z) & (np.ones(len(z), bool) if visible is None else visible)
    if not ok.any():
        return MISS_NME
    iod = float(np.linalg.norm(gt_landmarks[OUTER_EYE_CORNERS[0]] - gt_landmarks[OUTER_EYE_CORNERS[1]]))
    pred = np.column_stack([gt_landmarks[:, :2], z])
    return float(np.linalg.norm(pred[ok] - gt_landmarks[ok], axis=1).mean() / iod)


def load_heldout(folder: str | Path) -> dict[str, np.ndarray]:
    """Concatenate the held-out shards of a folder (they must carry ``face_vertices``)."""
    files = shard_files(folder)
    files = [f for f in files if ".tmp" not in f.name]
    if not files:
        raise FileNotFoundError(f"no held-out shards in {folder}; render them with `realtime-vrn data render "
                                f"--heldout`")
    parts = [load_shard(f) for f in files]
    if any("face_vertices" not in p for p in parts):
        raise ValueError(f"held-out shards in {folder} lack face_vertices (render them with --heldout)")
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "config"}
    out["config"] = parts[0]["config"]
    sidecars = [sidecar_path(f) for f in files]
    if all(s.is_file() for s in sidecars):  # MediaPipe on the crops (`data annotate`): depth-guided models need it
        out["mp_points"] = np.concatenate([np.load(s)["mp_points"] for s in sidecars])
    return out


def evaluate(net: VRN, heldout: dict[str, np.ndarray], *, oracle: bool = False, limit: int | None = None,
             batch_size: int = 8, device: str = "cpu") -> dict:
    """Evaluate ``net`` (or, with ``oracle=True``, the ground-truth volumes themselves: the metric's floor from
    voxelisation) on held-out samples. Returns the report dict (see :func:`summarise`)."""
    from realtime_vrn.surface.extract import SurfaceExtractor
    from realtime_vrn.training.volumes import volume_from_depths

    cfg = net.cfg
    n = len(heldout["seed"]) if limit is None else min(limit, len(heldout["seed"]))
    if heldout["image"].shape[1] != cfg.input_size:
        raise ValueError(f"held-out crops are {heldout['image'].shape[1]} px, the model expects {cfg.input_size}")
    extractor = SurfaceExtractor(cfg)
    net = net.to(device).eval()
    results: list[SampleResult] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        if not oracle:
            mp = heldout["mp_points"][idx] if "mp_points" in heldout else None
            if uses_mediapipe_depth(cfg) and mp is None:
                raise ValueError("this model takes MediaPipe's depth: annotate the held-out shards first "
                                 "(`realtime-vrn data annotate HELDOUT`)")
            x = network_input_batch(heldout["image"][idx], heldout["crop_points"][idx], cfg, mp).to(device)
            with torch.no_grad():
                lowres = net.forward_lowres(x).float()
                probs = torch.sigmoid(upsample_logits(lowres, cfg.input_size)).cpu().numpy()
            lowres = lowres.cpu().numpy()
        for j, i in enumerate(idx):
            gt_v = heldout["face_vertices"][i].astype(np.float64) * np.array([1.0, 1.0, 0.5])
            gt_lm = heldout["landmarks"][i].astype(np.float64) * np.array([1.0, 1.0, 0.5])
            if oracle:
                vol = volume_from_depths(heldout["front"][i].astype(np.float32),
                                         heldout["back"][i].astype(np.float32), cfg.depth_bins).astype(np.float32)
                pred, faces = _oracle_mesh(vol)
                prob = vol
            else:
                mesh = extractor.extract(lowres[j])
                pred, faces = mesh.vertices.astype(np.float64), mesh.faces
                prob = probs[j]
            nme, nme_vertex, shift = dense_nmes(pred, gt_v, gt_lm, faces)
            visible = visible_landmarks(heldout["front"][i].astype(np.float32), gt_lm)
            lm = landmark_nme(prob, gt_lm, shift, visible) if len(pred) else MISS_NME
            results.append(SampleResult(int(heldout["seed"][i]), float(heldout["pose"][i][0]), nme, lm, len(pred),
                                        nme_vertex))
    report = summarise(results)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _oracle_mesh(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x, y, z * 0.5) and faces of the ground-truth volume's 0.5 iso-surface (marching cubes)."""
    from skimage.measure import marching_cubes

    if volume.min() == volume.max():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts, faces, *_ = marching_cubes(np.pad(volume, 1), 0.5)
    verts -= 1.0
    return np.column_stack([verts[:, 2], verts[:, 1], verts[:, 0] * 0.5]), faces


def summarise(results: list[SampleResult]) -> dict:
    """Report: overall mean NME and landmark NME, and per yaw bucket (count, mean, median)."""
    yaw = np.abs([r.yaw for r in results])
    nme = np.array([r.nme for r in results])
    nme_vertex = np.array([np.nan if r.nme_vertex is None else r.nme_vertex for r in results])
    lm = np.array([r.landmark_nme for r in results])
    buckets = {}
    for lo, hi in YAW_BUCKETS:
        sel = (yaw >= lo) & (yaw < hi)
        key = f"{lo:.0f}-{min(hi, 90):.0f}"
        buckets[key] = {
            "count": int(sel.sum()),
            "nme": float(nme[sel].mean()) if sel.any() else None,
            "nme_median": float(np.median(nme[sel])) if sel.any() else None,
            "nme_vertex": float(nme_vertex[sel].mean()) if sel.any() else None,
            "landmark_nme": float(lm[sel].mean()) if sel.any() else None,
        }
    valid = [b["nme"] for b in buckets.values() if b["nme"] is not None]
    return {
        "samples": len(results),
        "nme": float(nme.mean()),
        "nme_bucket_mean": float(np.mean(valid)) if valid else None,
        "nme_vertex": float(nme_vertex.mean()),  # nearest-vertex correspondence (sessions 1-2's metric)
        "landmark_nme": float(lm.mean()),
        "misses": int(sum(r.n_vertices == 0 for r in results)),
        "buckets": buckets,
        "per_sample": [r.__dict__ for r in results],
        "host": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
    }


def plot_report(report: dict, path: str | Path, title: str = "") -> Path:
    """PNG: NME per sample against |yaw| (dots) with the bucket means (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    per = report["per_sample"]
    ax.scatter([abs(p["yaw"]) for p in per], [p["nme"] for p in per], s=8, alpha=0.5, label="sample")
    for (lo, hi), (key, b) in zip(YAW_BUCKETS, report["buckets"].items()):
        if b["nme"] is not None:
            ax.hlines(b["nme"], lo, min(hi, 90), colors="C3", linewidth=3)
            ax.text((lo + min(hi, 90)) / 2, b["nme"], f"{b['nme']:.4f}\n(n={b['count']})", ha="center",
                    va="bottom", color="C3", fontsize=8)
    ax.axhline(0.045, color="gray", linestyle="--", linewidth=1, label="target 0.045")
    ax.set_xlabel("|yaw| (degrees)")
    ax.set_ylabel("dense NME (outer interocular, 3D)")
    ax.set_xlim(0, 90)
    ax.set_ylim(0, max(0.1, float(np.percentile([p["nme"] for p in per], 98)) * 1.1))
    ax.set_title(title or f"held-out synthetic NME = {report['nme']:.4f} (n={report['samples']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_report(report: dict, out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "eval.json"
    js.write_text(json.dumps(report, indent=1))
    png = plot_report(report, out_dir / "nme_by_yaw.png", title)
    return js, png
