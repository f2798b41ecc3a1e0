"""The surface stage's entry: :func:`open_surface` (CPU or GPU) and the CPU implementations, one registry: the
fastest that starts is used, a name insists.

- ``numba``   - :class:`~realtime_vrn.surface.marching.NumbaSurfaceExtractor`: marching cubes compiled with numba
  on the cubes the coarse grid says the surface crosses (the GPU kernel's tables and field); the default.
- ``skimage`` - :class:`~realtime_vrn.surface.extract.SurfaceExtractor`: scikit-image's Lewiner marching cubes
  on the candidate cubes of the upsampled slabs; NumPy and scikit-image only (the fallback without numba).

Both take (D, h, w) float32 logits and return the crop-frame :class:`~realtime_vrn.surface.mesh.Mesh` (x, y
crop pixels, z = depth index * 0.5, outward winding and normals, no colours), the same surface to a fraction of
a voxel (they cut ambiguous cells differently). Each has a ``name`` and ``warm_up()`` (numba compiles there,
at start-up, not on the first frame).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Protocol

from realtime_vrn.config import SURFACE_KINDS
from realtime_vrn.errors import BackendError, ConfigError
from realtime_vrn.model.network import VRNConfig

if TYPE_CHECKING:
    from realtime_vrn.backends.base import Backend
    from realtime_vrn.surface.mesh import Mesh

log = logging.getLogger(__name__)


class SurfaceStage(Protocol):
    """What the pipeline needs of a surface stage (the CPU extractors here, the GPU one in
    :mod:`realtime_vrn.surface.gpu.extractor`).

    on_device: True when it takes the backend's logits on the GPU (``backend.infer_device``), False for host
    logits (``backend.infer``); ``asarray`` makes the array it takes of either (a CuPy view without a copy, or a
    NumPy array); ``extract`` takes (D, g, g) float32 logits (or a batch of one) and returns the crop-frame Mesh;
    ``describe`` names it for the run's summary ("numba marching cubes on 2 threads").
    """

    name: str
    on_device: bool

    def describe(self) -> str: ...

    def asarray(self, logits: Any) -> Any: ...

    def extract(self, logits: Any) -> "Mesh": ...


def _numba(cfg: VRNConfig) -> Any:
    try:
        from .marching import NumbaSurfaceExtractor
    except ImportError as err:  # numba or llvmlite missing or broken
        raise BackendError(f"numba is not importable ({err}); reinstall realtime-vrn's dependencies") from err
    return NumbaSurfaceExtractor(cfg)


def _skimage(cfg: VRNConfig) -> Any:
    from .extract import SurfaceExtractor

    return SurfaceExtractor(cfg)


#: name -> factory, fastest first (docs/benchmarks.md): the names of config.SURFACE_EXTRACTORS, in its order.
EXTRACTORS: dict[str, Callable[[VRNConfig], Any]] = {"numba": _numba, "skimage": _skimage}


def open_extractor(cfg: VRNConfig, name: str = "auto") -> SurfaceStage:
    """A warmed-up CPU extractor for ``cfg``: ``name`` from EXTRACTORS, or ``"auto"`` for the first that starts.

    ConfigError for an unknown name (listing the valid ones); BackendError when none starts (with each one's
    reason).
    """
    if name != "auto" and name not in EXTRACTORS:
        raise ConfigError(f"unknown CPU surface extractor {name!r}; choose one of: auto, {', '.join(EXTRACTORS)}")
    errors = []
    for candidate in EXTRACTORS if name == "auto" else [name]:
        try:
            extractor = EXTRACTORS[candidate](cfg).warm_up()
        except Exception as err:  # noqa: BLE001 - every failure is reported; auto tries the next one
            errors.append(f"{candidate}: {err}")
            log.debug("surface extractor %s unavailable", candidate, exc_info=True)
            continue
        if errors:
            log.warning("surface extractor %s in use; %s", candidate, "; ".join(errors))
        return extractor
    raise BackendError("no CPU surface extractor starts: " + "; ".join(errors))


def open_surface(kind: str, cfg: VRNConfig, backend: "Backend") -> SurfaceStage:
    """The surface stage for ``backend``'s logits: a warmed-up CPU extractor (:func:`open_extractor`) or a
    :class:`~realtime_vrn.surface.gpu.extractor.DeviceSurfaceExtractor` (GPU). ``kind``: auto, cpu (the fastest
    CPU extractor), cuda, or a CPU extractor's name.

    ``"auto"`` takes the GPU one when the backend keeps its logits on the GPU and CuPy works, the fastest CPU
    one otherwise; ``"cuda"`` insists; ``"cpu"`` or a CPU extractor's name (``"numba"``, ``"skimage"``) never
    touches CuPy (the GPU module is imported only here, and CuPy only when it opens).
    """
    if kind not in SURFACE_KINDS:
        raise ConfigError(f"unknown surface stage {kind!r}; choose one of: {', '.join(SURFACE_KINDS)}")
    on_device = backend.outputs_on_device
    if kind in EXTRACTORS:
        return _cpu(cfg, kind)
    if kind == "cpu" or (kind == "auto" and not on_device):
        return _cpu(cfg, "auto")
    if not on_device:
        raise ConfigError(f"--surface cuda needs a backend that runs on the GPU (torch on CUDA, TensorRT); "
                          f"{backend.describe()} returns its logits on the host. Use --backend torch --device cuda "
                          "or --surface cpu.")
    try:
        from realtime_vrn.surface.gpu.extractor import DeviceSurfaceExtractor

        extractor = DeviceSurfaceExtractor(cfg)
    except Exception as err:  # noqa: BLE001 - no CuPy, no GPU for CuPy, NVRTC failure: all end here
        if kind == "cuda":
            raise ConfigError(f"the GPU surface stage cannot start: {err}") from err
        log.warning("GPU surface stage unavailable (%s); marching cubes runs on the CPU", err)
        return _cpu(cfg, "auto")
    log.info("surface: marching cubes on the GPU (CuPy kernel), logits stay on the device")
    return extractor


def _cpu(cfg: VRNConfig, name: str) -> SurfaceStage:
    extractor = open_extractor(cfg, name)
    log.info("surface: %s on the CPU", extractor.describe())
    return extractor
