"""Rules of the test suite itself: missing shared data fails in CI, window tests are collected only in their own
process."""

from __future__ import annotations

import pytest

from conftest import TESTS

pytest_plugins = ["pytester"]

NEEDS_SHARED = '''
import pytest

def test_needs_the_face_model():
    pytest.skip("ICT face model missing")

def test_needs_a_gpu():
    pytest.skip("needs an NVIDIA GPU with CUDA")
'''


@pytest.mark.parametrize("ci, outcomes", [("true", {"failed": 1, "skipped": 1}), ("", {"skipped": 2})])
def test_missing_shared_data_fails_only_in_ci(pytester, monkeypatch, ci, outcomes):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_shared=NEEDS_SHARED)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)


def test_window_tests_are_not_collected_beside_the_others(pytester):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_window="def test_glx():\n    pass\n", test_other="def test_egl():\n    pass\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_window.py").assert_outcomes(passed=1)
