"""PyTorch backend: the reference. CPU float32, or CUDA float16 when a GPU is asked for (or "auto" finds one).

CPU: float32, NCHW (channels_last measured slower on our 2-core AVX-512 CPU: 470 against 407 ms for the
released model, 124 against 98 ms for a 128-feature 2-stack model), ``torch.inference_mode``. Torch's default
thread count is the machine's core count, which oversubscribes a container limited to fewer cores, so
``open`` lowers it (process-wide: torch has no per-model setting) to the cores this process may use.

CUDA: weights and activations in float16, channels_last (tensor-core convolutions), output returned as float32.
The per-image normalisation runs in float16 with float32 accumulation (torch's CUDA batch-norm kernels).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from realtime_vrn.backends.base import InferenceBackend, register_backend
from realtime_vrn.backends.common import check_batch, cpu_threads
from realtime_vrn.errors import BackendError

log = logging.getLogger(__name__)

#: Last accurate choice on a CPU: 1.5x slower than ONNX Runtime on an idle machine, and its two OpenMP threads
#: slow down 5-20x more when other processes share the cores (bench.py). Picked on a GPU, since the CPU
#: backends step aside when CUDA is present.
PRIORITY = 10


class TorchBackend(InferenceBackend):
    name = "torch"

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        super().__init__(checkpoint, device)
        self._net = None
        self._torch_device = None
        self._dtype = None
        self._channels_last = False

    def open(self) -> None:
        import torch

        from realtime_vrn.model.checkpoint import load_model

        device = _torch_device(self.device)
        net = load_model(self.checkpoint, device="cpu")
        self.cfg = net.cfg
        if device.type == "cuda":
            self._dtype = torch.float16
            self._channels_last = True
            net = net.half().to(device, memory_format=torch.channels_last)
        else:
            self._dtype = torch.float32
            threads = cpu_threads()
            if torch.get_num_threads() > threads:
                log.info("torch intra-op threads %d -> %d (cores available)", torch.get_num_threads(), threads)
                torch.set_num_threads(threads)
        self._net = net
        self._torch_device = device

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._net is None:
            raise RuntimeError("backend is not open; call open() or use it as a context manager")
        check_batch(batch, self.cfg)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._torch_device, self._dtype)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._net.forward_lowres(x)
            # .float().cpu() synchronises the GPU; contiguous() undoes channels_last.
            return y.float().contiguous().cpu().numpy()

    def close(self) -> None:
        self._net = None

    def describe(self) -> str:
        if self._torch_device is None:
            return f"torch ({self.device}, not open)"
        import torch

        if self._torch_device.type == "cuda":
            return f"torch (cuda {torch.cuda.get_device_name(self._torch_device)}, float16, channels_last)"
        return f"torch (cpu, float32, {torch.get_num_threads()} threads)"


def _torch_device(device: str):
    """"auto" -> CUDA if available else CPU; "cpu"; "cuda" / "cuda:N" (must be available)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise BackendError(f"invalid device {device!r}: {err}") from err
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA GPU (CPU-only build or no driver)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
        return dev
    raise BackendError(f"torch backend: unknown device {device!r}; use auto, cpu, cuda or cuda:N")


register_backend(TorchBackend.name, TorchBackend, PRIORITY)
