"""Virtual camera output (OBS, Zoom, Meet, ...) through pyvirtualcam, the optional ``vcam`` extra (GPL-2.0).

Backends: v4l2loopback on Linux, OBS Virtual Camera on Windows and macOS, Unity Capture on Windows.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from ..errors import OutputError
from realtime_vrn.contracts import check_image

from .base import fit_image

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'realtime-vrn[vcam]'"
_LINUX_HINT = (
    "load the v4l2loopback kernel module: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
    "(Debian/Ubuntu package: v4l2loopback-dkms)"
)
_OTHER_HINT = "install OBS Studio and start its virtual camera once (or Unity Capture on Windows)"


def no_device_hint(platform: str = sys.platform) -> str:
    """How to get a virtual camera device on this platform."""
    return _LINUX_HINT if platform.startswith("linux") else _OTHER_HINT


class VirtualCameraSink:
    """Sends (H, W, 3) uint8 RGB images to a virtual camera of size = (width, height) at ``fps``.

    Use the source's resolution and frame rate. Images of another size are fitted in (aspect kept, black
    bars). device / backend: pyvirtualcam's choice (None = the first that works). The camera is opened by
    ``open()`` (also on entering a ``with`` block or at the first ``write``); without a device it raises
    ``OutputError`` saying how to create one.
    """

    def __init__(
        self, size: tuple[int, int], fps: float, *, device: str | None = None, backend: str | None = None
    ) -> None:
        width, height = size
        if width <= 0 or height <= 0 or not fps > 0:
            raise OutputError(f"expected a positive virtual camera size and fps, got {size} at {fps} fps")
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self.device = device
        self.backend = backend
        self._camera = None
        self.frames_written = 0

    def open(self) -> "VirtualCameraSink":
        if self._camera is not None:
            return self
        try:
            import pyvirtualcam
        except ImportError as err:
            raise OutputError(f"--virtual-camera needs pyvirtualcam: {_INSTALL_HINT}") from err
        if self.backend is not None and self.backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none on this platform"
            raise OutputError(f"unknown virtual camera backend {self.backend!r}; expected one of: {known}")
        try:
            self._camera = pyvirtualcam.Camera(
                *self.size, self.fps, fmt=pyvirtualcam.PixelFormat.RGB, device=self.device, backend=self.backend
            )
        except Exception as err:  # pyvirtualcam reports every backend's failure in one RuntimeError
            reasons = " | ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise OutputError(f"no virtual camera device ({reasons}); {no_device_hint()}") from err
        log.info("virtual camera: %s (%s), %dx%d at %.3g fps", self._camera.device, self._camera.backend,
                 *self.size, self.fps)
        return self

    def write(self, image: np.ndarray) -> None:
        check_image(image)
        self.open()
        self._camera.send(fit_image(image, self.size))
        self.frames_written += 1

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None

    def __enter__(self) -> "VirtualCameraSink":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
