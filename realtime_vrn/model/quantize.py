"""int8 models: a checkpoint's OpenVINO model quantised after training by NNCF, and where one is found.

An int8 model is the checkpoint's ONNX export (:mod:`.export`) with NNCF's quantise / dequantise nodes on the
weights and activations of its convolutions, the activation ranges calibrated on network inputs of the training
data (``realtime-vrn weights quantize``); OpenVINO's CPU plugin then runs those convolutions in int8 (VNNI / AMX on
x86). Its ``rt_info`` carries the SHA-256 of the checkpoint it was made from, so a changed checkpoint never runs
a stale int8 model: :func:`find_int8_model` refuses it.

Found, in this order: beside the checkpoint (``<stem>.int8.xml`` + ``.bin``: how the shipped model carries its
own), then the user cache (``int8_dir() / <sha256>.xml``: where the command writes by default). NNCF is needed
only to make one (the ``[train]`` extra); OpenVINO alone runs it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from realtime_vrn.errors import WeightsError
from realtime_vrn.fileio import file_sha256

log = logging.getLogger(__name__)

#: rt_info key of an int8 model: the SHA-256 of the checkpoint file it was quantised from.
SOURCE_KEY = "realtime_vrn_source_sha256"
#: Calibration inputs used by default (NNCF's own default subset size).
DEFAULT_CALIBRATION = 300


def int8_dir() -> Path:
    """Cache of int8 models made by ``realtime-vrn weights quantize``: ``home_dir()/int8``."""
    from realtime_vrn.weights.registry import home_dir

    return home_dir() / "int8"


def sibling_path(checkpoint: str | os.PathLike) -> Path:
    """``dir/name.safetensors`` -> ``dir/name.int8.xml`` (its weights in ``dir/name.int8.bin``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".int8.xml")


def source_sha256(path: str | os.PathLike) -> str:
    """The checkpoint SHA-256 an int8 model records ("" when it records none)."""
    import openvino as ov

    return _recorded_sha256(ov.Core().read_model(str(path)))


def _recorded_sha256(model) -> str:
    return model.get_rt_info([SOURCE_KEY]).astype(str) if model.has_rt_info([SOURCE_KEY]) else ""


def find_int8_model(checkpoint: str | os.PathLike) -> Path:
    """The path of the int8 model made from this checkpoint file (see :func:`load_int8_model`)."""
    return load_int8_model(checkpoint)[0]


def load_int8_model(checkpoint: str | os.PathLike, core=None) -> tuple[Path, object]:
    """The int8 model made from this checkpoint file (beside it, then in the cache): its path and the
    ``openvino.Model`` read once (``core``: an ``openvino.Core`` to read it with, a new one by default).

    Raises WeightsError naming the command that makes one when there is none, or when the one beside the
    checkpoint was made from another file (a retrained checkpoint whose int8 model was not remade).
    """
    import openvino as ov

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise WeightsError(f"checkpoint not found: {checkpoint}")
    core = core if core is not None else ov.Core()
    sha256 = file_sha256(checkpoint)
    for path in (sibling_path(checkpoint), int8_dir() / f"{sha256}.xml"):
        if not path.is_file():
            continue
        model = core.read_model(str(path))
        recorded = _recorded_sha256(model)
        if recorded == sha256:
            return path, model
        log.warning("%s was quantised from another checkpoint (sha256 %s, this one %s): not used",
                    path, recorded[:12] or "unrecorded", sha256[:12])
    raise WeightsError(f"no int8 model for {checkpoint.name} (sha256 {sha256[:12]}): make one with "
                       f"`realtime-vrn weights quantize {checkpoint} --data SHARDS` (pip install "
                       f"'realtime-vrn[train]'), or use --backend openvino")


def quantize_checkpoint(checkpoint: str | os.PathLike, calibration: np.ndarray, out: str | os.PathLike | None = None
                        ) -> Path:
    """Quantise a checkpoint's model to int8 on ``calibration`` inputs; write ``out`` (default: the cache) + ``.bin``.

    calibration: (N, C, S, S) float32 network inputs (:func:`realtime_vrn.model.guidance.network_input`'s
    contract), N >= 1; all of them are used. NNCF's mixed preset: symmetric weights, asymmetric activations.
    Returns the written ``.xml`` path. Raises WeightsError for a bad checkpoint, ValueError for bad inputs.
    """
    import nncf
    import openvino as ov

    from realtime_vrn.model.checkpoint import read_checkpoint_header
    from realtime_vrn.model.export import cached_onnx

    checkpoint = Path(checkpoint)
    cfg = read_checkpoint_header(checkpoint).cfg
    expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
    if calibration.ndim != 4 or calibration.shape[1:] != expected or calibration.dtype != np.float32:
        raise ValueError(f"calibration inputs must be (N, {expected[0]}, {expected[1]}, {expected[2]}) float32, got "
                         f"{calibration.shape} {calibration.dtype}")
    if len(calibration) == 0:
        raise ValueError("no calibration inputs")
    sha256 = file_sha256(checkpoint)
    model = ov.Core().read_model(str(cached_onnx(checkpoint)))
    dataset = nncf.Dataset([np.ascontiguousarray(x[None]) for x in calibration])
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED)
    quantized.set_rt_info(sha256, [SOURCE_KEY])
    target = Path(out) if out is not None else int8_dir() / f"{sha256}.xml"
    if target.suffix != ".xml":
        raise ValueError(f"an int8 model is written as NAME.xml + NAME.bin, got {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".tmp.xml")
    try:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return target
