"""ONNX Runtime backend: CPUExecutionProvider, float32, on the cached ONNX export of the checkpoint.

Session tuned for a small CPU shared with the rest of the pipeline: intra-op threads = the cores this process
may use, one inter-op thread (the graph is a chain; parallel branches gain nothing), sequential execution,
all graph optimisations, and no spin-waiting of idle worker threads: spinning keeps both cores busy between
frames, which the landmark and render stages need; on our loaded 2-core machine it was no faster (73-143 ms
without against 128-200 ms with spinning, 128-feature 2-stack model). The graph has a static batch of 1
(see :mod:`realtime_vrn.model.export`); larger batches run frame by frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime_vrn.backends.base import InferenceBackend, register_backend
from realtime_vrn.backends.common import cpu_threads, require_cpu_device

#: Second on the CPU, after OpenVINO (openvino_backend.PRIORITY, faster on the shipped model), and ``auto``'s
#: CPU choice where OpenVINO cannot start. On our shared 2-core machine under load it matched OpenVINO f32 on the
#: released model and beat it 1.2-2.6x on small ones (bench/backends.py); it starts in ~1 s.
PRIORITY = 30


class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        super().__init__(checkpoint, device)
        self._session = None
        self._threads = 0

    def _open(self) -> None:
        require_cpu_device(self.name, self.device)
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"onnxruntime is not installed ({err}); pip install onnxruntime") from err
        from realtime_vrn.model.checkpoint import read_checkpoint_header
        from realtime_vrn.model.export import cached_onnx

        self.cfg = read_checkpoint_header(self.checkpoint).cfg
        onnx_path = cached_onnx(self.checkpoint)
        opts = ort.SessionOptions()
        self._threads = cpu_threads()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only; ORT warns about every unused initializer otherwise
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        from realtime_vrn.model.export import INPUT_NAME, OUTPUT_NAME

        frames = [
            self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch[i : i + 1])})[0]
            for i in range(batch.shape[0])
        ]
        return frames[0] if len(frames) == 1 else np.concatenate(frames)

    def _close(self) -> None:
        self._session = None

    def describe(self) -> str:
        return f"onnxruntime (cpu, float32, {self._threads} threads)"


register_backend(OnnxRuntimeBackend.name, OnnxRuntimeBackend, PRIORITY)
