"""Real skin for the synthetic renders: per-vertex colours of the ICT face baked from real photos and video frames.

The renders' procedural skin (one tone, smooth noise, painted brows and lips) is far from a webcam face, and a
network trained on it reads real skin poorly (issue 12). ``build_skin_bank`` bakes real appearance into the ICT
mesh's vertex space, 300W-LP style, without any new asset:

1. MediaPipe finds each face of a photo (or of frames sampled from a clip); its 478 points give the 68 iBUG points
   (:mod:`realtime_vrn.landmarks.ibug68`).
2. The ICT neutral head is posed on those points by a scaled-orthographic fit of its 68 landmarks
   (:meth:`realtime_vrn.training.realface.MeanFace.posed`'s fit), then each vertex is moved in the image by the fit's
   residuals at the landmarks, spread with a Gaussian falloff (``sigma`` cm on the neutral face), so that eyes,
   brows, nose and mouth of the mesh land on the photo's.
3. Each skin vertex (parts ``face`` and ``head_and_neck``) facing the camera and not hidden (a z-buffer of the posed
   vertices) takes the photo's colour there (bilinear, the photo blurred to the vertex spacing); the others are
   filled by diffusion over the mesh from their seen neighbours.
4. Large-scale shading is divided out (luminance smoothed over the mesh, ``DELIGHT`` power) so the renderer's own
   lights are not applied to a face that is already lit.

Patches of single-face photos away from the face are kept as backgrounds (crowd photos are skipped: the
detector misses small faces).

The bank is derived from the pool photos (``../shared/data/faces-pool``, image rights not granted): it is training
data, written under ``out/``, never shipped or committed.

Bank file (``.npz``): ``vertex_ids`` (R,) int32 ICT vertex indices; ``albedo`` (N, R, 3) float16 RGB in [0, 1];
``sources`` (N,) str (file and frame); ``backgrounds`` (M, B, B, 3) uint8 RGB.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
SKIN_PARTS = ("face", "head_and_neck")
#: Smallest landmark box side (px) of a face worth baking.
MIN_BOX_PX = 80.0
#: Largest |yaw| (degrees) baked: beyond it the far cheek is mostly unseen.
MAX_YAW_DEG = 35.0
#: A vertex counts as seen when its normal's component towards the camera is at least this.
MIN_FACING = 0.3
#: Shading removal: colour x (mean / smoothed luminance) ** DELIGHT.
DELIGHT = 0.7
BACKGROUND_PX = 128
#: Files never baked: AFLW photos (AFLW2000-3D is the real-face benchmark, dev and held-out halves; its
#: non-commercial licence forbids shipping weights trained on it). ``../shared/data/faces`` carries a few.
EXCLUDED_NAME = re.compile(r"(?i)aflw|^image\d{5}\.")


@dataclass(frozen=True)
class SkinBank:
    """A loaded bank (see module docstring)."""

    vertex_ids: np.ndarray   # (R,) int32
    albedo: np.ndarray       # (N, R, 3) float16 RGB [0, 1]
    backgrounds: np.ndarray  # (M, B, B, 3) uint8 RGB

    @classmethod
    def load(cls, path: str | Path) -> "SkinBank":
        with np.load(path) as z:
            bank = cls(z["vertex_ids"].astype(np.int32), z["albedo"], z["backgrounds"])
        if bank.albedo.ndim != 3 or bank.albedo.shape[1:] != (bank.vertex_ids.size, 3) or not len(bank.albedo):
            raise ValueError(f"{path}: not a skin bank (albedo {bank.albedo.shape}, {bank.vertex_ids.size} vertices)")
        return bank


# ------------------------------------------------------------------------------------------------ geometry


class Baker:
    """The posed-and-warped ICT skin vertices for one face's 68 points, and their colours in that image."""

    def __init__(self, model) -> None:
        from realtime_vrn.training.meshops import vertex_adjacency, vertex_normals

        self.ids = np.concatenate([model.part(p) for p in SKIN_PARTS]).astype(np.int32)
        remap = np.full(model.neutral.shape[0], -1, np.int64)
        remap[self.ids] = np.arange(self.ids.size)
        keep = (remap[model.faces] >= 0).all(axis=1)
        self.faces = remap[model.faces[keep]].astype(np.int32)
        self.vertices = model.neutral[self.ids].astype(np.float64)
        self.normals = vertex_normals(self.vertices.astype(np.float32), self.faces).astype(np.float64)
        self.landmarks = model.neutral[model.landmarks68].astype(np.float64)
        self.adjacency = vertex_adjacency(self.faces, self.ids.size)
        self.is_face = np.isin(self.ids, model.part("face"))
        edges = np.linalg.norm(self.vertices[self.faces[:, 0]] - self.vertices[self.faces[:, 1]], axis=1)
        self.spacing_cm = float(np.median(edges))

    def pose(self, points68: np.ndarray, sigma_cm: float = 1.5
             ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float]:
        """The skin vertices posed on (68, 2) image points (px, y down): positions (R, 2) px, depth (R,) px
        (larger nearer), yaw (degrees), facing (R,) (normal's component towards the camera) and the scale (px/cm)."""
        from realtime_vrn.training.meshops import scaled_orthographic

        x = np.asarray(points68, np.float64)[:, :2]
        scale, r12, cm, ci = scaled_orthographic(self.landmarks, x)
        r3 = np.cross(r12[0], r12[1])
        posed_lm = scale * (self.landmarks - cm) @ r12.T + ci
        residual = x - posed_lm                                   # (68, 2) px
        d2 = ((self.vertices[:, None, :2] - self.landmarks[None, :, :2]) ** 2).sum(-1)
        w = np.exp(-d2 / (2 * sigma_cm ** 2))
        shift = (w @ residual) / (w.sum(axis=1, keepdims=True) + 0.05)
        xy = scale * (self.vertices - cm) @ r12.T + ci + shift
        depth = -scale * (self.vertices - cm) @ r3
        facing = -(self.normals @ r3)
        yaw = float(np.degrees(np.arcsin(np.clip(r3[0], -1, 1))))
        return xy, depth, yaw, facing, scale

    def seen(self, xy: np.ndarray, depth: np.ndarray, facing: np.ndarray, shape: tuple[int, int],
             scale: float) -> np.ndarray:
        """(R,) bool: facing the camera, inside the image and front-most in its z-buffer cell."""
        h, w = shape
        inside = (xy[:, 0] >= 1) & (xy[:, 0] <= w - 2) & (xy[:, 1] >= 1) & (xy[:, 1] <= h - 2)
        cell = max(2.0, 1.5 * self.spacing_cm * scale)
        gx = np.clip((xy[:, 0] / cell).astype(np.int64), 0, int(w / cell) + 1)
        gy = np.clip((xy[:, 1] / cell).astype(np.int64), 0, int(h / cell) + 1)
        key = gy * (int(w / cell) + 3) + gx
        front = np.full(key.max() + 1, -np.inf)
        cand = inside & (facing > 0)
        np.maximum.at(front, key[cand], depth[cand])
        # a sloped surface spans cell x tan(angle) of depth within one cell: allow that, plus 0.8 cm
        f = np.clip(facing, MIN_FACING, 1.0)
        tolerance = 0.8 * scale + cell * np.sqrt(1 - f ** 2) / f
        return cand & (facing >= MIN_FACING) & (depth >= front[key] - tolerance)

    def smooth(self, values: np.ndarray, iterations: int) -> np.ndarray:
        from realtime_vrn.training.meshops import smooth_values

        return smooth_values(values, self.adjacency, iterations)

    def fill(self, colour: np.ndarray, known: np.ndarray, rounds: int = 400) -> np.ndarray:
        """Unknown vertices take the mean of their known neighbours, round after round; leftovers the median."""
        colour = np.where(known[:, None], colour, 0.0)
        known = known.astype(np.float64)
        adj = self.adjacency
        for _ in range(rounds):
            if known.all():
                break
            total = adj @ (colour * known[:, None])
            count = adj @ known
            new = (known == 0) & (count > 0)
            if not new.any():
                break
            colour[new] = total[new] / count[new, None]
            known[new] = 1.0
        if not known.all():
            colour[known == 0] = np.median(colour[known > 0], axis=0)
        return colour

    def bake(self, image_rgb: np.ndarray, points478: np.ndarray, delight: float = DELIGHT) -> np.ndarray | None:
        """(R, 3) float32 RGB [0, 1] albedo of the skin vertices from one face, or None (small, turned, unseen).

        image_rgb: (H, W, 3) uint8 RGB. points478: (478, 3) MediaPipe points, frame px. delight: the power of
        the shading removal (0: the photo's colours as they are)."""
        import cv2

        from realtime_vrn.landmarks.ibug68 import to_ibug68

        p68 = to_ibug68(points478)
        side = float(np.sqrt(np.prod(p68.max(axis=0) - p68.min(axis=0))))
        if side < MIN_BOX_PX:
            return None
        xy, depth, yaw, facing, scale = self.pose(p68)
        if abs(yaw) > MAX_YAW_DEG:
            return None
        seen = self.seen(xy, depth, facing, image_rgb.shape[:2], scale)
        if seen[self.is_face].mean() < 0.4:
            return None
        blur = max(0.0, 0.5 * self.spacing_cm * scale - 0.5)
        img = image_rgb.astype(np.float32) / 255.0
        if blur > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        mx, my = xy[:, 0].astype(np.float32)[:, None], xy[:, 1].astype(np.float32)[:, None]
        colour = cv2.remap(img, mx, my, cv2.INTER_LINEAR)[:, 0, :].astype(np.float64)
        colour = self.fill(colour, seen)
        lum = colour @ np.array([0.299, 0.587, 0.114])
        low = self.smooth(lum, 60)
        ref = float(np.median(low[self.is_face]))
        colour *= (ref / np.maximum(low, 1e-3))[:, None] ** delight
        return np.clip(colour, 0, 1).astype(np.float32)


