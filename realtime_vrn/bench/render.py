"""Benchmark of the renderer: render + read-back of a frame with a face-sized mesh, warmed up, median / p95.

``benchmark_render`` returns a JSON-ready dict for ``realtime-vrn bench --render`` and ``realtime-vrn bench
render``. The mesh is a closed ellipsoid in the image frame (front and back, like the VRN volume's surface) of the
size of a face close to a webcam; the frame is a smooth gradient. Correctness is checked before timing: the
overlay must cover the ellipse's analytic silhouette.
"""

from __future__ import annotations

import math
import time

import numpy as np

from realtime_vrn.bench.environment import environment_info
from realtime_vrn.bench.timing import summarize
from realtime_vrn.render.renderer import Renderer
from realtime_vrn.surface.mesh import Mesh

#: The issue's target: render + read-back of a 1280x720 overlay with a 150k-triangle mesh.
TARGET_MS = 10.0
#: Face height as a fraction of the frame height: a face about 50 cm from a webcam.
FACE_HEIGHT_FRACTION = 0.5
#: Silhouette agreement required before timing (differences sit on the one-pixel boundary ring).
MIN_SILHOUETTE_IOU = 0.98


def ellipsoid_mesh(
    centre: tuple[float, float, float],
    radii: tuple[float, float, float],
    triangles: int,
    color: tuple[int, int, int] | None = (210, 160, 130),
) -> Mesh:
    """A closed latitude-longitude ellipsoid in the image frame with about ``triangles`` faces.

    centre, radii: frame pixels (x right, y down, z nearer). Faces wind outwards (cross(v1 - v0, v2 - v0) along
    the outward normal); normals are the exact ellipsoid normals; colours a constant RGB (or None).
    """
    n = max(3, int(round(math.sqrt(triangles / 2))))
    n_lat, n_lon = n + 1, n
    theta = np.linspace(0.0, math.pi, n_lat)[:, None]  # from the +y pole (image bottom) to the -y pole
    phi = np.linspace(0.0, 2 * math.pi, n_lon, endpoint=False)[None, :]
    unit = np.stack(
        [np.sin(theta) * np.cos(phi), np.cos(theta) * np.ones_like(phi), np.sin(theta) * np.sin(phi)], axis=-1
    ).reshape(-1, 3)
    radii_arr = np.asarray(radii, np.float64)
    vertices = unit * radii_arr + np.asarray(centre, np.float64)
    normals = unit / radii_arr
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    i = np.arange(n_lat - 1)[:, None]
    j = np.arange(n_lon)[None, :]
    a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    colors = None if color is None else np.tile(np.asarray(color, np.uint8), (len(vertices), 1))
    return Mesh(
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        normals=normals.astype(np.float32),
        colors=colors,
        frame="image",
    )


def face_sized_ellipsoid(width: int, height: int, triangles: int) -> Mesh:
    """An ellipsoid the size of a face near the camera, centred in a width x height frame."""
    ry = FACE_HEIGHT_FRACTION * height / 2
    return ellipsoid_mesh((width / 2 - 0.3, height / 2 + 0.2, 0.0), (0.75 * ry, ry, 0.5 * ry), triangles)


def silhouette_iou(rgba: np.ndarray, mesh: Mesh) -> float:
    """Intersection over union of the rendered coverage (alpha > 0) and the analytic ellipse silhouette of an
    ``ellipsoid_mesh`` (centre and radii recovered from its vertices)."""
    lo, hi = mesh.vertices.min(0).astype(np.float64), mesh.vertices.max(0).astype(np.float64)
    (cx, cy, _), (rx, ry, _) = (lo + hi) / 2, (hi - lo) / 2
    yy, xx = np.mgrid[: rgba.shape[0], : rgba.shape[1]]
    expected = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    got = rgba[..., 3] > 0
    return float((expected & got).sum() / max(1, (expected | got).sum()))


def benchmark_render(
    width: int = 1280,
    height: int = 720,
    triangles: int = 150_000,
    *,
    view: str = "overlay",
    rasterizer: str = "auto",
    warmup: int = 10,
    repeats: int = 100,
    renderer: Renderer | None = None,
) -> dict:
    """Time ``Renderer.render`` (mesh upload, rasterisation, read-back, compositing) on a synthetic frame.

    renderer: an open renderer to measure (e.g. the window's); by default a headless one is made and closed.
    Returns times in milliseconds (median, p95, mean, min), the check, the target and the environment.
    """
    frame = _gradient_frame(width, height)
    mesh = face_sized_ellipsoid(width, height, triangles)
    own = renderer is None
    renderer = renderer or Renderer(rasterizer=rasterizer)
    try:
        renderer.open()
        rgba = renderer.draw_mesh(mesh, (width, height))
        iou = silhouette_iou(rgba, mesh)
        if iou < MIN_SILHOUETTE_IOU:
            raise RuntimeError(f"renderer check failed: silhouette IoU {iou:.4f} < {MIN_SILHOUETTE_IOU}")
        for _ in range(warmup):
            renderer.render(frame, mesh, view=view, hud_lines=["fps 00.0"])
        times = np.empty(repeats)
        for k in range(repeats):
            t0 = time.perf_counter()
            renderer.render(frame, mesh, view=view, hud_lines=["fps 00.0"])  # synchronous: ends with a read-back
            times[k] = time.perf_counter() - t0
        info = renderer.ctx.info
        result = {
            "what": "render + read-back + compositing",
            "view": view,
            "rasterizer": renderer.rasterizer,
            "width": width,
            "height": height,
            "triangles": int(len(mesh.faces)),
            "vertices": int(len(mesh.vertices)),
            "warmup": warmup,
            "repeats": repeats,
            **{k: v for k, v in summarize(times).items() if k != "count"},
            "silhouette_iou": iou,
            "target_ms": TARGET_MS,
            "gl_renderer": info["GL_RENDERER"],
            "gl_version": info["GL_VERSION"],
        }
    finally:
        if own:
            renderer.close()
    result["meets_target"] = result["median_ms"] <= TARGET_MS
    result["environment"] = environment_info()
    return result


def _gradient_frame(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: smooth colour ramps, so compositing errors would show."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
