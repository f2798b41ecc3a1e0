"""The ICT Face Model (ICT-FaceKit "light", MIT): loading the converted ``.npz`` and converting the original release.

A linear morphable head model in centimetres, +y up, +z out of the face (towards the viewer), x to the subject's
left::

    vertices = neutral + sum_i w_id[i] * identity_modes[i] + sum_j w_ex[j] * expression_modes[j]

with identity weights drawn from N(0, 1) and expression weights in [0, 1]. The ``.npz`` layout is described in
``data/ict-facekit/README.md`` of the team's shared data (``REALTIME_VRN_SHARED``); :func:`convert_facexmodel` rebuilds it from the public release's
``FaceXModel/`` folder (OBJ files + ``vertex_indices.json``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime_vrn.errors import VRNError

log = logging.getLogger(__name__)

#: The environment variable naming the team's shared data folder, where the converted model is looked for when no
#: path is given (``<shared>/data/ict-facekit/ict_face_model.npz``). The package bakes in no location of its own.
SHARED_ENV = "REALTIME_VRN_SHARED"
#: Where the converted model lies inside the shared data folder.
SHARED_NPZ = Path("data", "ict-facekit", "ict_face_model.npz")

#: Vertex ranges (inclusive) of the parts of the ICT mesh, as listed in ICT-FaceKit's README ("Model details").
PART_RANGES: tuple[tuple[str, int, int], ...] = (
    ("face", 0, 9408),
    ("head_and_neck", 9409, 11247),
    ("mouth_socket", 11248, 13293),
    ("eye_socket_left", 13294, 13677),
    ("eye_socket_right", 13678, 14061),
    ("gums_and_tongue", 14062, 17038),
    ("teeth", 17039, 21450),
    ("eyeball_left", 21451, 23020),
    ("eyeball_right", 23021, 24590),
    ("lacrimal_fluid_left", 24591, 24794),
    ("lacrimal_fluid_right", 24795, 24998),
    ("eye_blend_left", 24999, 25022),
    ("eye_blend_right", 25023, 25046),
    ("eye_occlusion_left", 25047, 25198),
    ("eye_occlusion_right", 25199, 25350),
    ("eyelashes_left", 25351, 26034),
    ("eyelashes_right", 26035, 26718),
)
N_VERTICES = 26719
GROUPS_DTYPE = np.dtype([("name", "<U24"), ("first", "<i4"), ("last", "<i4")])
_IDENTITY_FILE = re.compile(r"^identity(\d{3})\.obj$")


class FaceModelError(VRNError):
    """The face model file or folder is missing or malformed."""


def shared_dir() -> Path:
    """The team's shared data folder, from :data:`SHARED_ENV`. FaceModelError (saying what to set) without it."""
    value = os.environ.get(SHARED_ENV, "").strip()
    if not value:
        raise FaceModelError(f"no face model given and {SHARED_ENV} is not set: set {SHARED_ENV} to the shared data "
                             f"folder (the one holding {SHARED_NPZ.as_posix()}) or pass the path of "
                             "ict_face_model.npz (--face-model FILE of data render, data skin, data fit and eval)")
    return Path(value).expanduser()


def default_npz() -> Path:
    """The converted model in the shared data folder (:func:`shared_dir`): the default of :meth:`FaceModel.load`."""
    return shared_dir() / SHARED_NPZ


