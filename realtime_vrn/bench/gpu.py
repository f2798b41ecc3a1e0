"""GPU benchmark: the network on CUDA (FP32, FP16 + channels_last, + CUDA graph) and the CuPy marching cubes.

``realtime-vrn bench gpu --json FILE.json`` (scripts/gpu_check.sh runs it on a lent GPU machine).
Each measurement checks correctness before timing it (FP16 against FP32 logits; the kernel against its NumPy
twin and scikit-image), warms up, synchronises inside the timed region and reports median and p95 over many
runs, next to the CPU references measured in the same run. Hardware and versions go into the JSON.

Also runs without a GPU (``--cpu-only``): then only the NumPy twin and scikit-image are timed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import numpy as np

from realtime_vrn.bench.environment import environment_info
from realtime_vrn.bench.timing import summarize

log = logging.getLogger(__name__)

#: The issue's targets on the GPU machine, reported beside the measurements (never asserted here).
TARGETS_MS = {"network_fp16_median_ms": 3.0, "marching_cubes_median_ms": 1.0}
WARMUP = 20


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = WARMUP, sync: Callable[[], None] = lambda: None):
    """Wall time per call of ``fn`` (with ``sync()`` inside the timed region), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return summarize(samples)


def face_logits(depth: int = 200, grid: int = 48, seed: int = 0) -> np.ndarray:
    """A VRN-like (D, h, h) float32 logit field of a frontal face (the surface stage's test volume)."""
    from realtime_vrn.model.network import HEAD_UPSAMPLE, VRNConfig
    from realtime_vrn.surface.reference import face_like_logits

    return face_like_logits(VRNConfig(input_size=grid * HEAD_UPSAMPLE, depth_bins=depth), seed=seed)


def mesh_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    if len(faces) == 0:
        return 0.0
    v = vertices.astype(np.float64)[faces]
    return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


# -- CPU references -----------------------------------------------------------------------------------------------
def bench_cpu_references(logits: np.ndarray, runs: int = 5) -> dict[str, Any]:
    """The NumPy twin (full grid and pre-upsample grid) and scikit-image on the full volume, on the CPU."""
    from realtime_vrn.surface.reference import reference_surface

    from realtime_vrn.surface.gpu.mc_twin import marching_cubes_twin

    twin = marching_cubes_twin(logits)
    ref = reference_surface(logits)
    return {
        "logits_shape": list(logits.shape),
        "twin_full_grid": {**time_calls(lambda: marching_cubes_twin(logits), runs, warmup=1),
                           "vertices": len(twin.positions), "faces": len(twin.faces)},
        "twin_lowres_grid": time_calls(lambda: marching_cubes_twin(logits, upsample=1), runs, warmup=1),
        "skimage_full_volume": time_calls(lambda: reference_surface(logits), runs, warmup=1),
        "area_twin_over_skimage": mesh_area(twin.positions, twin.faces) / mesh_area(ref.vertices, ref.faces),
    }


