"""OpenVINO backend (CPU plugin) on the cached ONNX export of the checkpoint.

Precision is explicit. OpenVINO's CPU plugin picks bfloat16 by itself on CPUs with AVX512-BF16 / AMX (ours
has them). bf16 keeps 8 mantissa bits: on the released architecture (random weights, astronaut face) it moved
logits by up to 0.57 and flipped the sign (inside / outside the face) of 5.3% of the voxels against torch
float32 (3.8-5.8% on small models), which is not the same reconstruction; f32 stays within 5.2e-4. So:

- ``openvino``      f32 inference precision: agrees with torch within the backends' tolerance (the default);
- ``openvino-bf16`` the fast, inaccurate variant (1.2-2x faster than f32 here); tried by ``auto`` only after
  every accurate backend failed, meant to be asked for by name;
- ``openvino-int8`` the checkpoint's int8 model (NNCF post-training quantisation, :mod:`realtime_vrn.model.quantize`;
  the shipped model carries its own): 2-5x faster than f32 on our VNNI CPU, and the real-face benchmark unchanged
  within noise on the shipped model (docs/benchmarks.md), so ``auto`` tries it first on a CPU. It refuses to open
  (and ``auto`` goes on to f32) when the checkpoint has no int8 model or the CPU has no int8 support.

All: latency hint (one stream), threads = the cores this process may use, static batch of 1 (larger batches
run frame by frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime_vrn.backends.base import InferenceBackend, register_backend
from realtime_vrn.backends.common import cpu_threads, require_cpu_device
from realtime_vrn.errors import BackendError

#: First on the CPU: on the shipped vrn-small it is the fastest accurate backend (2026-11-24, `realtime-vrn bench
#: --backends onnxruntime,openvino,torch`: OpenVINO f32 8.9 ms, ONNX Runtime 12.7 ms, torch 27.3 ms median; also
#: 16 vs 31 ms on one thread), and faster on the released model (469 vs 553 ms). On a loaded machine the two
#: swap places on some configurations; ONNX Runtime is next in line. Compiling the released model takes ~4 s.
PRIORITY = 35
#: Before f32 when it can open (an int8 model made from this checkpoint, a CPU with int8 support).
PRIORITY_INT8 = 36
#: Only on request: tried by ``auto`` after every accurate backend.
PRIORITY_BF16 = 0


class OpenVinoBackend(InferenceBackend):
    name = "openvino"
    #: OpenVINO INFERENCE_PRECISION_HINT.
    precision = "f32"

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        super().__init__(checkpoint, device)
        self._request = None
        self._compiled = None
        self._threads = 0
        self._actual_precision = ""

    @property
    def actual_precision(self) -> str:
        """The precision the compiled model runs in ("f32", "bf16", ...); empty before :meth:`open`."""
        return self._actual_precision

    def _open(self) -> None:
        require_cpu_device(self.name, self.device)
        try:
            import openvino as ov
        except ImportError as err:
            raise ImportError(f"openvino is not installed ({err}); pip install openvino") from err
        from realtime_vrn.model.checkpoint import read_checkpoint_header

        self.cfg = read_checkpoint_header(self.checkpoint).cfg
        core = ov.Core()
        model = self._read_model(core)
        self._threads = cpu_threads()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self._threads,
            "INFERENCE_PRECISION_HINT": self.precision,
        }
        self._compiled = core.compile_model(model, "CPU", config)
        # What the plugin actually runs ("f32", "bf16", "f16"): a hint the CPU cannot honour is replaced.
        self._actual_precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._request = self._compiled.create_infer_request()

    def _read_model(self, core):
        """The OpenVINO model to compile: the checkpoint's cached ONNX export."""
        from realtime_vrn.model.export import cached_onnx

        return core.read_model(str(cached_onnx(self.checkpoint)))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = np.empty((batch.shape[0], self.cfg.depth_bins, self.cfg.grid_size, self.cfg.grid_size), np.float32)
        for i in range(batch.shape[0]):
            # share_inputs: the request reads the caller's array in place instead of copying it first (2.6 MB
            # for the shipped model); the array is not written while the call runs
            self._request.infer([np.ascontiguousarray(batch[i : i + 1])], share_inputs=True)
            out[i] = self._request.get_output_tensor(0).data[0]  # copy: the request reuses its output buffer
        return out

    def _close(self) -> None:
        self._request = None
        self._compiled = None

    def describe(self) -> str:
        return f"{self.name} (cpu, {self._actual_precision or self.precision}, {self._threads} threads)"


class OpenVinoBf16Backend(OpenVinoBackend):
    name = "openvino-bf16"
    precision = "bf16"


class OpenVinoInt8Backend(OpenVinoBackend):
    name = "openvino-int8"
    #: The layers NNCF leaves in floating point run in f32 (a bf16 hint would round them too).
    precision = "f32"

    def _read_model(self, core):
        from realtime_vrn.model.quantize import load_int8_model

        if "INT8" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendError("this CPU has no int8 support in OpenVINO; use --backend openvino")
        return load_int8_model(self.checkpoint, core)[1]  # found and read once

    def describe(self) -> str:
        return f"{self.name} (cpu, int8 convolutions, {self._threads} threads)"


register_backend(OpenVinoBackend.name, OpenVinoBackend, PRIORITY)
register_backend(OpenVinoBf16Backend.name, OpenVinoBf16Backend, PRIORITY_BF16)
register_backend(OpenVinoInt8Backend.name, OpenVinoInt8Backend, PRIORITY_INT8)
