"""Benchmark mode: the pipeline's FPS and per-stage latency, plus the stage references, in one JSON.

Everything is measured in one run on the same machine so that ratios are meaningful on noisy hosts: the
CPU surface stage (iso-surface, colours, frame mapping) is compared with scikit-image's marching cubes on the
full volume for the same network outputs (the model's own grid, and resampled to the release's 200x192x192); the
network is timed with each backend; rendering with a 150k-triangle mesh.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime_vrn.bench.environment import environment_info
from realtime_vrn.config import RunConfig

log = logging.getLogger(__name__)

#: Network outputs kept from the run for the surface comparison (spread over the clip).
SURFACE_SAMPLES = 8
#: The released model's low-resolution output grid (D, h, w); its full volume is 200x192x192.
FULL_GRID = (200, 48, 48)
#: Issue targets, reported next to the measurements (pass / fail is for the reader, never asserted in tests).
TARGETS = {
    # issue 14: the front half (MediaPipe, crop, network input) over MediaPipe's own time per frame in the same
    # run, the landmarks stage ("today 9.6 vs 6.8 ms": both figures of one pipeline run)
    "landmarks+crop_over_landmarks": 1.2,
    # the stricter reading, against a separate MediaPipe-only pass, whose call is faster back to back than
    # between other work (docs/benchmarks.md); reported next to it
    "landmarks+crop_over_mediapipe_only": 1.2,
    "pipeline_fps_over_mediapipe_only": 0.25,
    "surface_speedup_vs_skimage": 10.0,  # issue 14: the whole stage (iso-surface, colours, frame mapping)
    "surface_distance_voxels": 0.5,
}


def run_benchmark(config: RunConfig, backends: str = "", surface_runs: int = 20, render: bool = False,
                  full_network: bool = False, jitter: bool = False, compare_pipeline: bool = False) -> dict:
    """Run the pipeline headless on the configured source and measure the stage references.

    Returns a JSON-ready dict; also prints a short table.
    """
    from realtime_vrn.pipeline import WARM_FRAMES, run

    config.render = render
    config.progress = False
    samples: list[SurfaceSample] = []
    seen = [0]

    def keep(rec) -> None:
        if rec.logits is not None:
            seen[0] += 1
            if len(samples) < SURFACE_SAMPLES and seen[0] % 10 == 1:
                x = rec.logits  # a CuPy array when the surface stage runs on the GPU
                samples.append(SurfaceSample(x.get() if hasattr(x, "get") else x.copy(), rec.crop_image, rec.crop))

    summary = run(config, on_frame=keep)
    result: dict[str, Any] = {"pipeline": asdict(summary)}
    lc = summary.stages.get("landmarks+crop", {}).get("median_ms")
    lm = summary.stages.get("landmarks", {}).get("median_ms")
    result["front_half"] = {"landmarks_median_ms": lm, "landmarks+crop_median_ms": lc,
                            "landmarks+crop_over_landmarks": lc / lm if lc is not None and lm else None}
    print(f"pipeline: {summary.fps:.1f} FPS over {summary.frames} frames ({summary.frames_without_face} without "
          f"a face); RSS {summary.rss_start_mb:.0f} MiB at start, {summary.rss_warm_mb:.0f} after {WARM_FRAMES} "
          f"frames, {summary.rss_end_mb:.0f} at the end")
    if lc is not None and lm:
        print(f"front half: landmarks+crop median {lc:.2f} ms / landmarks (MediaPipe's own time in this run) "
              f"{lm:.2f} ms = {_ratio(result['front_half']['landmarks+crop_over_landmarks'])} (issue 14 target "
              f"<= 1.2)")
    result["mediapipe_only"] = _mediapipe_only(config, summary.frames)
    if "fps" in result["mediapipe_only"]:
        mp = result["mediapipe_only"]
        mp["pipeline_fps_over_mediapipe_only"] = summary.fps / mp["fps"] if mp["fps"] > 0 else None
        alone = mp["landmarks"].get("median_ms")
        mp["landmarks+crop_over_mediapipe_only"] = lc / alone if lc is not None and alone else None
        print(f"MediaPipe alone on the same frames: {mp['fps']:.1f} FPS (landmarks median "
              f"{mp['landmarks']['median_ms']:.2f} ms); pipeline / MediaPipe-only = "
              f"{mp['pipeline_fps_over_mediapipe_only']:.2f} (issue 14 target >= 0.25); landmarks+crop / "
              f"MediaPipe alone = {_ratio(mp['landmarks+crop_over_mediapipe_only'])} (the stricter reading of "
              f"<= 1.2)")
        # MediaPipe's own call is slower when anything, even sleep, separates two calls (docs/benchmarks.md): the
        # same frames again with the pipeline's rhythm separate that from what the front half adds to it
        rest = summary.stages.get("end_to_end", {}).get("median_ms")
        if rest is not None and lc is not None and rest > lc:
            paced = _mediapipe_only(config, summary.frames, pause_s=(rest - lc) / 1e3)
            paced_ms = paced["landmarks"].get("median_ms")
            mp["paced"] = {"pause_ms": rest - lc, "landmarks": paced["landmarks"],
                           "landmarks+crop_over_paced": lc / paced_ms if paced_ms else None}
            print(f"MediaPipe alone at the pipeline's rhythm ({rest - lc:.1f} ms asleep after each call): landmarks "
                  f"median {paced_ms:.2f} ms; landmarks+crop / that = "
                  f"{_ratio(mp['paced']['landmarks+crop_over_paced'])}")
    if samples:
        result["surface"] = _surface_comparison(samples, surface_runs, stride=_output_stride(summary.model))
        if samples[0].logits.shape != FULL_GRID:
            from realtime_vrn.model.network import HEAD_UPSAMPLE  # the released model's x4

            result["surface_full_grid"] = _surface_comparison([_to_full_grid(s) for s in samples], surface_runs,
                                                              HEAD_UPSAMPLE, label="surface (resampled to 200x48x48)")
    if backends:
        result["network"] = _network_backends(config, backends)
        if full_network:
            result["network_full_size"] = _network_backends(config, backends, full_size=True)
    if render:
        result["render"] = _render_reference()
    if jitter:
        result["jitter"] = _jitter(config)
    if compare_pipeline:
        result["pipeline_comparison"] = _compare_pipeline(config)
    result["targets"] = TARGETS
    result["environment"] = environment_info()
    return result


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _mediapipe_only(config: RunConfig, frames: int, pause_s: float = 0.0) -> dict:
    """The reference line: the same source and frames with only decoding and MediaPipe's tracker (no crop,
    network, surface or outputs). Returns {fps, frames, landmarks: {median_ms, p95_ms, ...}}, or {skipped: why}
    when the run replayed recorded landmarks (no MediaPipe to time).

    pause_s: idle time after each call (the paced reference: MediaPipe called at the pipeline's rhythm, the rest
    of each frame spent asleep instead of in the network and the surface)."""
    import time

    from realtime_vrn.pipeline import _open_source, _open_tracker
    from realtime_vrn.bench.timing import LatencyStats

    if config.landmarks is not None:
        return {"skipped": "landmarks were replayed from a recording (--landmarks): MediaPipe did not run"}
    stats = LatencyStats()
    count = 0
    with _open_source(config) as source, _open_tracker(config, source) as tracker:
        media_fps = source.fps if not source.is_live and not source.is_still else None
        # the run's own call: every face followed (--faces all) or the largest
        landmarks = tracker.process_all if config.all_faces(source.is_still) else tracker.process
        start = time.perf_counter()
        for frame in source:
            if count >= frames:
                break
            with stats.time("landmarks"):
                landmarks(frame.image, frame.index / media_fps if media_fps else frame.timestamp)
            count += 1
            if pause_s > 0:
                time.sleep(pause_s)
        wall = time.perf_counter() - start
    return {"fps": count / wall if wall > 0 else 0.0, "frames": count,
            "landmarks": stats.summary_ms().get("landmarks", {})}


@dataclass(frozen=True)
class SurfaceSample:
    """One frame's input to the surface stage: (D, h, w) float32 logits, the (S, S, 3) uint8 RGB crop they were
    computed from, and its crop transform (crop pixels <-> frame pixels)."""

    logits: np.ndarray
    crop_image: np.ndarray
    crop: Any


def _to_full_grid(sample: SurfaceSample) -> SurfaceSample:
    """A smaller model's sample resampled to the released model's 200x48x48 grid (logits trilinear, the crop
    bilinear to 192 px with its transform scaled alike), so the surface stage is measured at full size on a real
    face's field (its full volume is 200x192x192)."""
    import cv2
    from scipy.ndimage import zoom

    from realtime_vrn.crop import CROP_SIZE, CropTransform

    factors = [t / s for t, s in zip(FULL_GRID, sample.logits.shape)]
    logits = np.ascontiguousarray(zoom(sample.logits, factors, order=1), dtype=np.float32)
    grow = CROP_SIZE / sample.crop.size
    image = cv2.resize(sample.crop_image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
    return SurfaceSample(logits, image, CropTransform(sample.crop.centre, sample.crop.scale * grow, CROP_SIZE))


def _output_stride(model_path: str) -> int:
    """The run's model's output stride (4: the release's head; 2: the refinement head), read from its header."""
    from realtime_vrn.errors import WeightsError
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.model.network import HEAD_UPSAMPLE

    try:
        return read_checkpoint_header(model_path).cfg.output_stride
    except WeightsError:  # the run read it already; if it is gone since, report at the release's stride
        return HEAD_UPSAMPLE


def _surface_comparison(samples: list[SurfaceSample], runs: int, stride: int, label: str = "surface") -> dict:
    """The CPU surface stage (the run's default extractor: iso-surface, colours, frame mapping) vs scikit-image's
    marching cubes on the full volume, on a run's frames, the logits upsampled by ``stride``. The extractor is
    compiled and warmed up before any timing."""
    import time

    from realtime_vrn.surface.extractors import open_extractor
    from realtime_vrn.surface.reference import compare_with_reference, config_for

    start = time.perf_counter()
    extractor = open_extractor(config_for(samples[0].logits, stride))
    warm_up_s = time.perf_counter() - start
    per_frame = [compare_with_reference(s.logits, runs=runs, extractor=extractor, crop_image=s.crop_image,
                                        crop=s.crop) for s in samples]
    keys = ("fast_median_ms", "fast_p95_ms", "reference_median_ms", "reference_p95_ms", "speedup",
            "mean_distance", "p95_distance")
    agg = {k: float(np.median([r[k] for r in per_frame])) for k in keys if k in per_frame[0]}
    agg["worst_p95_distance"] = float(max(r.get("p95_distance", 0.0) for r in per_frame))
    agg["frames"] = len(per_frame)
    agg["extractor"] = extractor.name
    agg["extractor_description"] = extractor.describe()  # with its threads
    agg["extractor_warm_up_s"] = warm_up_s  # numba: compiling or loading its cache; ~0 after the run did it
    agg["fast_stage"] = per_frame[0]["fast_stage"]
    print(f"{label} [{extractor.describe()}, warm-up {warm_up_s:.1f} s]: stage (iso-surface + colours + frame mapping) "
          f"median {agg.get('fast_median_ms', 0):.2f} ms (p95 {agg.get('fast_p95_ms', 0):.2f}) vs scikit-image full "
          f"volume {agg.get('reference_median_ms', 0):.1f} ms (p95 {agg.get('reference_p95_ms', 0):.1f}) -> "
          f"{agg.get('speedup', 0):.1f}x; distance mean {agg.get('mean_distance', 0):.3f} / p95 "
          f"{agg.get('p95_distance', 0):.3f} voxel (target >= 10x, <= 0.5)")
    return {"median_over_frames": agg, "per_frame": per_frame}


def _network_backends(config: RunConfig, backends: str, full_size: bool = False) -> dict:
    """Time the network alone with each backend: the run's model, or (full_size) the released architecture.

    The full-size timing uses a checkpoint of the released layout with seeded random weights, written to a
    temporary folder: it measures speed only (the arithmetic does not depend on the weights' values), and no
    output of it is ever shown as a reconstruction.
    """
    import tempfile

    from realtime_vrn.backends.registry import backend_names
    from realtime_vrn.bench.backends import benchmark_backends
    from realtime_vrn.weights.registry import resolve_weights

    names = backend_names() if backends == "all" else [b.strip() for b in backends.split(",") if b.strip()]
    label = "full-size VRN (timing only)" if full_size else "run's model"
    with tempfile.TemporaryDirectory(prefix="vrn-bench-") as tmp:
        weights = _timing_checkpoint(Path(tmp)) if full_size else resolve_weights(config.model, config.weights)
        out = benchmark_backends(weights, names)
    for name, r in out.get("backends", {}).items():
        if isinstance(r, dict) and "median_ms" in r:
            print(f"network [{name}, {label}]: median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
        else:
            print(f"network [{name}]: {r.get('error', r) if isinstance(r, dict) else r}")
    return out


def _jitter(config: RunConfig) -> dict:
    """Surface jitter on a still real face (skimage's astronaut + sensor noise), smoothing off and on."""
    from skimage import data

    from realtime_vrn.bench.jitter import measure_jitter
    from realtime_vrn.weights.registry import resolve_weights

    weights = resolve_weights(config.model, config.weights)
    out = {}
    for smoothing in (False, True):
        r = measure_jitter(weights, data.astronaut(), backend=config.backend, smoothing=smoothing,
                           mediapipe_weight=config.mediapipe_weight)
        out["smoothed" if smoothing else "raw"] = r
        print(f"jitter ({'smoothing on' if smoothing else 'smoothing off'}): median {r['median_mm']:.3f} mm/frame, "
              f"p95 {r['p95_mm']:.3f} mm/frame over {r['frames']} frames of a still face (noise sigma "
              f"{r['noise_sigma']})")
    return out


def _compare_pipeline(config: RunConfig, rounds: int = 3) -> dict:
    """FPS of the sequential and the pipelined loop on the same source, alternating (ABAB...) so that load
    changes on a shared machine hit both; median over rounds."""
    from dataclasses import replace

    from realtime_vrn.pipeline import run

    fps: dict[str, list[float]] = {"sequential": [], "pipelined": []}
    latency: dict[str, list[float]] = {"sequential": [], "pipelined": []}
    for _ in range(rounds):
        for name in fps:
            summary = run(replace(config, pipelined=name == "pipelined", progress=False))
            fps[name].append(round(summary.fps, 2))
            latency[name].append(round(summary.stages.get("end_to_end", {}).get("median_ms", float("nan")), 2))
    out = {name: {"fps_median": float(np.median(v)), "fps_runs": v,
                  "end_to_end_median_ms": float(np.median(latency[name])), "end_to_end_runs_ms": latency[name]}
           for name, v in fps.items()}
    out["speedup"] = round(out["pipelined"]["fps_median"] / out["sequential"]["fps_median"], 3)
    print(f"pipelined loop: {out['pipelined']['fps_median']:.1f} FPS vs sequential "
          f"{out['sequential']['fps_median']:.1f} FPS -> {out['speedup']:.2f}x; capture-to-output "
          f"{out['pipelined']['end_to_end_median_ms']:.1f} vs {out['sequential']['end_to_end_median_ms']:.1f} ms "
          f"(median of {rounds} alternating runs)")
    return out


def _timing_checkpoint(folder: Path) -> Path:
    import torch

    from realtime_vrn.model.checkpoint import CheckpointMeta, save_checkpoint
    from realtime_vrn.model.network import VRN, VRNConfig

    torch.manual_seed(0)
    path = folder / "vrn-full-timing.safetensors"
    save_checkpoint(path, VRN(VRNConfig()), CheckpointMeta(source="realtime_vrn.bench (seeded random)", licence="MIT",
                                                          description="speed measurement only"))
    return path


def _render_reference() -> dict:
    from realtime_vrn.bench.render import benchmark_render

    r = benchmark_render()
    print(f"render: 1280x720 overlay, {r.get('triangles', '?')} triangles: median {r.get('median_ms', 0):.1f} ms, "
          f"p95 {r.get('p95_ms', 0):.1f} ms (target <= 10)")
    return r
