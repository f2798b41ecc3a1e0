"""Export a VRN to ONNX for the ONNX Runtime, OpenVINO and TensorRT backends, cached per checkpoint.

What is exported: :meth:`VRN.forward_lowres`, i.e. the network without the release's last bilinear upsample
(x4; x2 after our refinement head) and sigmoid. The graph has one input and one output:

    crop    (batch, C, S, S) float32, RGB in [0, 1] (then guidance heatmaps), C = cfg.in_channels
    logits  (batch, D, g, g) float32 logits, ordered (N, z, y, x); g = cfg.grid_size (S/4, the hourglass
            grid, or S/2 with the refinement head)

Why the low-resolution logits: the x4 upsample multiplies the output by 16 (the released model: 200x48x48 =
1.8 MB -> 200x192x192 = 29 MB per frame) for no information, and copying that out of a runtime costs more than
the surface stage spends evaluating the upsample (and the sigmoid, which the p = 0.5 <=> logit = 0 threshold
makes unnecessary) only near the iso-surface.

Static shapes: ``batch`` is fixed in the graph (1 by default); the CPU backends run larger batches frame by
frame, which costs nothing measurable because the frames of a VRN batch are independent anyway (per-image
normalisation). ``fp16=True`` stores the weights and computes in float16 (for GPU runtimes such as TensorRT);
the graph keeps float32 input and output, casting at both ends, so every backend sees the same contract.

Exporter: torch's default ``dynamo=True`` exporter with ``external_data=False``, i.e. one self-contained
``.onnx`` file (the released model is 77 MB, far below protobuf's 2 GB limit). That keeps the cache a set of
single files that are renamed into place atomically (no ``.onnx.data`` file that must follow the model). The
legacy TorchScript exporter (``dynamo=False``) gives the same operators (Conv, InstanceNormalization, Relu,
Add, MaxPool, Resize) and the same ONNX Runtime speed and exports faster (3 s against 10 s for the released
model on 2 cores), but it is deprecated since torch 2.9; the export runs once per checkpoint, so the slower
maintained path wins.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from realtime_vrn.fileio import file_sha256
from realtime_vrn.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from realtime_vrn.model.network import VRN

log = logging.getLogger(__name__)

INPUT_NAME = "crop"
OUTPUT_NAME = "logits"
#: ONNX opset of the exported graph: supported by ONNX Runtime >= 1.14, OpenVINO >= 2023.0, TensorRT >= 8.6.
OPSET = 18
#: Part of the cache key; bump when the exported graph changes for the same checkpoint.
EXPORT_VERSION = 1


class _LowResGraph(nn.Module):
    """The exported function: float32 crop -> float32 low-resolution logits (float16 inside when asked)."""

    def __init__(self, net: VRN, fp16: bool) -> None:
        super().__init__()
        self.net = net
        self.fp16 = fp16

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        x = crop.half() if self.fp16 else crop
        return self.net.forward_lowres(x).float()


def export_onnx(
    model_or_checkpoint: VRN | Checkpoint | str | os.PathLike,
    path: str | os.PathLike,
    batch: int = 1,
    fp16: bool = False,
) -> Path:
    """Export ``forward_lowres`` of a model (or a loaded checkpoint, or a checkpoint file) to one ONNX file.

    The file is written beside ``path`` and renamed into place. Returns ``path``. The caller's model is not
    changed (a copy is converted for ``fp16``).
    """
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    net = _as_model(model_or_checkpoint)
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"an ONNX file name must end in .onnx, got {path.name}")
    cfg = net.cfg
    was_training = net.training
    graph = _LowResGraph(copy.deepcopy(net).half() if fp16 else net, fp16).eval()
    example = torch.rand(batch, cfg.in_channels, cfg.input_size, cfg.input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        net.train(was_training)  # eval() above reached the caller's model (no-op for VRN's layers, but undone)
    return path


def cached_onnx(checkpoint: str | os.PathLike, batch: int = 1, fp16: bool = False) -> Path:
    """The ONNX export of a checkpoint file, from the user cache (``onnx_dir()``) or exported once into it.

    Keyed by the checkpoint's SHA-256, batch, precision and :data:`EXPORT_VERSION`, so a changed file never
    reuses a stale export. Raises WeightsError for a bad checkpoint.
    """
    from realtime_vrn.weights.registry import onnx_dir

    checkpoint = Path(checkpoint)
    sha256 = file_sha256(checkpoint) if checkpoint.is_file() else ""
    target = onnx_dir() / f"vrn-{sha256}-b{batch}-{'fp16' if fp16 else 'fp32'}-v{EXPORT_VERSION}.onnx"
    if sha256 and target.is_file():
        return target
    ckpt = load_checkpoint(checkpoint)  # verifies the file (and reports a missing one)
    target = onnx_dir() / f"vrn-{ckpt.sha256}-b{batch}-{'fp16' if fp16 else 'fp32'}-v{EXPORT_VERSION}.onnx"
    log.info("exporting %s to ONNX (once per checkpoint): %s", checkpoint.name, target)
    return export_onnx(ckpt, target, batch=batch, fp16=fp16)


def _as_model(model_or_checkpoint: VRN | Checkpoint | str | os.PathLike) -> VRN:
    if isinstance(model_or_checkpoint, VRN):
        return model_or_checkpoint
    if isinstance(model_or_checkpoint, Checkpoint):
        return model_from_checkpoint(model_or_checkpoint)
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        return model_from_checkpoint(load_checkpoint(model_or_checkpoint))
    raise TypeError(f"expected a VRN, a Checkpoint or a checkpoint path, got {type(model_or_checkpoint).__name__}")


#: Loggers of the exporter and its optimiser, and the level they are held at during an export: they report
#: every optimisation pass at INFO and warn that torchvision (whose operators VRN does not use) is missing.
_EXPORTER_LOGGERS = {"torch.onnx": logging.ERROR, "onnxscript": logging.WARNING, "onnx_ir": logging.WARNING}


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter for the duration of one export (logger levels restored after)."""
    loggers = {logging.getLogger(name): level for name, level in _EXPORTER_LOGGERS.items()}
    saved = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(max(level, logger.level))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)
