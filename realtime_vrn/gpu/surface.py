"""The surface stage on the GPU: the network's logits never leave the device, only the mesh does.

:class:`DeviceSurfaceExtractor` has the :class:`~realtime_vrn.surface.extract.SurfaceExtractor` contract
(``extract(logits) -> Mesh`` in the crop frame: x, y crop pixels, z = depth index * 0.5, outward winding and
normals, no colours) but takes the logits as a GPU array (a torch CUDA tensor or CuPy array, shared through
DLPack) and runs :class:`~realtime_vrn.gpu.mc_cupy.CupyMarchingCubes`: one host synchronisation per frame (the
mesh size) and one device-to-host copy (the mesh itself, ~2 MB for a 192-px face) for the CPU colour sampling,
rendering and outputs.

:func:`open_surface` picks the stage for a run: ``"auto"`` takes the GPU one when the backend keeps its logits
on the GPU and CuPy works, the fastest CPU one otherwise (:mod:`realtime_vrn.surface.extractors`); ``"cuda"``
insists; ``"cpu"`` or a CPU extractor's name (``"numba"``, ``"skimage"``) never touches CuPy.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime_vrn.config import SURFACE_KINDS
from realtime_vrn.errors import ConfigError
from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.mesh import Mesh

from .mc_cupy import CupyMarchingCubes

log = logging.getLogger(__name__)


class DeviceSurfaceExtractor:
    """GPU iso-surface (logit 0) of one model's (D, g, g) logits (g = ``cfg.grid_size``); buffers allocated once,
    reused per frame.

    ``runtime`` replaces the CuPy runtime (tests run the kernels compiled for the CPU through it).
    """

    on_device = True

    def __init__(self, cfg: VRNConfig, runtime: Any = None) -> None:
        self.cfg = cfg
        self._mc = CupyMarchingCubes((cfg.depth_bins, cfg.grid_size, cfg.grid_size), cfg.output_stride,
                                     runtime=runtime).open()

    def asarray(self, logits) -> Any:
        """A device (CuPy) view of a torch CUDA tensor or CuPy array, without a copy."""
        return self._mc.asarray(logits)

    def extract(self, logits) -> Mesh:
        """logits: (D, h, w) or (1, D, h, w) float32 on the device. Returns the crop-frame Mesh on the host."""
        return self._mc.extract(logits).to_mesh()

    def close(self) -> None:
        self._mc.close()


def open_surface(kind: str, cfg: VRNConfig, backend: Any):
    """The surface stage for ``backend``'s logits: a CPU extractor (:mod:`realtime_vrn.surface.extractors`, warmed
    up) or a DeviceSurfaceExtractor (GPU). ``kind``: auto, cpu (the fastest CPU extractor), cuda, or a CPU
    extractor's name."""
    from realtime_vrn.surface.extractors import EXTRACTORS

    if kind not in SURFACE_KINDS:
        raise ConfigError(f"unknown surface stage {kind!r}; choose one of: {', '.join(SURFACE_KINDS)}")
    on_device = bool(getattr(backend, "outputs_on_device", False))
    if kind in EXTRACTORS:
        return _cpu(cfg, kind)
    if kind == "cpu" or (kind == "auto" and not on_device):
        return _cpu(cfg, "auto")
    if not on_device:
        raise ConfigError(f"--surface cuda needs a backend that runs on the GPU (torch on CUDA, TensorRT); "
                          f"{backend.describe()} returns its logits on the host. Use --backend torch --device cuda "
                          "or --surface cpu.")
    try:
        extractor = DeviceSurfaceExtractor(cfg)
    except Exception as err:  # noqa: BLE001 - no CuPy, no GPU for CuPy, NVRTC failure: all end here
        if kind == "cuda":
            raise ConfigError(f"the GPU surface stage cannot start: {err}") from err
        log.warning("GPU surface stage unavailable (%s); marching cubes runs on the CPU", err)
        return _cpu(cfg, "auto")
    log.info("surface: marching cubes on the GPU (CuPy kernel), logits stay on the device")
    return extractor


def _cpu(cfg: VRNConfig, name: str):
    from realtime_vrn.surface.extractors import open_extractor

    extractor = open_extractor(cfg, name)
    log.info("surface: marching cubes on the CPU (%s)", extractor.name)
    return extractor
