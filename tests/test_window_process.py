"""The window tests (tests/test_window.py: GLX contexts through glfw under Xvfb) in a pytest process of their own,
so that no order of tests can put a GLX window into a process that already holds EGL contexts (see
WINDOW_TEST_MODULES in conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import TESTS

#: The window tests take ~10 s; generous for a loaded 2-core machine.
CHILD_TIMEOUT_S = 600


def test_window_tests_pass_in_their_own_process():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(TESTS / "test_window.py")], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          cwd=TESTS.parent, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    if not re.search(r"\d+ passed", summary):
        pytest.skip(f"every window test skipped in the child: {summary}")
