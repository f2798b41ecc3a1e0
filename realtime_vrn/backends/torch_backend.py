"""PyTorch backend: the reference. CPU float32, or CUDA float16 when a GPU is asked for (or "auto" finds one).

CPU: float32, NCHW (channels_last measured slower on our 2-core AVX-512 CPU: 470 against 407 ms for the
released model, 124 against 98 ms for a 128-feature 2-stack model), ``torch.inference_mode``. Torch's default
thread count is the machine's core count, which oversubscribes a container limited to fewer cores, so
``open`` lowers it (process-wide: torch has no per-model setting) to the cores this process may use.

CUDA: weights and activations in float16, channels_last (tensor-core convolutions), output returned as float32.
The per-image normalisation runs in float16 with float32 accumulation (torch's CUDA batch-norm kernels).
The input goes through one pinned host buffer (``non_blocking`` copy); for a batch of one the forward pass is
captured once as a CUDA graph (one launch per frame instead of ~1,000 kernel launches from Python), with the
eager forward as the fallback if capture fails. :meth:`TorchBackend.infer_device` leaves the logits on the GPU
for the CuPy surface stage (no device-to-host copy of the volume).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from realtime_vrn.backends.base import InferenceBackend, register_backend
from realtime_vrn.backends.common import cpu_threads
from realtime_vrn.errors import BackendError

log = logging.getLogger(__name__)

#: Last accurate choice on a CPU: 1.5x slower than ONNX Runtime on an idle machine, and its two OpenMP threads
#: slow down 5-20x more when other processes share the cores (bench/backends.py). Picked on a GPU, since the CPU
#: backends step aside when CUDA is present.
PRIORITY = 10


class TorchBackend(InferenceBackend):
    name = "torch"

    def __init__(self, checkpoint: Path, device: str = "auto", cuda_graph: bool = True) -> None:
        super().__init__(checkpoint, device)
        self._net = None
        self._torch_device = None
        self._dtype = None
        self._channels_last = False
        self._use_graph = cuda_graph
        self._graph = None  # (torch.cuda.CUDAGraph, static input, static output) for batch 1
        self._pinned = None

    def _open(self) -> None:
        import torch

        from realtime_vrn.model.checkpoint import load_model

        device = _torch_device(self.device)
        net = load_model(self.checkpoint, device="cpu")
        self.cfg = net.cfg
        if device.type == "cuda":
            self._dtype = torch.float16
            self._channels_last = True
            net = net.half().to(device, memory_format=torch.channels_last)
            self.outputs_on_device = True
        else:
            self._dtype = torch.float32
            threads = cpu_threads()
            if torch.get_num_threads() > threads:
                log.info("torch intra-op threads %d -> %d (cores available)", torch.get_num_threads(), threads)
                torch.set_num_threads(threads)
        self._net = net
        self._torch_device = device

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).cpu().numpy()  # on the GPU, .cpu() copies and synchronises

    def _infer_device(self, batch):
        return self._forward(batch)

    def _forward(self, batch):
        """(N, D, h, w) float32 contiguous logits on the backend's device; ``batch`` checked by the base class
        (a host array, or a CUDA tensor on the GPU path)."""
        import torch

        with torch.inference_mode():
            if self._torch_device.type != "cuda":
                return self._net.forward_lowres(torch.from_numpy(batch)).float().contiguous()
            x = self._to_device(batch)
            if batch.shape[0] == 1 and self._use_graph:
                graph = self._graph or self._capture(x)
                if graph is not None:
                    graph[1].copy_(x)
                    graph[0].replay()
                    return graph[2]
            # .float().contiguous(): float32, and undoes channels_last.
            return self._net.forward_lowres(x).float().contiguous()

    def _to_device(self, batch: np.ndarray):
        """Host batch -> device through a reused pinned buffer (asynchronous copy on the current stream)."""
        import torch

        if isinstance(batch, torch.Tensor) and batch.is_cuda:  # already on a GPU: no host round trip
            return batch.to(self._torch_device, self._dtype).contiguous(memory_format=torch.channels_last)
        host = torch.from_numpy(batch)
        if self._pinned is None or self._pinned.shape != host.shape:
            self._pinned = torch.empty(host.shape, dtype=torch.float32, pin_memory=True)
        self._pinned.copy_(host)
        x = self._pinned.to(self._torch_device, non_blocking=True).to(self._dtype)
        return x.contiguous(memory_format=torch.channels_last)

    def _capture(self, example):
        """Capture the batch-1 forward as a CUDA graph (after warm-up on a side stream, as torch documents).
        Returns (graph, static input, static output), or None (eager from then on) if capture fails."""
        import torch

        try:
            static_in = example.clone()
            side = torch.cuda.Stream(device=self._torch_device)
            side.wait_stream(torch.cuda.current_stream(self._torch_device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._net.forward_lowres(static_in)
            torch.cuda.current_stream(self._torch_device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._net.forward_lowres(static_in).float().contiguous()
            self._graph = (graph, static_in, static_out)
            log.info("torch backend: forward pass captured as a CUDA graph")
        except Exception as err:  # noqa: BLE001 - any capture failure: run eagerly, say so once
            log.warning("torch backend: CUDA graph capture failed (%s); running the forward pass eagerly", err)
            self._use_graph = False
            self._graph = None
        return self._graph

    def _close(self) -> None:
        self._net = None
        self._graph = None
        self._pinned = None

    def describe(self) -> str:
        if self._torch_device is None:
            return f"torch ({self.device}, not open)"
        import torch

        if self._torch_device.type == "cuda":
            graph = ", CUDA graph" if self._graph is not None else ""
            return f"torch (cuda {torch.cuda.get_device_name(self._torch_device)}, float16, channels_last{graph})"
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
