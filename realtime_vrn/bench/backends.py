"""Measure inference backends on one checkpoint, in one run, against the PyTorch float32 reference.

For each backend: open time, then (after warm-up) ``runs`` timed ``infer`` calls on batch 1; median, p95, and
the agreement of its logits with torch on CPU in float32 (max |difference| and the fraction of voxels on the
same side of the iso-surface, logit 0). Backends are timed in rounds of short blocks (one untimed call, then
up to :data:`BLOCK_RUNS` timed ones each), so drifting load on a shared machine hits them alike and their ratios
hold, while the untimed call absorbs the previous runtime's worker threads winding down. The input is a real
face: skimage's astronaut photo, cropped to about the VRN crop and resized to the model's input size.

Used by ``realtime-vrn bench --backends LIST`` and ``realtime-vrn bench backends CHECKPOINT [--backends a,b]
[--runs N]``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from realtime_vrn.bench.environment import environment_info
from realtime_vrn.bench.timing import summarize

#: Calls per backend before timing (first-call allocations, OpenVINO/ORT lazy kernel selection).
WARMUP_RUNS = 3
#: Timed calls per backend in a row within one round (see the module docstring).
BLOCK_RUNS = 5
#: Astronaut rows / columns of a square around the face, about the VRN crop (face box ~ 90/192 of the side).
ASTRONAUT_FACE_BOX = (slice(0, 256), slice(97, 353))


def astronaut_crop(size: int) -> np.ndarray:
    """skimage's astronaut face, (size, size, 3) uint8 RGB, crop pixels (bicubic, anti-aliased resize)."""
    from skimage import data, transform

    face = data.astronaut()[ASTRONAUT_FACE_BOX]
    resized = transform.resize(face, (size, size), order=3, anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def face_batch(in_channels: int, size: int) -> np.ndarray:
    """A (1, C, S, S) float32 network input: the astronaut crop as RGB in [0, 1]; guidance channels zero."""
    from realtime_vrn.model.guidance import image_channels

    batch = np.zeros((1, in_channels, size, size), np.float32)
    batch[0, :3] = image_channels(astronaut_crop(size))  # HWC uint8 -> CHW [0, 1]
    return batch


def benchmark_backends(
    checkpoint: str | os.PathLike,
    backends: Sequence[str] | None = None,
    runs: int = 20,
    device: str = "cpu",
    warmup: int = WARMUP_RUNS,
) -> dict[str, Any]:
    """Time each backend on ``checkpoint`` (batch 1) and check it against torch float32; JSON-ready dict.

    backends: registry names (default: every registered backend). A backend that cannot start is reported with
    its reason (``"error"``) instead of timings. Result keys: ``checkpoint``, ``sha256``, ``config``,
    ``parameters``, ``environment``, ``runs``, ``warmup``, ``batch``, ``backends`` (name -> ``describe``,
    ``open_s``, ``median_ms``, ``p95_ms``, ``min_ms``, ``max_abs_diff``, ``sign_agreement``, ``vs_torch``).
    """
    import torch

    from realtime_vrn.backends.registry import backend_names, open_backend
    from realtime_vrn.model.checkpoint import load_checkpoint, model_from_checkpoint
    from realtime_vrn.model.network import count_parameters

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.cfg
    names = list(backends) if backends else backend_names()
    batch = face_batch(cfg.in_channels, cfg.input_size)
    net = model_from_checkpoint(ckpt)
    with torch.inference_mode():
        reference = net.forward_lowres(torch.from_numpy(batch)).numpy()
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "sha256": ckpt.sha256,
        "config": json.loads(cfg.to_json()),
        "parameters": count_parameters(net),
        "environment": environment_info(),
        "device": device,
        "runs": runs,
        "warmup": warmup,
        "batch": 1,
        "input": "skimage astronaut face crop",
        "reference": "torch CPU float32 forward_lowres",
        "backends": {},
    }
    del net, ckpt

    opened: dict[str, Any] = {}
    times: dict[str, list[float]] = {}
    try:
        for name in names:
            start = time.perf_counter()
            try:
                backend = open_backend(name, checkpoint, device)
            except Exception as err:  # noqa: BLE001 - reported per backend, the others still run
                result["backends"][name] = {"error": str(err)}
                continue
            opened[name] = backend
            out = backend.infer(batch)
            result["backends"][name] = {
                "describe": backend.describe(),
                "open_s": round(time.perf_counter() - start, 3),
                "max_abs_diff": float(np.abs(out - reference).max()),
                "sign_agreement": float(np.mean((out > 0) == (reference > 0))),
            }
        times = {name: [] for name in opened}
        for _ in range(warmup):
            for backend in opened.values():
                backend.infer(batch)
        while any(len(t) < runs for t in times.values()):
            for name, backend in opened.items():
                if len(times[name]) >= runs:
                    continue
                backend.infer(batch)  # untimed: the previous backend's threads are still winding down
                for _ in range(min(BLOCK_RUNS, runs - len(times[name]))):
                    t0 = time.perf_counter()
                    backend.infer(batch)
                    times[name].append(time.perf_counter() - t0)
    finally:
        for backend in opened.values():
            backend.close()

    for name, samples in times.items():
        summary = summarize(samples)
        result["backends"][name].update({k: round(summary[k], 2) for k in ("median_ms", "p95_ms", "min_ms")})
    torch_ms = result["backends"].get("torch", {}).get("median_ms")
    if torch_ms:
        for entry in result["backends"].values():
            if "median_ms" in entry:
                entry["vs_torch"] = round(torch_ms / entry["median_ms"], 2)  # > 1: faster than torch
    return result


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a plain-text table (one line per backend)."""
    header = f"{'backend':<15} {'median ms':>10} {'p95 ms':>8} {'vs torch':>8} {'max|diff|':>10} {'same sign':>9}"
    lines = [header + "  describe"]
    for name, entry in result["backends"].items():
        if "error" in entry:
            lines.append(f"{name:<15} failed: {entry['error']}")
            continue
        lines.append(
            f"{name:<15} {entry['median_ms']:>10.1f} {entry['p95_ms']:>8.1f} "
            f"{_ratio(entry):>8} {entry['max_abs_diff']:>10.2e} {entry['sign_agreement']:>9.4%}  {entry['describe']}"
        )
    return "\n".join(lines)


def _ratio(entry: dict[str, Any]) -> str:
    return f"{entry['vs_torch']:.2f}" if "vs_torch" in entry else "-"
