"""Exceptions a user can act on. The CLI prints their message in one line and exits non-zero."""


class VRNError(Exception):
    """Base of every error realtime-vrn reports to a user (no traceback)."""


class ConfigError(VRNError):
    """A bad option or configuration value."""


class SourceError(VRNError):
    """A frame source cannot be opened or read (missing camera, unreadable or truncated file)."""


class WeightsError(VRNError):
    """Missing, wrong or corrupt model weights."""


class BackendError(VRNError):
    """No inference backend could start (each one's reason is in the message)."""


class DisplayError(VRNError):
    """No display for a window (use --headless)."""


class OutputError(VRNError):
    """An output (video file, mesh folder, virtual camera) cannot be written."""
