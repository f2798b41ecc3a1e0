"""Which source to open: a small validated spec and the ``open_source`` factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from realtime_vrn.errors import ConfigError
from realtime_vrn.sources.base import FrameSource


@dataclass(frozen=True)
class SourceSpec:
    """Exactly one of ``camera`` (index), ``video`` (file) or ``image`` (file or folder), plus options.

    drop_frames: video only: play on the file's clock and skip frames when processing falls behind
                 (simulates a live camera). Off by default: every frame is processed.
    prefetch:    video only: decode on a thread into a queue of this many frames (0: decode on demand).
    loop:        video / images: start again at the end.
    """

    camera: int | None = None
    video: Path | None = None
    image: Path | None = None
    drop_frames: bool = False
    prefetch: int = 0
    loop: bool = False

    def __post_init__(self) -> None:
        given = [name for name in ("camera", "video", "image") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError(f"give exactly one input (camera, video or image), got "
                              f"{', '.join(given) if given else 'none'}")
        if self.camera is not None and (isinstance(self.camera, bool) or not isinstance(self.camera, int)
                                        or self.camera < 0):
            raise ConfigError(f"camera must be an index >= 0, got {self.camera!r}")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ConfigError(f"prefetch must be an int >= 0, got {self.prefetch!r}")
        if self.video is None and (self.drop_frames or self.prefetch):
            raise ConfigError("drop_frames and prefetch apply to video files only")
        if self.camera is not None and self.loop:
            raise ConfigError("loop applies to video files and images, not to a camera")
        for name in ("video", "image"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def kind(self) -> str:
        """"camera", "video" or "image"."""
        return "camera" if self.camera is not None else "video" if self.video is not None else "image"


def open_source(spec: SourceSpec | None = None, *, camera: int | None = None, video: str | Path | None = None,
                image: str | Path | None = None, drop_frames: bool = False, prefetch: int = 0,
                loop: bool = False) -> FrameSource:
    """The source for ``spec`` (or for the same fields given as keywords), not opened yet.

    Use it as a context manager (``with open_source(video=path) as source: for frame in source: ...``);
    opening raises SourceError for a missing camera or an unreadable file. Bad combinations raise ConfigError.
    """
    keywords_given = camera is not None or video is not None or image is not None
    if spec is None:
        spec = SourceSpec(camera=camera, video=None if video is None else Path(video),
                          image=None if image is None else Path(image), drop_frames=drop_frames,
                          prefetch=prefetch, loop=loop)
    elif keywords_given or drop_frames or prefetch or loop:
        raise ConfigError("give a SourceSpec or keywords, not both")
    if spec.kind == "camera":
        from realtime_vrn.sources.camera import CameraSource

        return CameraSource(spec.camera)
    if spec.kind == "video":
        from realtime_vrn.sources.video import VideoFileSource

        return VideoFileSource(spec.video, drop_frames=spec.drop_frames, prefetch=spec.prefetch, loop=spec.loop)
    from realtime_vrn.sources.images import ImageSource

    return ImageSource(spec.image, loop=spec.loop)
