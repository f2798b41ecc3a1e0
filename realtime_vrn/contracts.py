"""The array contracts the stages hand each other, each checked by one function (docs/architecture.md,
"Conventions"): images (:func:`check_image`) and network logits (:func:`check_logits`). The mesh's own check is
:meth:`realtime_vrn.surface.mesh.Mesh.validate`; the network input's is the inference backend's
(:meth:`realtime_vrn.backends.base.InferenceBackend.infer`).

Every check is cheap enough for every frame (shape, dtype and layout only, no pass over the data) and raises
``ValueError`` (``TypeError`` for something that is not an array of the right kind) with an "expected X, got Y"
message. Logits may live on a GPU: :func:`check_logits` reads only ``shape``, ``dtype`` and ``flags``, which
NumPy and CuPy arrays share. Imports only NumPy, so that every stage may use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_image(image: Any, what: str = "image", size: int | None = None) -> None:
    """Reject anything but an (H, W, 3) uint8 RGB NumPy image ((size, size, 3) when ``size`` is given).

    what: how the message names it ("image", "frame", "crop"). Colour order and layout (RGB, rows top down)
    cannot be checked; they are the contract (docs/architecture.md).
    """
    if isinstance(image, np.ndarray):
        shape_ok = image.ndim == 3 and image.shape[2] == 3 and (size is None or image.shape[:2] == (size, size))
        if shape_ok and image.dtype == np.uint8:
            return
        got = f"{image.dtype} array of shape {image.shape}"
    else:
        got = type(image).__name__
    expected = "an (H, W, 3)" if size is None else f"a ({size}, {size}, 3)"
    raise ValueError(f"expected {expected} uint8 RGB {what}, got {got}")


def check_logits(logits: Any, shape: tuple[int | None, ...], *, cast: bool = False) -> Any:
    """The logits contract at a stage boundary; returns the checked array.

    logits: ``shape`` float32 C-contiguous, ordered (z, y, x) in the last three axes: a backend's (N, D, g, g)
    output or a surface stage's (D, g, g) input, a NumPy or CuPy array; None in ``shape``: any size on that
    axis. A surface input (``shape`` of three axes) may also be a batch of one, (1, D, g, g): its (D, g, g)
    view is returned.
    cast: accept any floating-point NumPy array and return it as C-contiguous float32 (a view when it already
    is; the CPU extractors); otherwise float32 and C-contiguous are required (a device array is never copied).

    ValueError for a wrong shape, a float dtype other than float32 or a non-contiguous array (without ``cast``);
    TypeError for a dtype that is not floating point.
    """
    arr = np.asarray(logits) if cast else logits
    if len(shape) == 3 and arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if len(arr.shape) != len(shape) or any(want not in (None, got) for want, got in zip(shape, arr.shape)):
        expected = "(" + ", ".join("?" if n is None else str(n) for n in shape) + (",)" if len(shape) == 1 else ")")
        raise ValueError(f"expected logits of shape {expected} (depth, y, x), got {tuple(logits.shape)}")
    if np.dtype(arr.dtype).kind != "f":
        raise TypeError(f"expected floating-point logits, got dtype {arr.dtype}")
    if cast:
        return np.ascontiguousarray(arr, np.float32)
    if arr.dtype != np.float32:
        raise ValueError(f"expected float32 logits, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError("expected C-contiguous logits")
    return arr


def logits_shape(cfg: Any, batch: int | None = None) -> tuple[int, ...]:
    """The logits shape of a model (a VRNConfig): (D, g, g), or (batch, D, g, g), g = ``cfg.grid_size``."""
    one = (cfg.depth_bins, cfg.grid_size, cfg.grid_size)
    return one if batch is None else (batch, *one)
