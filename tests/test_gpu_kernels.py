"""The CUDA marching cubes (surface/gpu/marching_cubes.cu) against its NumPy twin.

Three levels, so that as much as possible is checked without a GPU:

- **CPU emulation** (needs g++): the .cu is compiled as plain C++ with a few defines for the CUDA keywords and
  run serially over a small launch grid through the very orchestration code of ``CupyMarchingCubes`` (scans,
  buffer slicing, capacity growth). Every kernel is a grid-stride loop without shared memory or atomics,
  so this runs the kernels' arithmetic and indexing as written.
- **nvcc** (when installed): the source compiles for sm_90 with the options CuPy gets, and ``--fmad=false``
  leaves no fused multiply-add in the PTX (the twin's bit-exactness depends on it).
- **GPU** (marked ``gpu``; skipped without CUDA): CuPy on the device equals the twin exactly on indices and to
  1e-5 on positions, and matches scikit-image's area within 1%.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from realtime_vrn.model.network import VRNConfig
from realtime_vrn.surface.gpu import mc_cupy
from realtime_vrn.surface.gpu.mc_cupy import NVRTC_OPTIONS, CupyMarchingCubes
from realtime_vrn.surface.gpu.mc_twin import marching_cubes_twin
from realtime_vrn.surface.reference import face_like_logits, reference_surface

SMALL = VRNConfig(input_size=64, depth_bins=48)
PHASES = ("cases", "edges", "nverts", "ntris", "active", "vert_offsets", "active_offsets", "tri_offsets",
          "active_ids", "faces")

#: The CUDA keywords the kernel file uses, for compiling it as C++ on the CPU.
CPU_SHIM = r"""
#include <math.h>
struct EmuDim3 { unsigned x, y, z; };
extern "C" { EmuDim3 blockIdx, threadIdx, blockDim, gridDim; }
#define __global__
#define __device__
#define __forceinline__ inline
"""


class _Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


class EmulatedRuntime:
    """The CupyRuntime interface over NumPy arrays and the kernels compiled for the CPU (blocks x threads
    emulated threads, run one after the other)."""

    xp = np

    def __init__(self, lib: ctypes.CDLL, blocks: int = 2, threads: int = 3) -> None:
        self.lib, self.blocks, self.threads = lib, blocks, threads
        self.dims = {name: _Dim3.in_dll(lib, name) for name in ("blockIdx", "threadIdx", "blockDim", "gridDim")}

    def asarray(self, logits):
        return np.asarray(logits)

    def to_host(self, array) -> np.ndarray:
        return np.array(array)

    def launch(self, name: str, n_items: int, args: tuple) -> None:
        kernel = getattr(self.lib, name)
        cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else ctypes.c_int(int(a)) for a in args]
        self.dims["gridDim"].x, self.dims["blockDim"].x = self.blocks, self.threads
        for block in range(self.blocks):
            for thread in range(self.threads):
                self.dims["blockIdx"].x, self.dims["threadIdx"].x = block, thread
                kernel(*cargs)


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("needs a C++ compiler (g++) for the CPU emulation of the kernels")
    folder = tmp_path_factory.mktemp("mc_emulation")
    source = folder / "marching_cubes_cpu.cpp"
    source.write_text(CPU_SHIM + f'#include "{mc_cupy.kernel_file()}"\n')
    library = folder / "marching_cubes_cpu.so"
    # -ffp-contract=off: no fused multiply-add, like --fmad=false on the GPU
    subprocess.run([compiler, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(library))


def assert_equals_twin(got: dict, logits: np.ndarray, upsample: int, position_atol: float = 0.0) -> None:
    twin = marching_cubes_twin(logits, upsample)
    for name in PHASES:
        expected = getattr(twin.classification, name, None)
        expected = getattr(twin, name) if expected is None else expected
        assert np.array_equal(got[name], expected), name
    np.testing.assert_allclose(got["positions"], twin.positions, atol=position_atol, rtol=0)
    np.testing.assert_allclose(got["normals"], twin.normals, atol=max(position_atol, 1e-6) * 10, rtol=0)


# -- CPU emulation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("upsample", [4, 2, 1])
def test_emulated_kernels_equal_the_twin_bit_for_bit(cpu_kernels, upsample):
    logits = face_like_logits(SMALL, seed=5, noise=1.0)
    with CupyMarchingCubes(logits.shape, upsample, runtime=EmulatedRuntime(cpu_kernels)) as mc:
        got = mc.phases(logits)
    assert_equals_twin(got, logits, upsample)
    twin = marching_cubes_twin(logits, upsample)
    assert np.array_equal(got["positions"], twin.positions) and np.array_equal(got["normals"], twin.normals)


def test_emulated_kernels_on_noise_with_odd_launch_and_growing_buffers(cpu_kernels, caplog):
    logits = np.random.default_rng(7).standard_normal((12, 9, 7)).astype(np.float32)
    runtime = EmulatedRuntime(cpu_kernels, blocks=3, threads=5)
    with CupyMarchingCubes(logits.shape, 2, max_vertices=8, max_faces=8, runtime=runtime) as mc:
        got = mc.phases(logits)
        assert mc.max_vertices >= len(got["positions"]) > 8 and mc.max_faces >= len(got["faces"]) > 8
        again = mc.phases(logits)  # the grown buffers are reused
    assert "growing" in caplog.text
    assert_equals_twin(got, logits, 2)
    assert np.array_equal(again["faces"], got["faces"])


def test_emulated_kernels_empty_volume(cpu_kernels):
    logits = np.full((6, 5, 5), -1.0, np.float32)
    with CupyMarchingCubes(logits.shape, 4, runtime=EmulatedRuntime(cpu_kernels)) as mc:
        mesh = mc.extract(logits)
        assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)
        assert mesh.to_mesh().is_empty


def test_extract_rejects_wrong_logits(cpu_kernels):
    with CupyMarchingCubes((6, 5, 5), 2, runtime=EmulatedRuntime(cpu_kernels)) as mc:
        with pytest.raises(ValueError, match="shape"):
            mc.extract(np.zeros((6, 5, 4), np.float32))
        with pytest.raises(ValueError, match="float32"):
            mc.extract(np.zeros((6, 5, 5), np.float64))
        with pytest.raises(ValueError, match="contiguous"):
            mc.extract(np.zeros((6, 5, 10), np.float32)[:, :, ::2])
        assert mc.extract(np.ones((1, 6, 5, 5), np.float32)).to_mesh().is_empty  # a batch of one is accepted


# -- no GPU needed: source, compiler, imports ---------------------------------------------------------------------
def test_kernel_source_is_found_and_declares_every_kernel():
    source = mc_cupy.kernel_source()
    for name in mc_cupy.KERNELS:
        assert f'extern "C" __global__ void {name}(' in source
    code = re.sub(r"//[^\n]*", "", source)
    for construct in ("__shared__", "atomic", "__syncthreads", "#include"):  # the CPU emulation relies on this
        assert construct not in code


def test_nvcc_compiles_the_kernels_without_fused_multiply_add(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    ptx = tmp_path / "mc.ptx"
    kernel = mc_cupy.kernel_file()
    subprocess.run([nvcc, "-arch=sm_90", "-ptx", *NVRTC_OPTIONS, str(kernel), "-o", str(ptx)],
                   check=True, capture_output=True)
    text = ptx.read_text()
    assert all(f".entry {name}(" in text for name in mc_cupy.KERNELS)
    assert "fma." not in text


def test_import_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ImportError, match=r"`gpu` extra"):
        mc_cupy.import_cupy()


def test_construction_is_cheap_and_close_is_idempotent():
    mc = CupyMarchingCubes()  # no CuPy import, no allocation
    assert mc.grid.n_points == 200 * 192 * 192
    mc.close()
    mc.close()
    with pytest.raises(ValueError):
        CupyMarchingCubes(max_vertices=0)


# -- on the GPU ---------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_kernel_equals_twin_on_the_full_grid():
    pytest.importorskip("cupy")
    logits = face_like_logits(seed=1)  # the released geometry: 200 x 48 x 48 -> 200 x 192 x 192
    with CupyMarchingCubes(logits.shape) as mc:
        got = mc.phases(logits)
    assert_equals_twin(got, logits, 4, position_atol=1e-5)


@pytest.mark.gpu
def test_gpu_kernel_small_grids_and_noise():
    pytest.importorskip("cupy")
    for logits, upsample in ((face_like_logits(SMALL, seed=2, noise=1.0), 4),
                             (np.random.default_rng(3).standard_normal((16, 11, 9)).astype(np.float32), 2)):
        with CupyMarchingCubes(logits.shape, upsample, max_vertices=16, max_faces=16) as mc:
            got = mc.phases(logits)
        assert_equals_twin(got, logits, upsample, position_atol=1e-5)


@pytest.mark.gpu
def test_gpu_area_matches_skimage_and_takes_torch_tensors():
    cp = pytest.importorskip("cupy")
    torch = pytest.importorskip("torch")
    from skimage.measure import mesh_surface_area

    logits = face_like_logits(seed=4)
    with CupyMarchingCubes(logits.shape) as mc:
        mesh = mc.extract(torch.from_numpy(logits).cuda()).to_mesh()  # DLPack, no copy
        assert isinstance(mc.extract(cp.asarray(logits)).vertices, cp.ndarray)
    ref = reference_surface(logits)
    assert mesh_surface_area(mesh.vertices, mesh.faces) == pytest.approx(
        mesh_surface_area(ref.vertices, ref.faces), rel=0.01)


# -- the GPU surface stage in the pipeline (kernels emulated on the CPU) ----------------------------------------
class _DeviceOutputs:
    """A CPU backend posing as one whose logits stay on the device (the emulated runtime's device is NumPy)."""

    outputs_on_device = True

    def __init__(self, backend):
        self.backend = backend

    def infer_device(self, batch):
        return self.backend.infer(batch)

    def describe(self):
        return "emulated device"


def test_pipeline_with_the_gpu_surface_stage_matches_the_cpu_one(cpu_kernels, plane_checkpoint, astronaut):
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.bench.gpu import mesh_area
    from realtime_vrn.surface.gpu.extractor import DeviceSurfaceExtractor
    from realtime_vrn.landmarks import open_tracker
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.pipeline import Reconstructor
    from realtime_vrn.sources.base import Frame
    from realtime_vrn.surface.smoothing import LogitSmoother

    frame = Frame(astronaut, 0, 0.0)
    cfg = read_checkpoint_header(plane_checkpoint).cfg
    with open_backend("onnxruntime", plane_checkpoint) as backend, open_tracker(static=True) as tracker:
        cpu = Reconstructor(tracker, backend, cfg).process(frame)
        device = DeviceSurfaceExtractor(cfg, runtime=EmulatedRuntime(cpu_kernels, blocks=4, threads=8))
        rec = Reconstructor(tracker, _DeviceOutputs(backend), cfg, smoother=LogitSmoother(), extractor=device)
        got = rec.process(frame)
        again = rec.process(frame)  # the smoother's second frame runs on the "device" array too
    assert got.mesh.frame == cpu.mesh.frame == "image" and got.mesh.colors is not None
    area_gpu, area_cpu = mesh_area(got.mesh.vertices, got.mesh.faces), mesh_area(cpu.mesh.vertices, cpu.mesh.faces)
    assert abs(area_gpu / area_cpu - 1) < 0.01
    np.testing.assert_allclose(got.mesh.vertices.min(0), cpu.mesh.vertices.min(0), atol=0.5)
    np.testing.assert_allclose(got.mesh.vertices.max(0), cpu.mesh.vertices.max(0), atol=0.5)
    np.testing.assert_array_equal(again.mesh.faces, got.mesh.faces)


def test_surface_stage_choice(plane_checkpoint):
    from realtime_vrn.backends.registry import open_backend
    from realtime_vrn.errors import ConfigError
    from realtime_vrn.surface.extractors import open_surface
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.surface.extract import SurfaceExtractor
    from realtime_vrn.surface.marching import NumbaSurfaceExtractor

    cfg = read_checkpoint_header(plane_checkpoint).cfg
    with open_backend("onnxruntime", plane_checkpoint) as backend:
        assert isinstance(open_surface("auto", cfg, backend), NumbaSurfaceExtractor)  # the fastest CPU one
        assert isinstance(open_surface("cpu", cfg, backend), NumbaSurfaceExtractor)
        assert isinstance(open_surface("skimage", cfg, backend), SurfaceExtractor)
        with pytest.raises(ConfigError, match="needs a backend that runs on the GPU"):
            open_surface("cuda", cfg, backend)
        fake = _DeviceOutputs(backend)
        if not _cupy_gpu():
            assert isinstance(open_surface("auto", cfg, fake), NumbaSurfaceExtractor)  # falls back, with a warning
            with pytest.raises(ConfigError, match="GPU surface stage cannot start"):
                open_surface("cuda", cfg, fake)


def _cupy_gpu() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False