def background_patches(image_rgb: np.ndarray, faces: list[np.ndarray], size: int = BACKGROUND_PX,
                       margin: float = 0.6) -> list[np.ndarray]:
    """Square patches (size, size, 3) uint8 of an image clear of every face (each face's point box grown by
    ``margin`` of its side on every side): the largest square on each side of the faces, when >= size / 2."""
    import cv2

    h, w = image_rgb.shape[:2]
    x0, y0, x1, y1 = w, h, 0, 0
    for pts in faces:
        lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        grow = margin * (hi - lo)
        x0, y0 = min(x0, lo[0] - grow[0]), min(y0, lo[1] - grow[1])
        x1, y1 = max(x1, hi[0] + grow[0]), max(y1, hi[1] + grow[1])
    x0, y0, x1, y1 = (int(np.clip(v, 0, lim)) for v, lim in ((x0, w), (y0, h), (x1, w), (y1, h)))
    regions = [(0, 0, x0, h), (x1, 0, w, h), (0, 0, w, y0), (0, y1, w, h)]  # left, right, top, bottom
    out = []
    for a, b, c, d in regions:
        side = min(c - a, d - b)
        if side < size // 2:
            continue
        cx, cy = (a + c) // 2, (b + d) // 2
        patch = image_rgb[cy - side // 2: cy - side // 2 + side, cx - side // 2: cx - side // 2 + side]
        out.append(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
    return out


# ------------------------------------------------------------------------------------------------ sources


def list_sources(folders: list[Path]) -> list[Path]:
    """Image and video files under the folders (sorted, recursive), AFLW photos left out (:data:`EXCLUDED_NAME`)."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a file or folder")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    excluded = [p for p in files if EXCLUDED_NAME.search(p.name)]
    if excluded:
        log.warning("skipping %d AFLW photo(s) (the real-face benchmark's set, never trained on): %s",
                    len(excluded), ", ".join(p.name for p in excluded[:5]))
    return [p for p in files if not EXCLUDED_NAME.search(p.name)]


def _frames(path: Path, per_clip: int):
    """(name, RGB uint8 image) for an image, or ``per_clip`` evenly spaced frames of a video."""
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            yield str(path), np.ascontiguousarray(img[:, :, ::-1])
        return
    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in np.linspace(0, max(n - 1, 0), per_clip).astype(int) if n > 0 else []:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
            ok, frame = cap.read()
            if ok:
                yield f"{path}#{k}", np.ascontiguousarray(frame[:, :, ::-1])
    finally:
        cap.release()


def build_skin_bank(folders: list[Path], out: str | Path, *, frames_per_clip: int = 16, model=None,
                    progress: bool = True) -> dict:
    """Bake every usable face under ``folders`` into a bank at ``out`` (see module docstring). Returns counts."""
    from tqdm import tqdm

    from realtime_vrn.fileio import write_atomic
    from realtime_vrn.landmarks.registry import open_backend
    from realtime_vrn.training.facemodel import FaceModel

    model = model or FaceModel.load()
    baker = Baker(model)
    files = list_sources(folders)
    if not files:
        raise FileNotFoundError(f"no images or videos under {', '.join(map(str, folders))}")
    albedo, names, backgrounds = [], [], []
    seen_frames = 0
    with open_backend("auto", static=True, max_faces=8) as mesh:
        for path in tqdm(files, desc="skin bank", unit="file", disable=not progress):
            for name, image in _frames(path, frames_per_clip):
                seen_frames += 1
                faces = mesh.detect(image, 0.0)
                for i, pts in enumerate(faces):
                    tex = baker.bake(image, pts)
                    if tex is not None:
                        albedo.append(tex.astype(np.float16))
                        names.append(f"{name}:{i}")
                if len(faces) == 1 and path.suffix.lower() in IMAGE_SUFFIXES:  # crowds: faces missed
                    backgrounds += background_patches(image, faces)
    if not albedo:
        raise ValueError("no face in the sources was large and frontal enough to bake")
    bg = np.stack(backgrounds) if backgrounds else np.zeros((0, BACKGROUND_PX, BACKGROUND_PX, 3), np.uint8)

    import io

    buf = io.BytesIO()
    np.savez(buf, vertex_ids=baker.ids, albedo=np.stack(albedo), sources=np.array(names), backgrounds=bg)
    write_atomic(Path(out), buf.getvalue())
    counts = {"files": len(files), "frames": seen_frames, "textures": len(albedo), "backgrounds": len(bg)}
    log.info("skin bank %s: %s", out, counts)
    return counts
