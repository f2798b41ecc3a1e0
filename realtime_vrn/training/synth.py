"""Synthetic training faces: random ICT identities, expressions, poses and looks, rendered with moderngl (EGL).

One :class:`SynthGenerator` draws one :class:`SynthSample` per integer seed (deterministic: same seed, same
sample). A sample is what the inference pipeline would see of a face in a webcam frame, already cut out by the
inference crop rule, plus the ground truth:

1. A virtual camera (``frame_size`` px, perspective, random focal length) looks at a random head: identity
   weights ~ N(0, 1), a few random expression blendshapes (jaw open, smiles, blinks, ...), yaw up to +-90 deg,
   pitch +-40, roll +-45, random distance (face size) and position in the frame.
2. The 68 landmark vertices are projected into the frame; a MediaPipe-like noise (global shift and scale, jitter,
   more on the jaw contour) is added and :meth:`realtime_vrn.crop.CropTransform.from_landmarks` builds the crop
   from these noisy points, exactly as at inference.
3. The head (skin with procedural tone and detail, lips, brows, hair, eyes, teeth, inner mouth) is rendered
   straight into the crop window (supersampled), lit by 1-3 coloured lights + ambient + specular, composited on a
   random background (real non-face photos from scikit-image, textures, noise), then degraded (blur, noise,
   JPEG, colour jitter with the paper's per-channel scale 0.6-1.4). Crop pixels outside the virtual frame are black.
4. The ground-truth volume's front and back depth maps (:mod:`realtime_vrn.training.volumes`) come from
   rasterising the closed face solid in the same crop frame, depth measured along the line of sight through the
   face (:class:`Camera`), the direction the crop looks along.

Coordinates: "crop frame" = crop pixels x right, y down (pixel centres at integers) and depth index z
(voxel units, z stretched x2: ``z_index = 2 * z_crop_px + offset``; higher = nearer the camera), the frame the
network's output volume lives in. Head frame: ICT centimetres, +y up, +z towards the viewer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Iterator

import numpy as np
from scipy import sparse

from realtime_vrn.training.facemodel import FaceModel
from realtime_vrn.training.meshops import smooth_values, vertex_adjacency, vertex_normals

log = logging.getLogger(__name__)

#: Ground-truth depth axes (:attr:`SynthConfig.depth_axis`).
DEPTH_AXES = ("line_of_sight", "optical_axis")

#: The narrow face area of the ICT mesh (vertices 0-6705): forehead to just under the chin, cheeks up to the
#: ears. The closest match to the Basel face region of 300W-LP that the paper's volumes contain.
FACE_LAST_VERTEX = 6705
#: Back plane of the ground-truth solid in the head frame (cm): 0.9 cm behind the face area's rearmost vertex.
BACK_PLANE_Z_CM = 1.5
#: Parts drawn in the colour pass (the ICT transparent overlays - lacrimal fluid, eye blend, eye occlusion -
#: are left out).
RENDERED_PARTS = (
    "face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "gums_and_tongue", "teeth",
    "eyeball_left", "eyeball_right", "eyelashes_left", "eyelashes_right",
)
#: Depth extent of the rasteriser's clip volume, in multiples of depth_bins around the volume.
_ZNEAR_BINS, _ZFAR_BINS = 3.0, -4.0

#: Skin tone anchors (linear-ish RGB albedo), light to dark; a sample interpolates between two neighbours.
SKIN_TONES = np.array([
    [0.96, 0.80, 0.70], [0.90, 0.70, 0.58], [0.80, 0.58, 0.45], [0.66, 0.45, 0.32],
    [0.50, 0.33, 0.22], [0.36, 0.23, 0.15], [0.24, 0.15, 0.10],
], np.float32)
HAIR_COLOURS = np.array([
    [0.05, 0.04, 0.03], [0.15, 0.09, 0.05], [0.30, 0.19, 0.10], [0.55, 0.40, 0.22],
    [0.80, 0.65, 0.40], [0.45, 0.15, 0.07], [0.60, 0.60, 0.58], [0.85, 0.85, 0.82],
], np.float32)
IRIS_COLOURS = np.array([
    [0.25, 0.13, 0.05], [0.12, 0.07, 0.03], [0.25, 0.40, 0.60], [0.30, 0.40, 0.25], [0.40, 0.40, 0.40],
], np.float32)
#: skimage.data images without human faces, usable as backgrounds offline.
BACKGROUND_IMAGES = (
    "brick", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
    "stereo_motorcycle",
)


@dataclass(frozen=True)
class SynthConfig:
    """What the generator draws. Angles in degrees; sizes in pixels."""

    size: int = 96                    # crop side S (the network's input size)
    depth_bins: int = 100             # D, voxels along z of the ground-truth volume
    supersample: int = 2              # colour pass rendered at size * supersample, then area-averaged
    frame_size: tuple[int, int] = (640, 480)   # virtual camera frame (width, height)
    yaw_max: float = 90.0
    pitch_max: float = 40.0
    roll_max: float = 45.0
    box_px: tuple[float, float] = (70.0, 260.0)  # landmark box side (geometric mean) in the frame
    focal_px: tuple[float, float] = (450.0, 1600.0)
    landmark_noise: float = 0.015     # per-point landmark jitter, fraction of the landmark box side
    crop_shift: float = 0.03          # global landmark shift (crop centre jitter), fraction of the box side
    crop_scale: float = 0.04          # global landmark scale jitter (log-normal sigma)
    front_margin: float = 0.06        # fraction of depth_bins kept free in front of the face's front-most point
    #: Depth axis of the ground truth: "line_of_sight" (the ray from the camera through the face; session 4 on)
    #: or "optical_axis" (the camera's axis, sessions 1-3: ambiguous for a face off the frame's centre).
    depth_axis: str = "line_of_sight"
    #: A skin bank (:mod:`realtime_vrn.training.skinbank`, ``realtime-vrn data skin``): with probability
    #: ``real_skin`` a sample wears a real face's baked colours instead of the procedural skin, and a
    #: ``"photo"`` background is a real photo's face-free patch with probability ``real_background``.
    skin_bank: str | None = None
    real_skin: float = 0.0
    real_background: float = 0.0

    def __post_init__(self) -> None:
        if self.size % 8 or self.size < 16:
            raise ValueError(f"size must be a multiple of 8 and >= 16, got {self.size}")
        if self.depth_bins < 8:
            raise ValueError(f"depth_bins must be >= 8, got {self.depth_bins}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")
        if self.depth_axis not in DEPTH_AXES:
            raise ValueError(f"depth_axis must be one of {DEPTH_AXES}, got {self.depth_axis!r}")
        if not (0.0 <= self.real_skin <= 1.0 and 0.0 <= self.real_background <= 1.0):
            raise ValueError("real_skin and real_background are probabilities in [0, 1]")
        if (self.real_skin or self.real_background) and not self.skin_bank:
            raise ValueError("real_skin / real_background need a skin_bank")

    @property
    def front_index(self) -> float:
        """Depth index at which the face's front-most point is placed."""
        return self.depth_bins * (1.0 - self.front_margin)


