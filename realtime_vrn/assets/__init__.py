"""Files shipped inside the package (the demo clip)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def demo_clip_path() -> Path:
    """The bundled real face clip used when no source is given (see clips/README.md for its licence)."""
    return ASSETS / "clips" / "liveportrait-d10.mp4"
