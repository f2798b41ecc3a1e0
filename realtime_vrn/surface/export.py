"""Mesh files: Wavefront OBJ and PLY, written atomically, readable by trimesh, MeshLab and Blender.

Coordinates are written as the mesh holds them (the pipeline exports image-frame meshes: x right, y down in
frame pixels, z towards the viewer); each file states its frame in a header comment. ``y_up=True`` negates y
and reverses the winding (and negates the normals' y) so that the file is right-handed with x right, y up and
z towards the viewer, the OpenGL convention MeshLab and Blender's Y-up import expect. Without it the y-down
frame is mirrored for those viewers (upside down) but its winding still agrees with its normals.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from realtime_vrn.errors import OutputError
from realtime_vrn.fileio import write_atomic

from .mesh import Mesh

_FRAMES = {
    "crop": "crop frame: x right, y down in crop pixels; z = depth index * 0.5, larger nearer the camera",
    "image": "image frame: x right, y down in frame pixels; z in frame pixels from the volume's back plane, "
    "larger nearer the camera",
}


def _oriented(mesh: Mesh, y_up: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices float32, normals float32, faces int32) as they go into the file."""
    v = np.asarray(mesh.vertices, np.float32)
    n = np.asarray(mesh.normals, np.float32)
    f = np.asarray(mesh.faces, np.int32)
    if y_up:
        flip = np.float32([1.0, -1.0, 1.0])
        v, n = v * flip, n * flip
        f = f[:, [0, 2, 1]]  # a mirror reverses orientation: keep cross(v1 - v0, v2 - v0) outward
    return v, n, f


def _header_lines(mesh: Mesh, y_up: bool) -> list[str]:
    frame = _FRAMES.get(mesh.frame, f"frame {mesh.frame!r}")
    lines = [
        "realtime-vrn mesh: VRN iso-surface at p = 0.5",
        frame,
        "y negated for y-up viewers: right-handed, x right, y up, z towards the viewer (OpenGL)"
        if y_up
        else "y down as stored (for MeshLab / Blender, export with y_up)",
        "winding: cross(v1 - v0, v2 - v0) points along the outward normal",
        f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
        + ("per-vertex RGB colours" if mesh.colors is not None else "no colours"),
    ]
    return lines


def _rows(prefix: str, fmt: str, array: np.ndarray) -> str:
    """One line per row: ``prefix fmt fmt ...``, formatted in a single %-operation (fast for large arrays)."""
    if len(array) == 0:
        return ""
    line = prefix + " ".join([fmt] * array.shape[1]) + "\n"
    return (line * len(array)) % tuple(array.ravel().tolist())


def write_obj(path: str | os.PathLike, mesh: Mesh, y_up: bool = False) -> None:
    """Write ``mesh`` as Wavefront OBJ: ``v x y z r g b`` (colours as floats in [0, 1], the common extension;
    plain ``v x y z`` without colours), ``vn``, and ``f a//a b//b c//c`` (1-based, normal index = vertex index).

    Raises OutputError if the file cannot be written (it is written to a temporary file and renamed).
    """
    mesh.validate()
    v, n, f = _oriented(mesh, y_up)
    header = "".join(f"# {line}\n" for line in _header_lines(mesh, y_up))
    if mesh.colors is not None:
        vertex_rows = _rows("v ", "%.4f", np.concatenate([v, mesh.colors.astype(np.float32) / 255.0], axis=1))
    else:
        vertex_rows = _rows("v ", "%.4f", v)
    text = header + vertex_rows + _rows("vn ", "%.5f", n) + _face_rows(f)
    _atomic_write(Path(path), text.encode("ascii"))


def _face_rows(faces: np.ndarray) -> str:
    """``f a//a b//b c//c``: 1-based, each vertex's normal has its index."""
    if len(faces) == 0:
        return ""
    pairs = np.repeat(faces.astype(np.int64) + 1, 2, axis=1)
    return ("f %d//%d %d//%d %d//%d\n" * len(faces)) % tuple(pairs.ravel().tolist())


def write_ply(path: str | os.PathLike, mesh: Mesh, y_up: bool = False, binary: bool = True) -> None:
    """Write ``mesh`` as PLY (binary little-endian, or ASCII with ``binary=False``).

    vertex: float x y z nx ny nz, uchar red green blue (left out without colours); face: list uchar int
    vertex_indices. Raises OutputError if the file cannot be written (temporary file, then rename).
    """
    mesh.validate()
    v, n, f = _oriented(mesh, y_up)
    fields = [(name, "<f4") for name in ("x", "y", "z", "nx", "ny", "nz")]
    if mesh.colors is not None:
        fields += [(name, "u1") for name in ("red", "green", "blue")]
    vertex = np.empty(len(v), dtype=np.dtype(fields))  # packed, as PLY lays it out
    for i, name in enumerate(("x", "y", "z")):
        vertex[name] = v[:, i]
    for i, name in enumerate(("nx", "ny", "nz")):
        vertex[name] = n[:, i]
    if mesh.colors is not None:
        for i, name in enumerate(("red", "green", "blue")):
            vertex[name] = mesh.colors[:, i]
    face = np.empty(len(f), dtype=np.dtype([("count", "u1"), ("vertex_indices", "<i4", (3,))]))
    face["count"] = 3
    face["vertex_indices"] = f

    ply_types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    header += [f"comment {line}" for line in _header_lines(mesh, y_up)]
    header.append(f"element vertex {len(v)}")
    header += [f"property {ply_types[t]} {name}" for name, t in fields]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")
    if binary:
        body = vertex.tobytes() + face.tobytes()
    else:
        vfmt = " ".join(["%.5f"] * 6 + ["%d"] * (len(fields) - 6))
        rows = [vfmt % tuple(r) for r in vertex.tolist()]
        body = ("".join(r + "\n" for r in rows) + _rows("3 ", "%d", f)).encode("ascii")
    _atomic_write(Path(path), head + body)


def _atomic_write(path: Path, data: bytes) -> None:
    """:func:`realtime_vrn.fileio.write_atomic` (readers never see a partial file); OutputError when it fails."""
    try:
        write_atomic(path, data)
    except OSError as err:
        raise OutputError(f"cannot write mesh file {path}: {err.strerror or err}") from err


def export_mesh(mesh: Mesh, path: Path, y_up: bool) -> None:
    """Write ``mesh`` as PLY when ``path`` ends in ``.ply`` (any case), else as OBJ."""
    (write_ply if path.suffix.lower() == ".ply" else write_obj)(path, mesh, y_up=y_up)
