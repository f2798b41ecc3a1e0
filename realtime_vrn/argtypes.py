"""argparse value types shared by the command lines: convert, check a range, say what was expected."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

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
