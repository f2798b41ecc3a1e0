"""Marching cubes on the GPU: ``marching_cubes.cu`` (beside this module) driven through ``cupy.RawModule``.

:class:`CupyMarchingCubes` turns one frame's low-resolution logits ``(D, h, w)`` float32 (on the GPU: a CuPy
array or a torch CUDA tensor, shared without a copy through DLPack) into an indexed mesh that stays on the GPU
(:class:`DeviceMesh`), evaluating the bilinear upsample (the release's x4, x2 after the refinement head) on the
fly. Phases, output order and
coordinate frame are those of the NumPy twin, :mod:`realtime_vrn.surface.gpu.mc_twin`, which it equals (indices
exactly, positions to 1e-5).

Per frame: five kernel launches and three ``cupy.cumsum`` scans on the current CuPy stream, all into buffers
allocated once by :meth:`CupyMarchingCubes.open`, then **one** host synchronisation (reading the vertex,
triangle and active-cell totals). If a frame needs more vertices or triangles than the buffers hold, they grow
and phases 4-5 run again (logged; a second synchronisation, on that frame only). The mesh returned views those
buffers: it is valid until the next :meth:`~CupyMarchingCubes.extract`; :meth:`DeviceMesh.to_mesh` copies it
to the host.

The module is compiled once per device and process (and cached on disk by CuPy). ``import cupy`` happens in
:meth:`~CupyMarchingCubes.open`, never at import time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from realtime_vrn.contracts import check_logits

from .mc_tables import EDGE_AXIS, EDGE_OWNER, ROW, triangle_counts, triangle_table
from .mc_twin import RELEASE_UPSAMPLE, make_grid

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python >= 3.11; only an annotation here

log = logging.getLogger(__name__)

KERNEL_FILE = "marching_cubes.cu"
#: --fmad=false: no fused multiply-add, so every float op rounds like the NumPy twin's.
NVRTC_OPTIONS = ("--fmad=false",)
THREADS = 256
#: Grid-stride launches use at most this many blocks per multiprocessor (enough to hide memory latency).
BLOCKS_PER_SM = 16
#: Initial output capacity; a face at 192 px has ~80k vertices and ~160k triangles. Grows when exceeded.
DEFAULT_MAX_VERTICES = 1 << 19
DEFAULT_MAX_FACES = 1 << 20
KERNELS = ("mc_classify", "mc_compact", "mc_vertices", "mc_triangles", "mc_totals")

_MODULES: dict[tuple[int, str], Any] = {}


def import_cupy():
    """``import cupy`` with an error that names the extra to install."""
    try:
        import cupy
    except ImportError as err:
        raise ImportError(
            "the GPU marching cubes needs CuPy: install the `gpu` extra (pip install 'realtime-vrn[gpu]') "
            "or the cupy-cudaXXx wheel that matches your CUDA"
        ) from err
    return cupy


def kernel_file() -> Traversable:
    """The CUDA source, package data beside this module (found with importlib.resources, like the shaders)."""
    return resources.files(__package__).joinpath(KERNEL_FILE)


def kernel_source() -> str:
    return kernel_file().read_text(encoding="utf-8")


class CupyRuntime:
    """Compiles the kernel module (once per device) and launches its kernels on the current CuPy stream."""

    def __init__(self) -> None:
        cp = import_cupy()
        if not cp.cuda.is_available():
            raise RuntimeError("CuPy sees no CUDA GPU: the GPU marching cubes cannot run here")
        self.xp = cp
        source = kernel_source()
        device = cp.cuda.Device()
        key = (device.id, hashlib.sha256(source.encode()).hexdigest())
        if key not in _MODULES:
            _MODULES[key] = cp.RawModule(code=source, options=NVRTC_OPTIONS)
        module = _MODULES[key]
        self._kernels = {name: module.get_function(name) for name in KERNELS}
        self._max_blocks = device.attributes["MultiProcessorCount"] * BLOCKS_PER_SM

    def asarray(self, logits) -> Any:
        """A CuPy view of a CuPy array or torch CUDA tensor (DLPack, no copy); host arrays are copied."""
        cp = self.xp
        if isinstance(logits, cp.ndarray):
            return logits
        if isinstance(logits, np.ndarray):
            return cp.asarray(logits)
        return cp.from_dlpack(logits)

    def launch(self, name: str, n_items: int, args: tuple) -> None:
        blocks = max(1, min(-(-n_items // THREADS), self._max_blocks))
        self._kernels[name]((blocks,), (THREADS,), args)

    def to_host(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)


@dataclass
class DeviceMesh:
    """A crop-frame mesh on the device (the :class:`~realtime_vrn.surface.mesh.Mesh` contract, no colours).

    vertices (V, 3) float32, faces (F, 3) int32, normals (V, 3) float32: views of the extractor's buffers,
    overwritten by its next ``extract``. ``xp`` is the array module (cupy; numpy under CPU emulation).
    """

    vertices: Any
    faces: Any
    normals: Any
    xp: Any

    def to_mesh(self):
        """Copy to the host as a :class:`~realtime_vrn.surface.mesh.Mesh` (frame "crop")."""
        from realtime_vrn.surface.mesh import Mesh

        if self.faces.shape[0] == 0:
            return Mesh.empty()
        host = getattr(self.xp, "asnumpy", np.asarray)
        return Mesh(
            vertices=np.array(host(self.vertices)),
            faces=np.array(host(self.faces)),
            normals=np.array(host(self.normals)),
            colors=None,
            frame="crop",
        )


class CupyMarchingCubes:
    """Iso-surface (logit 0) of (D, h, w) low-resolution logits, upsampled by ``upsample`` in y and x, on the GPU.

    Construction is cheap; :meth:`open` compiles the kernels and allocates every buffer; :meth:`close` drops them
    (idempotent); also a context manager. ``runtime`` is for tests (a CPU emulation of the kernels).
    """

    def __init__(
        self,
        shape: tuple[int, int, int] = (200, 48, 48),
        upsample: int = RELEASE_UPSAMPLE,
        max_vertices: int = DEFAULT_MAX_VERTICES,
        max_faces: int = DEFAULT_MAX_FACES,
        runtime: Any = None,
    ) -> None:
        if max_vertices < 1 or max_faces < 1:
            raise ValueError(f"capacities must be >= 1, got {max_vertices} vertices and {max_faces} faces")
        self.shape = tuple(int(s) for s in shape)
        self.grid = make_grid(self.shape, upsample)
        self.max_vertices = int(max_vertices)
        self.max_faces = int(max_faces)
        self._runtime = runtime
        self._buf: dict[str, Any] | None = None
        #: Set to True to time the phases with CUDA events (benchmarks); the result is :attr:`last_phase_ms`.
        self.profile = False
        self.last_phase_ms: dict[str, float] = {}
        self._events: list[tuple[str, Any]] = []

    # -- lifetime ---------------------------------------------------------------------------------------------
    def open(self) -> "CupyMarchingCubes":
        if self._buf is not None:
            return self
        rt = self._runtime = self._runtime or CupyRuntime()
        xp, n = rt.xp, self.grid.n_points
        table = np.zeros((256, 16), np.int8)
        table[:, :ROW] = triangle_table()
        self._buf = {
            "idx": xp.asarray(self.grid.idx),
            "wts": xp.asarray(self.grid.wts),
            "tri_counts": xp.asarray(triangle_counts()),
            "tri_table": xp.asarray(table),
            "edge_owner": xp.asarray(np.ascontiguousarray(EDGE_OWNER, np.int32)),
            "edge_axis": xp.asarray(EDGE_AXIS.astype(np.int32)),
            **{name: xp.zeros(n, xp.uint8) for name in ("cases", "edges", "nverts", "ntris", "active")},
            **{name: xp.zeros(n + 1, xp.int32) for name in ("vert_offsets", "active_offsets", "tri_offsets")},
            "active_ids": xp.zeros(n, xp.int32),
            "totals": xp.zeros(3, xp.int32),
        }
        self._allocate_outputs()
        return self

    def close(self) -> None:
        self._buf = None

    def __enter__(self) -> "CupyMarchingCubes":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _allocate_outputs(self) -> None:
        xp = self._runtime.xp
        self._buf["positions"] = xp.zeros((self.max_vertices, 3), xp.float32)
        self._buf["normals"] = xp.zeros((self.max_vertices, 3), xp.float32)
        self._buf["faces"] = xp.zeros((self.max_faces, 3), xp.int32)

    # -- per frame --------------------------------------------------------------------------------------------
    def asarray(self, logits) -> Any:
        """The runtime's device view of ``logits`` (CuPy / torch CUDA through DLPack, no copy). Needs :meth:`open`."""
        self.open()
        return self._runtime.asarray(logits)

    def extract(self, logits) -> DeviceMesh:
        """(D, h, w) or (1, D, h, w) float32 logits (device array / CUDA tensor; numpy is copied) -> DeviceMesh."""
        self.open()
        b, rt = self._buf, self._runtime
        low = check_logits(rt.asarray(logits), self.shape)
        self._events.clear()
        self._mark("start")
        self._classify_and_scan(low)
        self._generate(low)
        rt.launch("mc_totals", 1, (b["vert_offsets"], b["tri_offsets"], b["active_offsets"],
                                   np.int32(self.grid.n_points), b["totals"]))
        n_verts, n_faces, _ = (int(v) for v in rt.to_host(b["totals"]))  # the frame's one synchronisation
        self._read_events()
        if n_verts > self.max_vertices or n_faces > self.max_faces:
            log.warning("marching cubes: %d vertices / %d triangles exceed the buffers (%d / %d); growing them",
                        n_verts, n_faces, self.max_vertices, self.max_faces)
            self.max_vertices = max(self.max_vertices, _next_power_of_two(n_verts))
            self.max_faces = max(self.max_faces, _next_power_of_two(n_faces))
            self._allocate_outputs()
            self._generate(low)
        return DeviceMesh(b["positions"][:n_verts], b["faces"][:n_faces], b["normals"][:n_verts], rt.xp)

    def phases(self, logits) -> dict[str, np.ndarray]:
        """Every phase's output on the host, named as :class:`~realtime_vrn.surface.gpu.mc_twin.TwinResult` (tests)."""
        mesh = self.extract(logits)
        b, host = self._buf, self._runtime.to_host
        n_active = int(host(b["totals"])[2])
        out = {name: host(b[name]) for name in ("cases", "edges", "nverts", "ntris", "active", "vert_offsets",
                                                 "active_offsets", "tri_offsets")}
        out["active_ids"] = host(b["active_ids"][:n_active])
        out.update(positions=host(mesh.vertices), normals=host(mesh.normals), faces=host(mesh.faces))
        return out

    def _field_args(self, low) -> tuple:
        g, b = self.grid, self._buf
        return (low, b["idx"], b["wts"], np.int32(g.depth), np.int32(g.height), np.int32(g.width),
                np.int32(g.low_h), np.int32(g.low_w))

    def _classify_and_scan(self, low) -> None:
        b, rt, xp, n = self._buf, self._runtime, self._runtime.xp, self.grid.n_points
        rt.launch("mc_classify", n, (*self._field_args(low), b["tri_counts"], b["cases"], b["edges"],
                                     b["nverts"], b["ntris"], b["active"]))
        self._mark("classify")
        for counts, offsets in (("nverts", "vert_offsets"), ("active", "active_offsets"), ("ntris", "tri_offsets")):
            xp.cumsum(b[counts], dtype=xp.int32, out=b[offsets][1:])  # offsets[0] stays 0: exclusive scan
        self._mark("scan")
        rt.launch("mc_compact", n, (b["active"], b["active_offsets"], np.int32(n), b["active_ids"]))
        self._mark("compact")

    def _generate(self, low) -> None:
        b, rt, g = self._buf, self._runtime, self.grid
        n = g.n_points
        rt.launch("mc_vertices", n, (*self._field_args(low), b["edges"], b["vert_offsets"],
                                     np.int32(self.max_vertices), b["positions"], b["normals"]))
        self._mark("vertices")
        rt.launch("mc_triangles", n, (b["cases"], b["edges"], b["active_ids"], b["active_offsets"][n:],
                                      b["tri_offsets"], b["vert_offsets"], b["tri_table"], b["edge_owner"],
                                      b["edge_axis"], np.int32(g.height), np.int32(g.width),
                                      np.int32(self.max_faces), b["faces"]))
        self._mark("triangles")

    def _mark(self, phase: str) -> None:
        if self.profile and hasattr(self._runtime.xp, "cuda"):
            event = self._runtime.xp.cuda.Event()
            event.record()
            self._events.append((phase, event))

    def _read_events(self) -> None:
        if not self._events:
            return
        cp = self._runtime.xp
        self.last_phase_ms = {
            phase: float(cp.cuda.get_elapsed_time(before, after))
            for (_, before), (phase, after) in zip(self._events, self._events[1:])
        }


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
