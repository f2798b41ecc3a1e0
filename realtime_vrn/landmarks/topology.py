"""The triangles of MediaPipe's 468-point face mesh (shared by the real-face benchmark and the depth guidance)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Face Mesh points that belong to the tessellated surface (the 10 iris points after them do not).
N_SURFACE_POINTS = 468


@lru_cache(maxsize=1)
def face_mesh_triangles() -> np.ndarray:
    """(854, 3) int32 triangles of MediaPipe's 468-point face mesh: the 3-cliques of the edge graph of its
    tessellation (``FACEMESH_TESSELATION``), each once, vertex indices ascending (no winding)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    edges = {(min(c.start, c.end), max(c.start, c.end)) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION}
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    triangles = [(a, b, c) for a, b in sorted(edges) for c in sorted(neighbours[a] & neighbours[b]) if c > b]
    return np.asarray(triangles, np.int32)
