"""Frame sources: camera, video file, image file or folder -> iterator of ``Frame`` ((H, W, 3) uint8 RGB).

``open_source(camera=0)`` / ``open_source(video=path)`` / ``open_source(image=path_or_folder)`` returns a
``FrameSource`` (context manager, iterator). See ``base.FrameSource`` for the attributes every source has.
"""

from realtime_vrn.sources.base import Frame, FrameSource
from realtime_vrn.sources.camera import CameraSource, LatestFrameSlot
from realtime_vrn.sources.images import IMAGE_EXTENSIONS, ImageSource, read_image_rgb
from realtime_vrn.sources.spec import SourceSpec, open_source
from realtime_vrn.sources.video import VideoFileSource

__all__ = [
    "Frame", "FrameSource", "SourceSpec", "open_source", "CameraSource", "VideoFileSource", "ImageSource",
    "LatestFrameSlot", "IMAGE_EXTENSIONS", "read_image_rgb",
]
