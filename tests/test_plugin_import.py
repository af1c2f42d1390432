"""Importing the plugin must not import torch, TensorRT or CUDA: that would pick the init order."""

from __future__ import annotations

from .conftest import modules_after, run_pytest

HEAVY = ("torch", "tensorrt", "tensorrt_rtx", "cuda", "cuda.bindings", "pycuda", "numpy")


def test_plugin_import_is_light() -> None:
    loaded = modules_after("import pytest_trtctx.plugin, pytest_trtctx")
    assert "pytest_trtctx.plugin" in loaded  # the import itself happened
    assert [m for m in HEAVY if m in loaded] == []


def test_pytest_with_plugin_loaded_imports_nothing_heavy(pytester) -> None:
    """Through pytest itself: a session that loads the plugin and runs a plain test."""
    pytester.makepyfile(
        f"""
        import sys
        HEAVY = {HEAVY!r}
        def test_nothing_heavy():
            assert [m for m in HEAVY if m in sys.modules] == []
        """
    )
    result = run_pytest(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
