"""TensorRT backend (10.x and 11.x): an engine built from our ONNX export, run on a CUDA stream.

Small on purpose: TensorRT cannot be installed on our development machines, CI or the lent GPU machine, so
this module follows the documented API closely and nothing else (named I/O tensors, ``build_serialized_network``,
``deserialize_cuda_engine``, ``set_tensor_address`` + ``execute_async_v3``). Engine recipes and the engine cache
are :mod:`realtime_vrn.backends.tensorrt.engines`, tested without TensorRT.

Device buffers are torch tensors (torch is a core dependency and already owns the CUDA context); the engine
runs on a torch stream, so a caller on the GPU path can hand a CUDA tensor in and get one out
(:meth:`TensorRTBackend.infer_device`) without a host round trip. ``import tensorrt`` happens in
:meth:`~TensorRTBackend.open` only.

Registration: with a priority above every other backend when ``tensorrt`` is importable and torch sees a GPU,
else with the lowest priority (``--backend tensorrt`` then explains what is missing, and ``auto`` never
picks it before a backend that can start).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from realtime_vrn.backends.base import InferenceBackend, register_backend
from realtime_vrn.backends.common import cuda_available
from realtime_vrn.errors import BackendError

log = logging.getLogger(__name__)

#: Above openvino (30), onnxruntime (20) and torch (10) when TensorRT can start; below all of them otherwise.
PRIORITY = 40
PRIORITY_UNAVAILABLE = -10
INSTALL_HINT = "install the `tensorrt` extra: pip install 'realtime-vrn[tensorrt]' (TensorRT 10 or 11, NVIDIA GPU)"


def import_tensorrt():
    """``import tensorrt`` with an ImportError that names the extra to install."""
    try:
        import tensorrt
    except ImportError as err:
        raise ImportError(f"the TensorRT backend needs TensorRT: {INSTALL_HINT}") from err
    return tensorrt


def build_serialized_engine(trt, onnx_path: Path, recipe) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine as ``recipe`` says (TensorRT 10 or 11)."""
    from realtime_vrn.backends.tensorrt.engines import EngineError

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weakly_typed_fp16 = hasattr(trt.BuilderFlag, "FP16")  # 10.x; 11.x: every network is strongly typed
    flags = 0
    if not weakly_typed_fp16 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_mib << 20)
    config.builder_optimization_level = recipe.optimization_level
    if recipe.precision == "fp16" and weakly_typed_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path.name} (recipe {recipe.name}); "
                          "its log above says why")
    return bytes(serialized)