@dataclass(frozen=True)
class FaceModel:
    """The ICT linear face model. Arrays as in the ``.npz`` (see module docstring); units cm.

    neutral (V, 3) float32; faces (F, 3) int32 triangles; identity_modes (K_id, V, 3) float32;
    expression_modes (K_ex, V, 3) float32; landmarks68 (68,) int32 vertex indices (iBUG order);
    groups: name -> (first, last) inclusive vertex range.
    """

    neutral: np.ndarray
    faces: np.ndarray
    identity_modes: np.ndarray
    expression_modes: np.ndarray
    identity_names: tuple[str, ...]
    expression_names: tuple[str, ...]
    landmarks68: np.ndarray
    rigid_vertices: np.ndarray
    groups: dict[str, tuple[int, int]]
    uvs: np.ndarray | None = None
    face_uvs: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> "FaceModel":
        """The model in ``path`` (an ``ict_face_model.npz``); None: :func:`default_npz` (needs ``REALTIME_VRN_SHARED``)."""
        path = Path(path) if path is not None else default_npz()
        if not path.is_file():
            raise FaceModelError(
                f"ICT face model not found at {path}; pass the path of ict_face_model.npz or convert the "
                "ICT-FaceKit FaceXModel folder with `realtime-vrn data convert-facekit`"
            )
        try:
            with np.load(path, allow_pickle=False) as d:
                data = {k: d[k] for k in d.files}
        except (OSError, ValueError) as err:
            raise FaceModelError(f"cannot read face model {path}: {err}") from err
        required = {"neutral", "faces", "identity_modes", "expression_modes", "landmarks68", "groups"}
        missing = sorted(required - set(data))
        if missing:
            raise FaceModelError(f"face model {path} lacks keys {missing}")
        groups = {str(g["name"]): (int(g["first"]), int(g["last"])) for g in data["groups"]}
        return cls(
            neutral=data["neutral"].astype(np.float32),
            faces=data["faces"].astype(np.int32),
            identity_modes=data["identity_modes"].astype(np.float32),
            expression_modes=data["expression_modes"].astype(np.float32),
            identity_names=tuple(str(n) for n in data.get("identity_names", [])),
            expression_names=tuple(str(n) for n in data.get("expression_names", [])),
            landmarks68=data["landmarks68"].astype(np.int32),
            rigid_vertices=data.get("rigid_vertices", np.zeros(0, np.int32)).astype(np.int32),
            groups=groups,
            uvs=data.get("uvs"),
            face_uvs=data.get("face_uvs"),
        )

    @property
    def n_identities(self) -> int:
        return self.identity_modes.shape[0]

    @property
    def n_expressions(self) -> int:
        return self.expression_modes.shape[0]

    def expression_index(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError as err:
            raise FaceModelError(f"unknown expression {name!r}; valid: {', '.join(self.expression_names)}") from err

    def part(self, name: str) -> np.ndarray:
        """Vertex indices (int32) of one part, e.g. ``"face"``, ``"teeth"``."""
        first, last = self.groups[name]
        return np.arange(first, last + 1, dtype=np.int32)

    def vertices(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Mesh vertices (V, 3) float32 cm for identity weights (K_id,) ~N(0,1) and expression weights (K_ex,) in [0,1].

        Either may be shorter than the number of modes (the remaining weights are zero) or None (all zero).
        """
        v = self.neutral.copy()
        for weights, modes, what in ((identity, self.identity_modes, "identity"),
                                     (expression, self.expression_modes, "expression")):
            if weights is None:
                continue
            w = np.asarray(weights, dtype=np.float32).ravel()
            if w.size > modes.shape[0]:
                raise ValueError(f"expected at most {modes.shape[0]} {what} weights, got {w.size}")
            nz = np.flatnonzero(w)
            if nz.size:
                v += np.tensordot(w[nz], modes[nz], axes=1)
        return v


# ---------------------------------------------------------------- conversion of the original release


def read_obj(path: Path) -> tuple[np.ndarray, list[list[int]], np.ndarray, list[list[int]]]:
    """Minimal OBJ reader: vertices (V, 3) float32, polygon vertex indices (0-based), uvs (T, 2), polygon uv indices."""
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    polys: list[list[int]] = []
    poly_uvs: list[list[int]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(t) for t in line.split()[1:4]])
            elif line.startswith("vt "):
                uvs.append([float(t) for t in line.split()[1:3]])
            elif line.startswith("f "):
                refs = [tok.split("/") for tok in line.split()[1:]]
                polys.append([int(r[0]) - 1 for r in refs])
                poly_uvs.append([int(r[1]) - 1 if len(r) > 1 and r[1] else -1 for r in refs])
    if not verts:
        raise FaceModelError(f"{path} holds no vertices")
    return np.asarray(verts, np.float32), polys, np.asarray(uvs, np.float32).reshape(-1, 2), poly_uvs


def triangulate(polys: list[list[int]]) -> np.ndarray:
    """Split polygons into (F, 3) int32 triangles in the .npz order: 0-1-2 of every polygon, then 0-2-3 of the quads."""
    first = [(p[0], p[1], p[2]) for p in polys]
    second = [(p[0], p[2], p[3]) for p in polys if len(p) == 4]
    if any(len(p) not in (3, 4) for p in polys):
        raise FaceModelError("expected triangles and quads only in the FaceXModel OBJ files")
    return np.asarray(first + second, dtype=np.int32)


def convert_facexmodel(folder: str | Path, out: str | Path, *, require_complete: bool = True) -> Path:
    """Convert ICT-FaceKit's ``FaceXModel/`` folder to the ``.npz`` layout :meth:`FaceModel.load` reads.

    folder: holds ``generic_neutral_mesh.obj``, ``identity000.obj`` ... ``identity099.obj``, one OBJ per expression
    named in ``vertex_indices.json`` (absolute meshes; modes are stored as deltas from the neutral mesh, float16)
    and ``vertex_indices.json``. ``require_complete=False`` accepts a partial folder (e.g. the test sample) and
    keeps only the modes present.
    """
    folder, out = Path(folder), Path(out)
    index_file = folder / "vertex_indices.json"
    neutral_file = folder / "generic_neutral_mesh.obj"
    for f in (index_file, neutral_file):
        if not f.is_file():
            raise FaceModelError(f"{folder} is not an ICT-FaceKit FaceXModel folder: {f.name} is missing")
    meta = json.loads(index_file.read_text(encoding="utf-8"))
    neutral, polys, uvs, poly_uvs = read_obj(neutral_file)
    if neutral.shape[0] != N_VERTICES:
        raise FaceModelError(f"expected {N_VERTICES} vertices in {neutral_file.name}, got {neutral.shape[0]}")

    identity_names = sorted(p.stem for p in folder.iterdir() if _IDENTITY_FILE.match(p.name))
    expression_names = [n for n in meta["expressions"] if (folder / f"{n}.obj").is_file()]
    if require_complete:
        missing = [n for n in meta["expressions"] if n not in expression_names]
        if len(identity_names) != 100 or missing:
            raise FaceModelError(
                f"incomplete FaceXModel folder {folder}: {len(identity_names)} of 100 identities, "
                f"missing expressions {missing[:5]}{'...' if len(missing) > 5 else ''}"
            )

    def deltas(names: list[str]) -> np.ndarray:
        modes = np.zeros((len(names), N_VERTICES, 3), np.float16)
        for i, name in enumerate(names):
            v, *_ = read_obj(folder / f"{name}.obj")
            if v.shape != neutral.shape:
                raise FaceModelError(f"{name}.obj has {v.shape[0]} vertices, expected {N_VERTICES}")
            modes[i] = (v - neutral).astype(np.float16)
        return modes

    log.info("converting %d identities and %d expressions from %s", len(identity_names), len(expression_names), folder)
    groups = np.array(list(PART_RANGES), dtype=GROUPS_DTYPE)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        neutral=neutral,
        faces=triangulate(polys),
        uvs=uvs,
        face_uvs=triangulate(poly_uvs),
        identity_modes=deltas(identity_names),
        identity_names=np.array(identity_names),
        expression_modes=deltas(expression_names),
        expression_names=np.array(expression_names),
        landmarks68=np.asarray(meta["idx_to_landmark_verts"], np.int32),
        rigid_vertices=np.asarray(meta["idx_to_rigid_verts"], np.int32),
        groups=groups,
    )
    return out
