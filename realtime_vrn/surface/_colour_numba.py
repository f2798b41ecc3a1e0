"""The surface stage's last per-vertex loop (:func:`realtime_vrn.surface.colour.coloured_in_image_frame`),
compiled with numba (``cache=True``: compiled once per machine, like the extractor)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def colour_and_scale(vertices, image, scale, shift, colours, out):  # pragma: no cover - compiled
    """Each vertex's colour and its position after an axis-aligned scale and shift, in one pass.

    vertices: (V, 3) float32 crop-frame x, y, z. image: (H, W, 3) uint8, sampled at the nearest pixel centre
    (``np.rint``, halves to even; clipped to the image), as ``sample_colours`` does. scale, shift: (3,) float32,
    out = vertices * scale + shift per axis in float32 (``to_image_frame``'s arithmetic without rotation).
    colours: (V, 3) uint8 and out: (V, 3) float32, written.
    """
    h, w = image.shape[0], image.shape[1]
    top_x, top_y = np.float32(w - 1), np.float32(h - 1)
    zero = np.float32(0.0)
    for i in range(vertices.shape[0]):
        x, y = vertices[i, 0], vertices[i, 1]
        px = int(min(max(np.rint(x), zero), top_x))
        py = int(min(max(np.rint(y), zero), top_y))
        for k in range(3):
            colours[i, k] = image[py, px, k]
            out[i, k] = vertices[i, k] * scale[k] + shift[k]
