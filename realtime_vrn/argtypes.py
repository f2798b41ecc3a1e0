"""argparse value types shared by the command lines: convert, check a range, say what was expected.

The types of options with declared choices (``--output``, ``--device``, ``--backend``) wrap the checks in
:mod:`realtime_vrn.config`, so a command line is refused by the same rule as a configuration file, and at once:
before any model, MediaPipe or camera is opened.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, TypeVar

from realtime_vrn import config
from realtime_vrn.errors import ConfigError

T = TypeVar("T")


def checked(convert: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> Callable[[str], T]:
    """An argparse ``type=`` that converts with ``convert`` and accepts values where ``ok`` holds.

    A bad value gives ``expected <expected>, got <text>`` (argparse prints it as a one-line usage error).
    """

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda v: v >= 1, "a whole number >= 1")
positive_float = checked(float, lambda v: v > 0, "a positive number")
camera_index = checked(int, lambda v: v >= 0, "a camera index >= 0 (0, 1, ...)")
unit_float = checked(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def validated(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` from one of config's checks: its ConfigError becomes a one-line usage error."""

    def parse(text: str) -> T:
        try:
            return check(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _output_path(text: str) -> Path:
    path = Path(text)
    config.output_kind(path)
    return path


output_path = validated(_output_path)
device_name = validated(config.check_device)
backend_name = validated(config.check_backend)
backend_list = validated(config.check_backend_list)