@dataclass
class SynthSample:
    """One synthetic training example. All image-space quantities are in the crop frame (see module docstring).

    image:        (S, S, 3) uint8 RGB, the network input crop.
    landmarks:    (68, 3) float32, true 68 landmarks: crop x, y px and depth index z.
    crop_points:  (68, 2) float32, the noisy 68 points the crop was built from (what a landmark tracker would
                  give), in crop px: the guided model's heatmaps are drawn from these.
    front, back:  (S, S) float32 depth indices of the volume's front and back surface per pixel, NaN where the
                  face is absent (:func:`realtime_vrn.training.volumes.volume_from_depths`).
    face_vertices:(V_face, 3) float32, the face-area vertices in the crop frame (x, y px, z depth index).
    pose:         (3,) float32 yaw, pitch, roll in degrees (yaw > 0: the subject turns to its left).
    seed:         the seed it was drawn with.
    """

    image: np.ndarray
    landmarks: np.ndarray
    crop_points: np.ndarray
    front: np.ndarray
    back: np.ndarray
    face_vertices: np.ndarray
    pose: np.ndarray
    seed: int


# ------------------------------------------------------------------------------------------- mesh assets


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (P,) of 2D points (P, 2) to a polyline (L, 2)."""
    best = np.full(points.shape[0], np.inf, np.float32)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        d = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
        best = np.minimum(best, d)
    return best


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Edges (E, 2) used by exactly one triangle of ``faces`` (F, 3)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    uniq, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    once = counts[inverse.ravel()] == 1
    return e[once]


def edge_loops(edges: np.ndarray) -> list[np.ndarray]:
    """Connected components of a set of edges (E, 2), as arrays of edge rows, largest first."""
    verts, inv = np.unique(edges, return_inverse=True)
    inv = inv.reshape(-1, 2)
    g = sparse.coo_matrix((np.ones(len(inv)), (inv[:, 0], inv[:, 1])), shape=(len(verts),) * 2)
    _, label = sparse.csgraph.connected_components(g, directed=False)
    comps = [edges[label[inv[:, 0]] == k] for k in range(label.max() + 1)]
    return sorted(comps, key=len, reverse=True)


@dataclass
class FaceAssets:
    """Per-vertex data derived once from the neutral ICT mesh (topology does not change with the weights)."""

    render_vertices: np.ndarray        # (R,) int32 vertex indices drawn in the colour pass
    render_faces: np.ndarray           # (F_r, 3) int32, indices into render_vertices
    part_id: np.ndarray                # (R,) int index into RENDERED_PARTS
    lip_weight: np.ndarray             # (R,) float32 in [0, 1]
    brow_distance: np.ndarray          # (R,) float32 cm to the brow line (inf off the front of the face)
    eye_angle: np.ndarray              # (R,) float32 radians from the eyeball's axis (eyeballs only, else pi)
    face_faces: np.ndarray             # (F_f, 3) int32 triangles of the face area (vertex indices < n_face)
    hole_edges: list[np.ndarray]       # boundary edges of the eye and mouth openings (each a loop)
    outer_edges: np.ndarray            # (E, 2) boundary edges of the face area's outline
    mouth_hole: int                    # which hole_edges entry is the mouth

    @classmethod
    def build(cls, model: FaceModel) -> "FaceAssets":
        n = model.neutral
        render = np.concatenate([model.part(p) for p in RENDERED_PARTS])
        part_id = np.concatenate([np.full(len(model.part(p)), i, np.int16) for i, p in enumerate(RENDERED_PARTS)])
        remap = np.full(n.shape[0], -1, np.int64)
        remap[render] = np.arange(render.size)
        keep = (remap[model.faces] >= 0).all(axis=1)
        render_faces = remap[model.faces[keep]].astype(np.int32)
        rv = n[render]

        adjacency = vertex_adjacency(render_faces, render.size)
        lm = n[model.landmarks68]
        from skimage.measure import points_in_poly

        front = rv[:, 2] > lm[:, 2].min() - 2.0
        is_face = part_id == 0
        lips = points_in_poly(rv[:, :2], lm[48:60, :2]) & front & is_face
        lip_weight = np.clip(smooth_values(lips.astype(np.float32), adjacency, 3) * 1.3, 0, 1).astype(np.float32)
        brow_line = lambda idx: lm[idx, :2] + np.array([0.0, 0.25], np.float32)  # noqa: E731
        brow = np.minimum(_polyline_distance(rv[:, :2], brow_line(range(17, 22))),
                          _polyline_distance(rv[:, :2], brow_line(range(22, 27))))
        brow[~(front & is_face)] = np.inf

        eye_angle = np.full(render.size, np.pi, np.float32)
        for side in ("eyeball_left", "eyeball_right"):
            sel = np.isin(render, model.part(side))
            d = rv[sel] - rv[sel].mean(axis=0)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            eye_angle[sel] = np.arccos(np.clip(d[:, 2], -1, 1))

        face_faces = model.faces[(model.faces <= FACE_LAST_VERTEX).all(axis=1)]
        loops = edge_loops(boundary_edges(face_faces))
        outer, holes = loops[0], loops[1:]
        mouth_centre = lm[60:68].mean(axis=0)
        mouth = int(np.argmin([np.linalg.norm(n[h].reshape(-1, 3).mean(0) - mouth_centre) for h in holes]))
        return cls(render.astype(np.int32), render_faces, part_id, lip_weight, brow.astype(np.float32),
                   eye_angle, face_faces.astype(np.int32), holes, outer, mouth)


def face_solid(vertices: np.ndarray, assets: FaceAssets, back_z: float = BACK_PLANE_Z_CM) -> tuple[np.ndarray, np.ndarray]:
    """The closed solid the ground-truth volume fills, in the head frame (cm).

    Front: the face-area surface with its eye and mouth openings capped (fans from each opening's centroid; the
    mouth's centroid is pushed 1 cm back so an open mouth stays a dent); back: the same triangles flattened onto
    the plane ``z = back_z``; walls joining the outline to the back plane. Returns vertices (V', 3) float32 and
    triangles (F', 3) int32. Orientation is irrelevant: only depth extremes are rasterised.
    """
    nf = FACE_LAST_VERTEX + 1
    front_v = vertices[:nf]
    extra_v, extra_f = [], []
    base = nf
    for k, edges in enumerate(assets.hole_edges):
        centre = front_v[np.unique(edges)].mean(axis=0)
        if k == assets.mouth_hole:
            centre = centre - np.array([0.0, 0.0, 1.0], np.float32)
        extra_v.append(centre[None])
        extra_f.append(np.column_stack([edges, np.full(len(edges), base)]))
        base += 1
    top_v = np.concatenate([front_v] + extra_v).astype(np.float32)
    top_f = np.concatenate([assets.face_faces] + extra_f).astype(np.int32)
    back_v = top_v.copy()
    back_v[:, 2] = back_z
    nt = len(top_v)
    a, b = assets.outer_edges[:, 0], assets.outer_edges[:, 1]
    walls = np.concatenate([np.column_stack([a, b, b + nt]), np.column_stack([a, b + nt, a + nt])])
    return np.concatenate([top_v, back_v]), np.concatenate([top_f, top_f + nt, walls]).astype(np.int32)


# ------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Scene:
    """A sample's head and camera (:meth:`SynthGenerator.scene`): ICT identity weights (100,) and expression
    weights (53,) float32, the head's vertices (V, 3) cm in the head frame, pose (yaw, pitch, roll) degrees."""

    identity: np.ndarray
    expression: np.ndarray
    head: np.ndarray
    pose: np.ndarray
    camera: "Camera"


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head-to-camera rotation (3, 3) for angles in degrees: roll(z) @ pitch(x) @ yaw(y)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (rz @ rx @ ry).astype(np.float32)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at the origin looking down -z (x right, y up). The head's origin sits at ``t`` (cm).

    ``axis``: unit vector (camera frame) of the depth axis of :meth:`project`: the ray from the camera through the
    face (the crop's line of sight), or None for the optical axis (sessions 1-3's data).
    """

    focal: float
    centre: tuple[float, float]
    rotation: np.ndarray   # (3, 3) head -> camera
    t: np.ndarray          # (3,) cm, t[2] < 0
    axis: np.ndarray | None = None

    def to_camera(self, head: np.ndarray) -> np.ndarray:
        return head @ self.rotation.T + self.t

    def project(self, head: np.ndarray) -> np.ndarray:
        """Head-frame points (P, 3) cm -> frame pixels x, y (y down) and z (px towards the viewer, weak-perspective
        scale at the head's distance) as (P, 3) float32. z is measured along ``axis`` (zero at the head's
        origin): a crop shows the face as seen along that ray, so a face away from the frame's centre looks
        turned by the angle between the ray and the optical axis, and its depth must be turned with it; along
        the optical axis instead, the same crop would have different depths depending on where in the frame it
        was cut, which the network cannot see."""
        c = self.to_camera(head)
        dist = -self.t[2]
        inv = self.focal / -c[:, 2]
        x = self.centre[0] + c[:, 0] * inv
        y = self.centre[1] - c[:, 1] * inv
        if self.axis is None:
            depth = c[:, 2] + dist
        else:
            depth = float(self.t @ self.axis) - c @ self.axis
        z = depth * (self.focal / dist)
        return np.column_stack([x, y, z]).astype(np.float32)


# ------------------------------------------------------------------------------------------- rasteriser


def _shader(name: str) -> str:
    return resources.files("realtime_vrn.training").joinpath("shaders", name).read_text(encoding="utf-8")


class SynthRasteriser:
    """moderngl renderer of the colour pass and of the volume's depth maps, in the renderer's headless context
    (:func:`realtime_vrn.render.context.create_offscreen_context`). A context manager."""

    def __init__(self, size: int, supersample: int) -> None:
        self.size, self.supersample = size, supersample
        self._ctx = None

    def __enter__(self) -> "SynthRasteriser":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if self._ctx is not None:
            return
        from realtime_vrn.render.context import create_offscreen_context

        ctx = create_offscreen_context()  # the renderer's: EGL on Linux, Triton imported first, DisplayError
        self._ctx = ctx
        self._face = ctx.program(vertex_shader=_shader("synth_face.vert"), fragment_shader=_shader("synth_face.frag"))
        self._depth = ctx.program(vertex_shader=_shader("synth_depth.vert"),
                                  fragment_shader=_shader("synth_depth.frag"))
        big = self.size * self.supersample
        self._colour_fbo = ctx.framebuffer(ctx.renderbuffer((big, big), 4, dtype="f1"),
                                           ctx.depth_renderbuffer((big, big)))
        self._depth_fbo = ctx.framebuffer(ctx.renderbuffer((self.size, self.size), 1, dtype="f4"),
                                          ctx.depth_renderbuffer((self.size, self.size)))

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.release()
            self._ctx = None

    def _vao(self, prog, faces: np.ndarray, arrays: dict[str, np.ndarray]):
        ctx = self._ctx
        data = np.concatenate([arrays[k].reshape(len(arrays[k]), -1) for k in arrays], axis=1).astype("f4")
        fmt = " ".join(f"{arrays[k].reshape(len(arrays[k]), -1).shape[1]}f" for k in arrays)
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(faces.astype("i4").tobytes())
        vao = ctx.vertex_array(prog, [(vbo, fmt, *arrays.keys())], index_buffer=ibo)
        return vao, (vbo, ibo)

    def colour(self, pos: np.ndarray, faces: np.ndarray, normal: np.ndarray, albedo: np.ndarray,
               spec: np.ndarray, head: np.ndarray, zrange: tuple[float, float], lights: dict) -> np.ndarray:
        """Render the shaded head. pos (V, 3) crop frame; returns (S, S, 4) float32 RGBA in [0, 1] (area-averaged
        from the supersampled target; alpha = coverage)."""
        import moderngl

        ctx, prog, s, k = self._ctx, self._face, self.size, self.supersample
        prog["u_size"].value = (float(s), float(s))  # positions are crop px at any supersampling
        prog["u_zrange"].value = zrange
        n = len(lights["dirs"])
        prog["u_nlights"].value = n
        dirs = np.zeros((4, 3), np.float32)
        cols = np.zeros((4, 3), np.float32)
        dirs[:n], cols[:n] = lights["dirs"], lights["colours"]
        prog["u_light_dir"].write(dirs.tobytes())
        prog["u_light_col"].write(cols.tobytes())
        prog["u_ambient"].value = tuple(float(c) for c in lights["ambient"])
        prog["u_shininess"].value = float(lights["shininess"])
        prog["u_detail"].value = float(lights["detail"])
        prog["u_detail_freq"].value = float(lights["detail_freq"])
        vao, bufs = self._vao(prog, faces, {"in_pos": pos, "in_normal": normal, "in_albedo": albedo,
                                            "in_spec": spec, "in_head": head})
        try:
            self._colour_fbo.use()
            self._colour_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            ctx.depth_func = "<"
            vao.render(moderngl.TRIANGLES)
            raw = self._colour_fbo.read(components=4, dtype="f1")
        finally:
            vao.release()
            for b in bufs:
                b.release()
        big = np.frombuffer(raw, np.uint8).reshape(s * k, s * k, 4)[::-1].astype(np.float32) / 255.0  # GL rows: bottom up
        return big.reshape(s, k, s, k, 4).mean(axis=(1, 3))

    def depth_extremes(self, pos: np.ndarray, faces: np.ndarray, zrange: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Nearest and farthest depth index of a closed solid under each crop pixel centre: (S, S) float32 each,
        NaN where the solid does not cover the pixel. pos (V, 3) crop frame."""
        import moderngl

        ctx, s = self._ctx, self.size
        self._depth["u_size"].value = (float(s), float(s))
        self._depth["u_zrange"].value = zrange
        vao, bufs = self._vao(self._depth, faces, {"in_pos": pos})
        out = []
        try:
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            self._depth_fbo.use()
            for func, clear in (("<", 1.0), (">", 0.0)):
                ctx.depth_func = func
                self._depth_fbo.clear(np.nan, 0.0, 0.0, 0.0, depth=clear)
                vao.render(moderngl.TRIANGLES)
                out.append(np.frombuffer(self._depth_fbo.read(components=1, dtype="f4"), np.float32)
                           .reshape(s, s)[::-1].copy())  # GL rows: bottom up
        finally:
            ctx.depth_func = "<"
            vao.release()
            for b in bufs:
                b.release()
        return out[0], out[1]


# ------------------------------------------------------------------------------------------- appearance


def _random_blend(rng: np.random.Generator, table: np.ndarray) -> np.ndarray:
    """A random colour between two neighbouring rows of a colour table."""
    i = rng.uniform(0, len(table) - 1)
    lo = int(i)
    hi = min(lo + 1, len(table) - 1)
    return table[lo] + (table[hi] - table[lo]) * (i - lo)


def _lowfreq(rng: np.random.Generator, head: np.ndarray, waves: int = 6) -> np.ndarray:
    """Smooth random field (V,) in about [-1, 1] over head-frame points (V, 3) cm: a sum of random plane waves."""
    d = rng.normal(size=(waves, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    freq = rng.uniform(0.15, 0.8, size=waves)
    phase = rng.uniform(0, 2 * np.pi, size=waves)
    return (np.sin(head @ (d * freq[:, None]).T + phase).sum(axis=1) / np.sqrt(waves)).astype(np.float32)


def vertex_albedo(rng: np.random.Generator, assets: FaceAssets, head: np.ndarray,
                  real: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random per-vertex albedo (R, 3) float32 RGB in [0, 1] and specular strength (R,) for the rendered vertices.

    head: (R, 3) head-frame positions of the rendered vertices (neutral-ish, cm).
    real: optional (R, 3) float32 RGB [0, 1] baked real skin for the rendered vertices (NaN rows: none there);
    it replaces the procedural skin, brows and lips where given; the procedural scalp hair and stubble are still drawn
    over it (a photo shows little of the scalp); eyes, teeth and mouth stay procedural.
    """
    part = np.asarray(RENDERED_PARTS)[assets.part_id]
    skin = _random_blend(rng, SKIN_TONES) * rng.uniform(0.92, 1.08, 3)
    redness = rng.uniform(0.0, 0.12)
    albedo = np.tile(skin, (len(head), 1)).astype(np.float32)
    albedo *= (1.0 + 0.07 * _lowfreq(rng, head))[:, None]
    albedo[:, 0] *= 1.0 + redness * np.clip(_lowfreq(rng, head), 0, 1)
    spec = np.full(len(head), rng.uniform(0.03, 0.3), np.float32)

    lip_colour = skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.75, 1.05)
    w = assets.lip_weight[:, None] * rng.uniform(0.5, 1.0)
    albedo = albedo * (1 - w) + lip_colour * w

    hair = _random_blend(rng, HAIR_COLOURS)
    brow_colour = hair if rng.random() < 0.7 else skin * 0.35
    brow_w = np.clip(1.0 - assets.brow_distance / rng.uniform(0.35, 0.7), 0, 1)[:, None] * rng.uniform(0.5, 0.95)
    albedo = albedo * (1 - brow_w) + brow_colour * brow_w

    if real is not None:
        has = ~np.isnan(real[:, 0])
        albedo[has] = real[has] * rng.uniform(0.9, 1.1, 3)
        spec[has] = rng.uniform(0.03, 0.2)
    skin_like = (part == "face") | (part == "head_and_neck")
    if rng.random() < 0.85:  # hair on the scalp above a random hairline
        y_front, y_back = rng.uniform(6.5, 10.5), rng.uniform(-6.0, 1.0)
        blend = np.clip((head[:, 2] - 0.0) / 7.0, 0, 1)
        threshold = y_back + (y_front - y_back) * blend + 0.04 * head[:, 0] ** 2 * rng.uniform(0, 1)
        hair_w = np.clip((head[:, 1] - threshold) / 0.8, 0, 1) * skin_like
        hair_tex = hair * (1.0 + 0.25 * _lowfreq(rng, head * 6.0, 8))[:, None]
        albedo = albedo * (1 - hair_w[:, None]) + hair_tex * hair_w[:, None]
        spec = spec * (1 - hair_w) + 0.08 * hair_w
    if rng.random() < 0.15:  # stubble / beard shadow
        beard = np.clip((-head[:, 1] - 2.5) / 2.0, 0, 1) * (head[:, 2] > 4.0) * skin_like * (1 - assets.lip_weight)
        albedo *= (1.0 - beard * rng.uniform(0.2, 0.6))[:, None]

    iris = _random_blend(rng, IRIS_COLOURS)
    eye = np.char.startswith(part, "eyeball")
    sclera = np.array([0.85, 0.82, 0.78]) * rng.uniform(0.8, 1.0)
    iris_r = rng.uniform(0.35, 0.45)
    colour_eye = np.where((assets.eye_angle < iris_r)[:, None], iris, sclera)
    colour_eye = np.where((assets.eye_angle < iris_r * rng.uniform(0.3, 0.5))[:, None], 0.02, colour_eye)
    albedo[eye] = colour_eye[eye]
    spec[eye] = 0.9
    fixed = {"teeth": (np.array([0.88, 0.84, 0.74]) * rng.uniform(0.75, 1.0), 0.4),
             "gums_and_tongue": (np.array([0.70, 0.30, 0.30]) * rng.uniform(0.6, 1.0), 0.3),
             "mouth_socket": (np.array([0.30, 0.08, 0.08]) * rng.uniform(0.4, 1.0), 0.1),
             "eye_socket_left": (skin * np.array([0.8, 0.5, 0.5]), 0.5),
             "eye_socket_right": (skin * np.array([0.8, 0.5, 0.5]), 0.5),
             "eyelashes_left": (hair * 0.5, 0.05), "eyelashes_right": (hair * 0.5, 0.05)}
    for name, (colour, s) in fixed.items():
        sel = part == name
        albedo[sel] = colour
        spec[sel] = s
    return np.clip(albedo, 0, 1).astype(np.float32), spec.astype(np.float32)


def random_lights(rng: np.random.Generator) -> dict:
    """1-3 directional lights (camera frame, pointing from the surface towards the light) + ambient + specular."""
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    dirs = rng.normal(size=(n, 3))
    dirs[:, 2] = np.abs(dirs[:, 2]) + rng.uniform(-0.3, 0.8, n)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    warmth = rng.uniform(-0.15, 0.15, n)
    colours = np.column_stack([1 + warmth, np.ones(n), 1 - warmth]) * rng.uniform(0.25, 0.9, (n, 1))
    colours[0] *= rng.uniform(1.0, 1.6)
    ambient = np.full(3, rng.uniform(0.1, 0.5)) * rng.uniform(0.9, 1.1, 3)
    return {"dirs": dirs.astype(np.float32), "colours": colours.astype(np.float32), "ambient": ambient,
            "shininess": rng.uniform(6, 60), "detail": rng.uniform(0.0, 0.3), "detail_freq": rng.uniform(1.5, 8.0)}


_BACKGROUND_CACHE: list[np.ndarray] = []


def _background_images() -> list[np.ndarray]:
    if not _BACKGROUND_CACHE:
        import skimage.data

        for name in BACKGROUND_IMAGES:
            try:
                img = getattr(skimage.data, name)()
            except Exception as err:  # noqa: BLE001 - an image missing from this skimage install is skipped
                log.debug("background %s unavailable: %s", name, err)
                continue
            img = img[0] if isinstance(img, tuple) else img
            img = np.asarray(img)
            if img.dtype != np.uint8:
                img = (255 * (img.astype(np.float32) / max(float(img.max()), 1e-6))).astype(np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            _BACKGROUND_CACHE.append(np.ascontiguousarray(img[:, :, :3]))
    return _BACKGROUND_CACHE


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 RGB in [0, 1]: a piece of a real non-face photo, a noise texture, or a gradient."""
    import cv2

    kind = rng.choice(["photo", "noise", "gradient", "shapes"], p=[0.55, 0.2, 0.1, 0.15])
    if kind == "photo":
        imgs = _background_images()
        img = imgs[rng.integers(len(imgs))]
        h, w = img.shape[:2]
        side = rng.uniform(0.2, 1.0) * min(h, w)
        cx, cy = rng.uniform(side / 2, w - side / 2), rng.uniform(side / 2, h - side / 2)
        m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-30, 30), size / side)
        m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
        out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        out = out.astype(np.float32) / 255.0
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return out * rng.uniform(0.5, 1.2, 3)
    if kind == "noise":
        out = np.zeros((size, size, 3), np.float32)
        for octave in range(rng.integers(2, 6)):
            cells = int(2 ** (octave + rng.integers(1, 3)))
            small = rng.random((cells, cells, 3)).astype(np.float32)
            out += cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) / (octave + 1)
        out -= out.min()
        return out / max(float(out.max()), 1e-6) * rng.uniform(0.3, 1.0, 3)
    if kind == "gradient":
        a, b = rng.random(3), rng.random(3)
        t = np.linspace(0, 1, size, dtype=np.float32)
        ramp = t[None, :] if rng.random() < 0.5 else t[:, None]
        ramp = np.broadcast_to(ramp, (size, size))
        return (a * (1 - ramp[..., None]) + b * ramp[..., None]).astype(np.float32)
    out = np.ones((size, size, 3), np.float32) * rng.random(3)
    for _ in range(rng.integers(3, 12)):
        colour = tuple(float(c) for c in rng.random(3))
        p = rng.uniform(-0.2, 1.2, 2) * size
        if rng.random() < 0.5:
            cv2.circle(out, (int(p[0]), int(p[1])), int(rng.uniform(0.05, 0.5) * size), colour, -1)
        else:
            q = p + rng.uniform(-0.6, 0.6, 2) * size
            cv2.rectangle(out, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, -1)
    return out


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera and compression artefacts, colour jitter. image (S, S, 3) float32 RGB [0, 1] -> uint8 RGB."""
    import cv2

    img = image
    if rng.random() < 0.3:  # the paper's per-channel colour scale
        img = img * rng.uniform(0.6, 1.4, 3)
    else:
        img = img * rng.uniform(0.85, 1.15, 3)
    img = np.clip(img, 0, 1)
    img = img ** rng.uniform(0.7, 1.4)
    img = (img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
    if rng.random() < 0.05:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.4:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.3, 1.3))
    elif rng.random() < 0.1:
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, m, (k, k))
        img = cv2.filter2D(img.astype(np.float32), -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.005, 0.04), img.shape)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]  # OpenCV is BGR; back to RGB
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------------------------------- generator


def random_expression(rng: np.random.Generator, model: FaceModel) -> np.ndarray:
    """Sparse expression weights (K_ex,) in [0, 1]: a few random blendshapes plus frequent jaw/smile/blink."""
    w = np.zeros(model.n_expressions, np.float32)
    for i in rng.choice(model.n_expressions, size=min(rng.poisson(2.0), 6), replace=False):
        w[i] = rng.uniform(0.1, 0.8)
    names = model.expression_names
    def boost(keys: tuple[str, ...], p: float, hi: float) -> None:
        if rng.random() < p:
            v = rng.uniform(0.1, hi)
            for k in keys:
                if k in names:
                    w[names.index(k)] = np.clip(v * rng.uniform(0.8, 1.2), 0, 1)
    boost(("jawOpen",), 0.35, 0.8)
    boost(("mouthSmile_L", "mouthSmile_R"), 0.3, 1.0)
    boost(("eyeBlink_L", "eyeBlink_R"), 0.12, 1.0)
    boost(("browInnerUp_L", "browInnerUp_R"), 0.1, 1.0)
    return w


def random_pose(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """yaw, pitch, roll in degrees: half uniform over the full range, half concentrated near frontal (webcam)."""
    if rng.random() < 0.5:
        yaw = rng.uniform(-cfg.yaw_max, cfg.yaw_max)
    else:
        yaw = np.clip(rng.normal(0, 25), -cfg.yaw_max, cfg.yaw_max)
    pitch = np.clip(rng.normal(0, 14), -cfg.pitch_max, cfg.pitch_max)
    roll = rng.uniform(-cfg.roll_max, cfg.roll_max) if rng.random() < 0.2 else np.clip(rng.normal(0, 10), -cfg.roll_max, cfg.roll_max)
    return np.array([yaw, pitch, roll], np.float32)


def landmark_box_side(points: np.ndarray) -> float:
    """Geometric-mean side of the bounding box of (K, 2) points (the crop rule's size measure)."""
    span = np.ptp(points, axis=0)
    return float(np.sqrt(max(span[0], 1e-6) * max(span[1], 1e-6)))


def tracker_noise(rng: np.random.Generator, points: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """MediaPipe-like error on true 68 frame points (68, 2): global shift and scale, per-point jitter, more on
    the jaw contour (where MediaPipe's mapped points differ most from the iBUG ones)."""
    box = landmark_box_side(points)
    centre = points.mean(axis=0)
    scale = np.exp(rng.normal(0, cfg.crop_scale))
    out = (points - centre) * scale + centre + rng.normal(0, cfg.crop_shift * box, 2)
    jitter = rng.normal(0, cfg.landmark_noise * box, points.shape)
    jitter[:17] *= 2.0
    return (out + jitter).astype(np.float32)


class SynthGenerator:
    """Draws :class:`SynthSample` s. Owns a moderngl context: use as a context manager (or call :meth:`close`)."""

    def __init__(self, cfg: SynthConfig | None = None, model: FaceModel | None = None) -> None:
        self.cfg = cfg or SynthConfig()
        self.model = model or FaceModel.load()
        self.assets = FaceAssets.build(self.model)
        self._raster = SynthRasteriser(self.cfg.size, self.cfg.supersample)
        self._skin, self._backgrounds = None, None
        if self.cfg.skin_bank:
            from realtime_vrn.training.skinbank import SkinBank

            bank = SkinBank.load(self.cfg.skin_bank)
            where = np.full(self.model.neutral.shape[0], -1, np.int64)
            where[bank.vertex_ids] = np.arange(bank.vertex_ids.size)
            self._skin_rows = where[self.assets.render_vertices]   # (R,) row in the bank, -1: not baked
            self._skin = bank.albedo
            self._backgrounds = bank.backgrounds if len(bank.backgrounds) else None

    def _real_skin(self, rng: np.random.Generator) -> np.ndarray | None:
        """(R, 3) float32 baked skin of a random bank face for the rendered vertices (NaN where not baked)."""
        if self._skin is None or rng.random() >= self.cfg.real_skin:
            return None
        tex = self._skin[rng.integers(len(self._skin))].astype(np.float32)
        rows = self._skin_rows
        out = np.full((rows.size, 3), np.nan, np.float32)
        out[rows >= 0] = tex[rows[rows >= 0]]
        return out

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """(S, S, 3) float32 RGB [0, 1] background: a real photo's face-free patch or :func:`random_background`."""
        if self._backgrounds is None or rng.random() >= self.cfg.real_background:
            return random_background(rng, self.cfg.size)
        import cv2

        patch = self._backgrounds[rng.integers(len(self._backgrounds))]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out = cv2.resize(np.ascontiguousarray(patch), (self.cfg.size, self.cfg.size), interpolation=cv2.INTER_AREA)
        return out.astype(np.float32) / 255.0 * rng.uniform(0.8, 1.2, 3)

    def __enter__(self) -> "SynthGenerator":
        self._raster.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._raster.close()

    def __iter__(self) -> Iterator[SynthSample]:
        seed = 0
        while True:
            yield self.sample(seed)
            seed += 1

    def _camera(self, rng: np.random.Generator, head: np.ndarray, pose: np.ndarray) -> Camera:
        cfg = self.cfg
        w, h = cfg.frame_size
        focal = rng.uniform(*cfg.focal_px)
        rot = rotation_matrix(*pose)
        lm = head[self.model.landmarks68] @ rot.T
        box_cm = landmark_box_side(lm[:, :2])
        box_px = np.exp(rng.uniform(*np.log(cfg.box_px)))
        dist = focal * box_cm / box_px + lm[:, 2].mean()
        centre_px = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        offset = (centre_px - np.array([w / 2, h / 2])) * dist / focal
        lm_c = lm.mean(axis=0)
        t = np.array([offset[0] - lm_c[0], -offset[1] - lm_c[1], -dist], np.float32)
        axis = None
        if cfg.depth_axis == "line_of_sight":  # through the landmarks' centre, where the crop looks
            towards = lm_c + t
            axis = (towards / np.linalg.norm(towards)).astype(np.float64)
        return Camera(focal, (w / 2, h / 2), rot, t, axis)

    def scene(self, seed: int) -> tuple[np.random.Generator, Scene]:
        """The first draws of :meth:`sample` for this seed: identity, expression, pose and camera, and the random
        generator positioned after them (``sample`` draws the rest from it). For analyses that re-stage a
        sample's head and camera without rendering it."""
        rng = np.random.default_rng([seed, 0x5E7D])
        identity = rng.standard_normal(self.model.n_identities).astype(np.float32)
        expression = random_expression(rng, self.model)
        head = self.model.vertices(identity, expression)
        pose = random_pose(rng, self.cfg)
        return rng, Scene(identity, expression, head, pose, self._camera(rng, head, pose))

    def sample(self, seed: int) -> SynthSample:
        """The sample of this seed (same seed -> same sample)."""
        from realtime_vrn.crop import CropTransform

        self._raster.open()
        cfg, model, assets = self.cfg, self.model, self.assets
        rng, scene = self.scene(seed)
        head, pose, cam = scene.head, scene.pose, scene.camera

        frame_pts = cam.project(head)                       # (V, 3) frame px, z px towards viewer
        lm_frame = frame_pts[model.landmarks68]
        noisy = tracker_noise(rng, lm_frame[:, :2], cfg)
        crop = CropTransform.from_landmarks(noisy, size=cfg.size)

        def to_crop_frame(p: np.ndarray) -> np.ndarray:
            xy = crop.to_crop(p[:, :2])
            z = 2.0 * crop.scale * p[:, 2]                 # depth index units: crop px, stretched x2
            return np.column_stack([xy, z]).astype(np.float32)

        z_front = 2.0 * crop.scale * frame_pts[: FACE_LAST_VERTEX + 1, 2].max()
        z_shift = cfg.front_index - z_front
        crop_pts = to_crop_frame(frame_pts)
        crop_pts[:, 2] += z_shift
        zrange = (cfg.depth_bins * _ZNEAR_BINS, cfg.depth_bins * _ZFAR_BINS)

        # colour pass
        rv = assets.render_vertices
        normals = vertex_normals(cam.to_camera(head[rv]), assets.render_faces)
        albedo, spec = vertex_albedo(rng, assets, model.neutral[rv], self._real_skin(rng))
        rgba = self._raster.colour(crop_pts[rv], assets.render_faces, normals, albedo, spec, head[rv], zrange,
                                   random_lights(rng))
        background = self._background(rng)
        alpha = rgba[:, :, 3:4]
        image = rgba[:, :, :3] + background * (1 - alpha)  # colour is premultiplied by coverage
        image = self._black_outside_frame(image, crop)
        image = degrade(rng, image)

        # ground truth
        solid_v, solid_f = face_solid(head, assets)
        solid_crop = to_crop_frame(cam.project(solid_v))
        solid_crop[:, 2] += z_shift
        front, back = self._raster.depth_extremes(solid_crop, solid_f, zrange)
        return SynthSample(
            image=image,
            landmarks=crop_pts[model.landmarks68].copy(),
            crop_points=crop.to_crop(noisy).astype(np.float32),
            front=front,
            back=back,
            face_vertices=crop_pts[: FACE_LAST_VERTEX + 1].copy(),
            pose=pose,
            seed=int(seed),
        )

    def _black_outside_frame(self, image: np.ndarray, crop) -> np.ndarray:
        """Crop pixels whose frame position lies outside the virtual frame are black, as CropTransform.warp does."""
        s = self.cfg.size
        w, h = self.cfg.frame_size
        grid = np.stack(np.meshgrid(np.arange(s), np.arange(s)), axis=-1).reshape(-1, 2).astype(np.float32)
        fr = crop.to_frame(grid).reshape(s, s, 2)
        inside = (fr[..., 0] >= -0.5) & (fr[..., 0] <= w - 0.5) & (fr[..., 1] >= -0.5) & (fr[..., 1] <= h - 0.5)
        return image * inside[..., None]
