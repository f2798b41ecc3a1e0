"""The surface stage on the GPU: the network's logits never leave the device, only the mesh does.

:class:`DeviceSurfaceExtractor` has the :class:`~realtime_vrn.surface.extract.SurfaceExtractor` contract
(``extract(logits) -> Mesh`` in the crop frame: x, y crop pixels, z = depth index * 0.5, outward winding and
normals, no colours) but takes the logits as a GPU array (a torch CUDA tensor or CuPy array, shared through
DLPack) and runs :class:`~realtime_vrn.surface.gpu.mc_cupy.CupyMarchingCubes`: one host synchronisation per frame (the
mesh size) and one device-to-host copy (the mesh itself, ~2 MB for a 192-px face) for the CPU colour sampling,
rendering and outputs.

:func:`realtime_vrn.surface.extractors.open_surface` picks it for a run when the backend keeps its logits on
the GPU.
"""

from __future__ import annotations

from typing import Any

from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.mesh import Mesh

from .mc_cupy import CupyMarchingCubes


class DeviceSurfaceExtractor:
    """GPU iso-surface (logit 0) of one model's (D, g, g) logits (g = ``cfg.grid_size``); buffers allocated once,
    reused per frame.

    ``runtime`` replaces the CuPy runtime (tests run the kernels compiled for the CPU through it).
    """

    name = "cuda"
    on_device = True

    def __init__(self, cfg: VRNConfig, runtime: Any = None) -> None:
        self.cfg = cfg
        self._mc = CupyMarchingCubes((cfg.depth_bins, cfg.grid_size, cfg.grid_size), cfg.output_stride,
                                     runtime=runtime).open()

    def describe(self) -> str:
        return "GPU marching cubes"

    def asarray(self, logits) -> Any:
        """A device (CuPy) view of a torch CUDA tensor or CuPy array, without a copy."""
        return self._mc.asarray(logits)

    def extract(self, logits) -> Mesh:
        """logits: (D, h, w) or (1, D, h, w) float32 on the device. Returns the crop-frame Mesh on the host."""
        return self._mc.extract(logits).to_mesh()

    def close(self) -> None:
        self._mc.close()