# -- marching cubes on the GPU ------------------------------------------------------------------------------------
def bench_marching_cubes(logits: np.ndarray, runs: int = 200) -> dict[str, Any]:
    """CuPy kernel on the device-resident logits: equality with the twin, area vs skimage, then timings."""
    import cupy as cp

    from realtime_vrn.surface.reference import reference_surface

    from realtime_vrn.surface.gpu.mc_cupy import CupyMarchingCubes
    from realtime_vrn.surface.gpu.mc_twin import marching_cubes_twin

    twin = marching_cubes_twin(logits)
    device_logits = cp.asarray(logits)
    with CupyMarchingCubes(logits.shape) as mc:
        got = mc.phases(device_logits)
        faces_equal = bool(np.array_equal(got["faces"], twin.faces))
        check = {
            "faces_equal_twin": faces_equal,
            "phases_equal_twin": all(
                np.array_equal(got[k], getattr(twin.classification, k)) for k in ("cases", "edges", "ntris")
            ) and all(np.array_equal(got[k], getattr(twin, k)) for k in ("vert_offsets", "tri_offsets", "active_ids")),
            "max_position_error": _max_abs(got["positions"], twin.positions),
            "max_normal_error": _max_abs(got["normals"], twin.normals),
        }
        ref = reference_surface(logits)
        check["area_over_skimage"] = mesh_area(got["positions"], got["faces"]) / mesh_area(ref.vertices, ref.faces)
        timing = time_calls(lambda: mc.extract(device_logits), runs)  # extract ends with its one sync
        mc.profile = True
        phases = []
        for _ in range(50):
            mc.extract(device_logits)
            phases.append(mc.last_phase_ms)
        mc.profile = False
        to_host = time_calls(lambda: mc.extract(device_logits).to_mesh(), max(20, runs // 4))
    return {
        "grid": [mc.grid.depth, mc.grid.height, mc.grid.width],
        "vertices": int(len(got["positions"])), "faces": int(len(got["faces"])),
        "check": check,
        "extract_device": timing,
        "extract_and_copy_to_host": to_host,
        "phase_median_ms": {k: float(np.median([p[k] for p in phases])) for k in phases[0]},
        "target_median_ms": TARGETS_MS["marching_cubes_median_ms"],
    }


def _max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.shape != b.shape:
        return None
    return float(np.abs(a - b).max()) if a.size else 0.0


# -- the network on CUDA ------------------------------------------------------------------------------------------
def bench_network(runs: int = 200, compile_model: bool = False, seed: int = 0) -> dict[str, Any]:
    """The released architecture (random weights), batch 1, on CUDA: FP32, FP16 channels_last, + CUDA graph.

    Parity: FP16 against FP32 logits of the same weights on a real face crop (skimage's astronaut), as the
    volume IoU of ``logit > 0`` after the release's x4 upsample.
    """
    import torch

    from realtime_vrn.model.network import VRN, VRNConfig, upsample_logits

    torch.manual_seed(seed)
    cfg = VRNConfig()
    dev = torch.device("cuda")
    net32 = VRN(cfg).eval().to(dev)
    net16 = VRN(cfg).eval()
    net16.load_state_dict(net32.state_dict())
    net16 = net16.half().to(dev, memory_format=torch.channels_last)
    crop = _face_crop(cfg.input_size).to(dev)
    crop16 = crop.half().contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize
    out: dict[str, Any] = {"config": json.loads(cfg.to_json()), "batch": 1}
    with torch.inference_mode():
        ref = net32.forward_lowres(crop)
        low16 = net16.forward_lowres(crop16).float()
        out["parity_fp16_vs_fp32"] = _parity(upsample_logits(ref, cfg.input_size),
                                             upsample_logits(low16, cfg.input_size))
        out["fp32_eager"] = time_calls(lambda: net32.forward_lowres(crop), runs // 4, sync=sync)
        out["fp16_channels_last_eager"] = time_calls(lambda: net16.forward_lowres(crop16), runs, sync=sync)
        out["fp16_channels_last_cuda_graph"] = _time_cuda_graph(net16, crop16, runs)
        if compile_model:
            out["fp16_torch_compile"] = _time_compiled(net16, crop16, runs)
    out["target_median_ms"] = TARGETS_MS["network_fp16_median_ms"]
    return out


def _face_crop(size: int):
    import torch
    from skimage import data
    from skimage.transform import resize

    face = data.astronaut()[30:230, 140:340]  # the astronaut's face, roughly centred, RGB
    crop = resize(face, (size, size), anti_aliasing=True).astype(np.float32)  # [0, 1]
    return torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()


def _parity(full32, full16) -> dict[str, float]:
    a, b = full32 > 0, full16 > 0
    union = (a | b).sum().item()
    return {"volume_iou_at_0.5": (a & b).sum().item() / union if union else 1.0,
            "max_abs_logit_diff": (full32 - full16).abs().max().item(),
            "occupied_fraction": a.float().mean().item()}


def _time_cuda_graph(net, crop, runs: int) -> dict[str, Any]:
    import torch

    static_in = crop.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up (cuDNN algorithm choice) outside the capture
            net.forward_lowres(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = net.forward_lowres(static_in)
    graph.replay()
    torch.cuda.synchronize()
    same = torch.allclose(static_out, net.forward_lowres(static_in), atol=1e-2, rtol=1e-2)
    return {**time_calls(graph.replay, runs, sync=torch.cuda.synchronize), "matches_eager": bool(same)}


def _time_compiled(net, crop, runs: int) -> dict[str, Any]:
    import torch

    start = time.perf_counter()
    compiled = torch.compile(net.forward_lowres, mode="max-autotune")
    compiled(crop)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    return {**time_calls(lambda: compiled(crop), runs, sync=torch.cuda.synchronize), "compile_s": compile_s}


def run(runs: int = 200, cpu_only: bool = False, compile_model: bool = False) -> dict[str, Any]:
    """Every section (the CPU references; unless ``cpu_only`` the CuPy kernel and the network on CUDA), JSON-ready;
    a section that fails holds its ``error`` (``realtime-vrn bench gpu`` writes the result)."""
    logits = face_logits()
    result: dict[str, Any] = {"environment": environment_info(), "targets_ms": TARGETS_MS}
    result["cpu_references"] = bench_cpu_references(logits)
    if not cpu_only:
        result["marching_cubes_gpu"] = _guarded(lambda: bench_marching_cubes(logits, runs))
        result["network_gpu"] = _guarded(lambda: bench_network(runs, compile_model))
    return result


def _guarded(fn: Callable[[], dict]) -> dict:
    """Run one benchmark section; a failure is recorded in the JSON instead of losing the other sections."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - reported in the JSON and the log
        log.exception("benchmark section failed")
        return {"error": f"{type(err).__name__}: {err}"}
