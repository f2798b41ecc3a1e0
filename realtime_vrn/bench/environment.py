"""The one environment record of every benchmark JSON: when, which commit, hardware, load and versions.

The pipeline benchmark (``realtime-vrn bench``), the backend, GPU and render benchmarks all write this record,
so that two JSON files from different runs compare field by field.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded (those not installed are left out).
PACKAGES = ("numpy", "torch", "onnxruntime", "openvino", "mediapipe", "opencv-contrib-python", "scikit-image",
            "moderngl", "cupy-cuda12x", "cupy-cuda13x", "tensorrt")


def cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - informational only
        pass
    return None


def environment_info() -> dict[str, Any]:
    """Hardware, load and versions for a benchmark JSON: date (UTC), commit, python, platform, cpu, cpu_count,
    cores_available (the cores this process may use), load_average_1min (None where unknown), gpu, versions."""
    from realtime_vrn.backends.common import cpu_threads

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cores_available": cpu_threads(),
        "load_average_1min": None if load is None else round(load[0], 2),
        "gpu": _gpu_name(),
        "versions": versions,
    }
