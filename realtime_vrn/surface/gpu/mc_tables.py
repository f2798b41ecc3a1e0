"""Marching-cubes lookup tables, built from first principles and shared by the CUDA kernel and its NumPy twin.

Numbering (the classic Lorensen / Bourke convention). Corner ``k`` of a cell sits at offset (dx, dy, dz):

    0 (0,0,0)  1 (1,0,0)  2 (1,1,0)  3 (0,1,0)  4 (0,0,1)  5 (1,0,1)  6 (1,1,1)  7 (0,1,1)

and edge ``e`` joins corners ``EDGE_CORNERS[e]`` (0-3 the z=0 square, 4-7 the z=1 square, 8-11 the z edges).
A cell's case is the 8-bit mask of its *inside* corners (logit > 0).

Triangulation: on every face, each maximal run of inside corners (in the face's cyclic order) is cut off by
one segment between its two crossing edges. An ambiguous face (inside corners on a diagonal) therefore always
separates its inside corners; the rule depends on the face's four corners only, so the two cells sharing a face
draw the same segments and the surface is crack-free (watertight away from the volume border). Each edge
crossing has exactly one segment entering and one leaving it, so the segments close into loops, and each loop
of ``k`` crossings becomes ``k - 2`` triangles with no diagonal on a cell face (see :func:`_triangulate`).
Segments are directed so that every triangle is wound with ``cross(v1 - v0, v2 - v0)`` pointing from the
inside (logit > 0) to the outside, in (x, y, z).

The tables are computed once (~0.1 s) and uploaded to the GPU by :mod:`realtime_vrn.surface.gpu.mc_cupy`, so the
kernel and the twin cannot disagree about them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: (dx, dy, dz) of each cell corner.
CORNER_OFFSETS = np.array(
    [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)], np.int32
)
#: The two corners of each of the 12 cell edges.
EDGE_CORNERS = np.array(
    [(0, 1), (1, 2), (3, 2), (0, 3), (4, 5), (5, 6), (7, 6), (4, 7), (0, 4), (1, 5), (2, 6), (3, 7)], np.int32
)
#: Axis of each edge: 0 = x, 1 = y, 2 = z.
EDGE_AXIS = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2, 2, 2, 2], np.int32)
#: (dx, dy, dz) of the grid point that owns each edge: its lower corner (every point owns its +x, +y, +z edges).
EDGE_OWNER = CORNER_OFFSETS[EDGE_CORNERS[:, 0]]
#: Triangles per case are at most this many (the table rows hold 3 * MAX_TRIANGLES edge ids and a -1 end mark).
MAX_TRIANGLES = 5
ROW = 3 * MAX_TRIANGLES + 1


def _faces() -> list[list[int]]:
    """The 6 cell faces as corner cycles, counter-clockwise seen from outside the cell (right-handed normal)."""
    faces = []
    centre = np.full(3, 0.5)
    for axis in range(3):
        for side in (0, 1):
            corners = [k for k in range(8) if CORNER_OFFSETS[k, axis] == side]
            mid = CORNER_OFFSETS[corners].mean(axis=0)
            u, v = [a for a in range(3) if a != axis]
            angles = [np.arctan2(CORNER_OFFSETS[k, v] - mid[v], CORNER_OFFSETS[k, u] - mid[u]) for k in corners]
            cycle = [corners[i] for i in np.argsort(angles)]
            p = CORNER_OFFSETS[cycle].astype(float)
            normal = np.cross(p[1] - p[0], p[2] - p[1])
            if np.dot(normal, mid - centre) < 0:
                cycle.reverse()
            faces.append(cycle)
    return faces


def _edge_between(a: int, b: int) -> int:
    for e, (c0, c1) in enumerate(EDGE_CORNERS):
        if {a, b} == {int(c0), int(c1)}:
            return e
    raise AssertionError(f"corners {a} and {b} share no edge")


def _loops(case: int, faces: list[list[int]]) -> list[list[int]]:
    """Closed loops of crossed edges for one case, each directed so that its fan faces outward."""
    inside = [(case >> k) & 1 == 1 for k in range(8)]
    following: dict[int, int] = {}
    for cycle in faces:
        n = len(cycle)
        for i in range(n):
            a, b = cycle[i], cycle[(i + 1) % n]
            if inside[a] and not inside[b]:  # the run of inside corners ending at a exits here
                start = i
                while inside[cycle[(start - 1) % n]]:
                    start -= 1
                entry = _edge_between(cycle[(start - 1) % n], cycle[start % n])
                exit_ = _edge_between(a, b)
                following[entry] = exit_
    loops = []
    while following:
        first = min(following)
        loop = [first]
        nxt = following.pop(first)
        while nxt != first:
            loop.append(nxt)
            nxt = following.pop(nxt)
        loops.append(loop)
    return loops


def _coplanar_pairs(faces: list[list[int]]) -> set[frozenset[int]]:
    """Pairs of cell edges that lie on a common face."""
    pairs = set()
    for cycle in faces:
        edges = [_edge_between(cycle[i], cycle[(i + 1) % 4]) for i in range(4)]
        pairs |= {frozenset((a, b)) for a in edges for b in edges if a != b}
    return pairs


def _triangulate(loop: list[int], coplanar: set[frozenset[int]]) -> list[tuple[int, int, int]]:
    """Triangles of one loop whose diagonals never lie on a cell face.

    A fan would sometimes join two crossings of an ambiguous face that the loop passes twice: that diagonal lies
    in the face, where the neighbouring cell may draw it too (an edge of four triangles). Among the
    triangulations without such diagonals, the first in a fixed search order is taken (a fan around the last
    crossing when that is allowed).
    """
    def allowed(i: int, j: int) -> bool:
        return abs(i - j) in (1, len(loop) - 1) or frozenset((loop[i], loop[j])) not in coplanar

    def solve(i: int, j: int) -> list[tuple[int, int, int]] | None:  # polygon loop[i..j], base (i, j)
        if j - i < 2:
            return []
        for k in range(i + 1, j):
            if allowed(i, k) and allowed(k, j):
                left, right = solve(i, k), solve(k, j)
                if left is not None and right is not None:
                    return [(i, k, j)] + left + right
        return None

    found = solve(0, len(loop) - 1)
    if found is None:
        raise AssertionError(f"loop {loop} has no triangulation off the cell faces")
    return [(loop[a], loop[b], loop[c]) for a, b, c in found]


@lru_cache(maxsize=1)
def triangle_table() -> np.ndarray:
    """(256, ROW) int8: per case, the edge ids of its triangles, 3 per triangle, padded with -1."""
    faces = _faces()
    coplanar = _coplanar_pairs(faces)
    table = np.full((256, ROW), -1, np.int8)
    for case in range(256):
        tris = []
        for loop in _loops(case, faces):
            tris += _triangulate(loop, coplanar)
        if len(tris) > MAX_TRIANGLES:
            raise AssertionError(f"case {case} needs {len(tris)} triangles")
        flat = [e for tri in tris for e in tri]
        table[case, : len(flat)] = flat
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def triangle_counts() -> np.ndarray:
    """(256,) uint8 number of triangles of each case (0 for the empty and the full cell only)."""
    counts = ((triangle_table() >= 0).sum(axis=1) // 3).astype(np.uint8)
    counts.setflags(write=False)
    return counts


#: popcount of the 3-bit edge mask of a grid point (its crossed +x, +y, +z edges).
VERTEX_COUNTS = np.array([bin(m).count("1") for m in range(8)], np.uint8)
