"""Projections of the renderer: the pixel-exact overlay and the orbit camera of the 3D view.

Every matrix maps *image-frame* mesh coordinates (x, y frame pixels, y down; z frame pixels, larger = nearer)
to clip space of a framebuffer whose row 0 is image row 0 (top), so the read-back needs no flip. Matrices are
(4, 4) float32 acting on column vectors; normal matrices are (3, 3) float32 mapping image-frame normals to
view space (x right, y up, z towards the viewer), where the lighting is evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Image frame (y down) -> right-handed y-up world: flip y.
_FLIP_Y3 = np.diag([1.0, -1.0, 1.0])
#: Clip-space y flip: puts "up" at framebuffer row H-1, the last row of the top-down read-back.
_FLIP_Y_CLIP = np.diag([1.0, -1.0, 1.0, 1.0])
#: Default depth range of the overlay in units of the larger frame side: a face's depth is well under one.
OVERLAY_DEPTH_SIDES = 4.0
#: Vertical field of view of the 3D view: a mild perspective like a portrait lens.
FOV_Y_DEGREES = 30.0


def overlay_matrices(
    width: int, height: int, z_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic projection that puts frame pixel (x, y) exactly on output pixel (x, y).

    Pixel centres are at integer coordinates (architecture contract): output pixel column i spans window
    x in [i, i + 1) with its centre at i + 0.5, so ``ndc_x = 2 (x + 0.5) / W - 1`` (same for y, with framebuffer
    row 0 = image row 0). A vertex at (x, y) therefore lands on pixel (round(x), round(y)).
    z_range: (z_min, z_max) frame pixels mapped to the far and near planes (larger z nearer); default
    +-4 * max(W, H). A tight range (the mesh's own) gives the depth buffer its full precision.
    Returns (mvp (4, 4), normal_matrix (3, 3)), float32.
    """
    if z_range is None:
        depth = OVERLAY_DEPTH_SIDES * max(width, height)
        z_range = (-depth, depth)
    z_min, z_max = float(z_range[0]), float(z_range[1])
    if not z_max > z_min:
        z_min, z_max = z_min - 1.0, z_max + 1.0
    mvp = np.array(
        [
            [2.0 / width, 0.0, 0.0, 1.0 / width - 1.0],
            [0.0, 2.0 / height, 0.0, 1.0 / height - 1.0],
            [0.0, 0.0, -2.0 / (z_max - z_min), (z_max + z_min) / (z_max - z_min)],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    return mvp.astype(np.float32), _FLIP_Y3.astype(np.float32)


def window_rect(mvp: np.ndarray, lo: np.ndarray, hi: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel rectangle (x, y, w, h) of a width x height framebuffer that holds the projection of the box
    [lo, hi] (image frame, (3,) each) under ``mvp``; the whole framebuffer if the box reaches behind the eye.
    """
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1)
    clip = mvp.astype(np.float64) @ np.vstack([corners, np.ones(8)])
    if np.any(clip[3] <= 0):
        return 0, 0, width, height
    win = (clip[:2] / clip[3] * 0.5 + 0.5) * np.array([[width], [height]])
    x0, y0 = np.floor(win.min(axis=1)).astype(int) - 1  # one pixel of slack for rounding
    x1, y1 = np.ceil(win.max(axis=1)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return int(x0), int(y0), int(max(x1 - x0, 0)), int(max(y1 - y0, 0))


@dataclass
class OrbitCamera:
    """State of the 3D view: yaw and pitch (degrees) around the mesh centroid, zoom (> 1 = closer).

    yaw = pitch = 0 looks at the face from the camera, as in the overlay. Mouse helpers: ``drag`` turns by
    screen pixels, ``scroll`` zooms by wheel steps.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    zoom: float = 1.0

    DEGREES_PER_PIXEL = 0.4  # a 450-pixel drag turns half way round
    ZOOM_PER_STEP = 1.1
    PITCH_LIMIT = 89.0
    ZOOM_LIMITS = (0.2, 20.0)

    def drag(self, dx: float, dy: float) -> None:
        """Orbit by a mouse drag of (dx, dy) window pixels (x right, y down)."""
        self.yaw = (self.yaw + dx * self.DEGREES_PER_PIXEL + 180.0) % 360.0 - 180.0
        self.pitch = float(np.clip(self.pitch + dy * self.DEGREES_PER_PIXEL, -self.PITCH_LIMIT, self.PITCH_LIMIT))

    def scroll(self, steps: float) -> None:
        """Zoom in by ``steps`` wheel steps (negative = out)."""
        self.zoom = float(np.clip(self.zoom * self.ZOOM_PER_STEP**steps, *self.ZOOM_LIMITS))

    def reset(self) -> None:
        self.yaw, self.pitch, self.zoom = 0.0, 0.0, 1.0

    def rotation(self) -> np.ndarray:
        """(3, 3) float64 world -> view rotation: yaw about the y axis, then pitch about the x axis."""
        a, b = math.radians(self.yaw), math.radians(self.pitch)
        ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
        return rx @ ry

    def matrices(
        self, centre: np.ndarray, radius: float, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Perspective view of a mesh with bounding sphere (centre (3,) image frame, radius frame pixels).

        The whole sphere fits the viewport of width x height pixels at zoom 1.
        Returns (mvp (4, 4), normal_matrix (3, 3)), float32.
        """
        radius = max(float(radius), 1e-3)
        half_fov = math.radians(FOV_Y_DEGREES) / 2
        fit = radius / math.sin(half_fov) / min(1.0, width / height)  # fit the narrower side
        distance = fit / self.zoom
        rot = self.rotation() @ _FLIP_Y3
        model_view = np.eye(4)
        model_view[:3, :3] = rot
        model_view[:3, 3] = -rot @ np.asarray(centre, np.float64) - (0.0, 0.0, distance)
        near = max(distance - 2.0 * radius, distance * 1e-3)
        far = distance + 2.0 * radius
        return (_FLIP_Y_CLIP @ perspective(half_fov * 2, width / height, near, far) @ model_view).astype(
            np.float32
        ), rot.astype(np.float32)


def perspective(fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL perspective projection (fov_y radians), (4, 4) float64."""
    f = 1.0 / math.tan(fov_y / 2)
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
            [0, 0, -1, 0],
        ]
    )