class TensorRTBackend(InferenceBackend):
    name = "tensorrt"

    def __init__(self, checkpoint: Path, device: str = "auto", recipe: str = "fp16-b1") -> None:
        super().__init__(checkpoint, device)
        self.recipe_name = recipe
        self.recipe = None
        self.engine_path: Path | None = None
        self._runtime = self._engine = self._context = self._stream = None
        self._input = self._output = self._host_in = self._host_out = None

    def _open(self) -> None:
        trt = import_tensorrt()
        import torch

        from realtime_vrn.backends.tensorrt.engines import EngineError
        from realtime_vrn.model.export import INPUT_NAME, OUTPUT_NAME

        device = _cuda_device(torch, self.device)
        data, self.engine_path, self.cfg, self.recipe = prepare_engine(self.checkpoint, self.recipe_name, device)
        recipe = self.recipe
        with torch.cuda.device(device):
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise EngineError(f"TensorRT could not load the cached engine {self.engine_path} (corrupt, or built "
                                  "by another TensorRT); run `realtime-vrn engine build --force`")
            names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
            if names != {INPUT_NAME, OUTPUT_NAME}:
                raise EngineError(f"engine {self.engine_path} has tensors {sorted(names)}, expected "
                                  f"{INPUT_NAME!r} and {OUTPUT_NAME!r}")
            self._input = torch.empty(recipe.input_shape(self.cfg), dtype=torch.float32, device=device)
            self._output = torch.empty(recipe.output_shape(self.cfg), dtype=torch.float32, device=device)
            self._host_in = torch.empty(self._input.shape, dtype=torch.float32, pin_memory=True)
            self._host_out = torch.empty(self._output.shape, dtype=torch.float32, pin_memory=True)
            context = engine.create_execution_context()
            context.set_input_shape(INPUT_NAME, tuple(self._input.shape))
            context.set_tensor_address(INPUT_NAME, self._input.data_ptr())
            context.set_tensor_address(OUTPUT_NAME, self._output.data_ptr())
            self._stream = torch.cuda.Stream(device)
        # the runtime must outlive its engine, and the engine its context: kept together, dropped in reverse
        self._runtime, self._engine, self._context = runtime, engine, context
        self.outputs_on_device = True

    def _infer_device(self, batch):
        """(N, C, S, S) float32 batch (checked by the base class) -> (N, D, g, g) float32 CUDA tensor (g =
        cfg.grid_size): the first N rows of the engine's output, N at most the recipe's batch (the rows past N
        are padding, computed on zeros and never returned). ``batch``: a host NumPy array (copied through the
        pinned buffer) or a CUDA tensor.

        Runs on the backend's stream after the caller's current stream, and makes the caller's stream wait for it,
        so a consumer on the caller's stream (the CuPy surface stage on the default stream) reads finished logits
        without a host synchronisation. The result is a view of this backend's output buffer, overwritten by the
        next call.
        """
        import torch

        n = len(batch)
        if n > self.recipe.batch:
            raise BackendError(f"the {self.recipe_name} engine takes at most {self.recipe.batch} crops per call")
        if isinstance(batch, np.ndarray):
            self._host_in.zero_()
            self._host_in[:n].copy_(torch.from_numpy(batch))
            batch = self._host_in
        caller = torch.cuda.current_stream(self._input.device)
        self._stream.wait_stream(caller)
        with torch.cuda.stream(self._stream):
            if len(batch) < len(self._input):  # a device batch of fewer rows than the engine's: pad with zeros
                self._input[n:].zero_()
            self._input[: len(batch)].copy_(batch, non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        caller.wait_stream(self._stream)
        return self._output[:n]  # rows of a C-contiguous tensor: a C-contiguous view

    @property
    def stream(self):
        return self._stream

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        size = self.recipe.batch
        out = np.empty((len(batch), *self._output.shape[1:]), np.float32)
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            self._host_in.zero_()
            self._host_in[: len(chunk)].copy_(torch.from_numpy(chunk))
            with torch.cuda.stream(self._stream):
                self._input.copy_(self._host_in, non_blocking=True)
                if not self._context.execute_async_v3(self._stream.cuda_stream):
                    raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                self._host_out.copy_(self._output, non_blocking=True)
            self._stream.synchronize()
            out[start : start + len(chunk)] = self._host_out[: len(chunk)].numpy()
        return out

    def _close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._input = self._output = self._host_in = self._host_out = self._stream = None
        self.outputs_on_device = False

    def describe(self) -> str:
        if self.recipe is None:
            return "tensorrt (not open)"
        return f"tensorrt ({self.recipe.precision}, batch {self.recipe.batch}, engine {self.engine_path})"



def _cuda_device(torch, device: str):
    if not torch.cuda.is_available():
        raise BackendError("the TensorRT backend needs an NVIDIA GPU, and torch sees none")
    if device in ("auto", "cuda"):
        return torch.device("cuda", torch.cuda.current_device())
    if device.startswith("cuda:"):
        return torch.device(device)
    raise BackendError(f"the TensorRT backend runs on CUDA devices only; got device {device!r}")


def prepare_engine(checkpoint: Path, recipe_name: str = "fp16-b1", device=None, force: bool = False):
    """The serialized engine of a checkpoint for a recipe on this GPU: cached, else exported and built.

    Returns (engine bytes, cache path, VRNConfig, EngineRecipe). ``force`` rebuilds even a valid cached engine.
    This is what ``realtime-vrn engine build [--recipe NAME] [--force]`` runs.
    """
    trt = import_tensorrt()
    import torch

    from realtime_vrn.backends.tensorrt.engines import load_or_build, load_recipe, needs_fp16_onnx
    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.model.export import cached_onnx

    device = device if device is not None else _cuda_device(torch, "auto")
    cfg = read_checkpoint_header(checkpoint).cfg
    recipe = load_recipe(recipe_name)
    onnx = cached_onnx(checkpoint, batch=recipe.batch, fp16=needs_fp16_onnx(trt, recipe))
    data, path = load_or_build(
        onnx, recipe, cfg, tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(device),
        build=lambda onnx_path, rcp: build_serialized_engine(trt, onnx_path, rcp), force=force)
    return data, path, cfg, recipe


def can_start() -> bool:
    """Cheap check for the registry: ``tensorrt`` is importable and torch sees a GPU (nothing is imported)."""
    return importlib.util.find_spec("tensorrt") is not None and cuda_available()


register_backend(TensorRTBackend.name, TensorRTBackend, PRIORITY if can_start() else PRIORITY_UNAVAILABLE)
