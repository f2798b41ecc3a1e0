"""Outputs the pipeline pushes rendered (H, W, 3) uint8 RGB images to: video file, image folder, virtual camera.

All follow ``Sink`` (``write(image)``, ``close()``, context manager) and raise ``OutputError`` with an
actionable message when they cannot write. pyvirtualcam (``vcam`` extra) is imported only when a virtual
camera is opened.
"""

from .base import Sink, fit_image
from .images import ImageFolderSink
from .video import CODECS, VideoFileSink
from .virtual_camera import VirtualCameraSink

__all__ = ["CODECS", "ImageFolderSink", "Sink", "VideoFileSink", "VirtualCameraSink", "fit_image"]
