"""Spec exploration: generated specs are valid; a failure shrinks to a ready-to-paste entry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from pytest_trtctx.engines.explore import ENTRY_TITLE, conv_specs
from pytest_trtctx.engines.matrix import ConvSpec, load_matrix

from ..conftest import run_pytest


@settings(max_examples=150, deadline=None)
@given(conv_specs())
def test_generated_specs_are_valid_matrix_entries(spec: ConvSpec) -> None:
    assert ConvSpec.from_mapping(spec.to_dict(), where="generated") == spec
    assert min(spec.output_hw) >= 1


@settings(max_examples=60, deadline=None)
@given(conv_specs(max_channels=8, max_hw=12))
def test_generated_specs_agree_with_torch(spec: ConvSpec) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = torch.zeros(spec.input_shape)
    w = torch.zeros(spec.weight_shape)
    y = torch.nn.functional.conv2d(
        x, w, None, spec.stride, spec.padding, spec.dilation, spec.groups
    )
    assert tuple(y.shape) == spec.output_shape


EXPLORE_SUITE = """
def test_explore(trtctx_explore):
    def check(spec):
        # A stand-in for an engine that fails on large kernels: a property of the spec alone.
        assert spec.kernel[0] < 5, f"kernel {spec.kernel} fails"
    trtctx_explore(check)
"""


def test_exploration_shrinks_to_a_pasteable_entry(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_explore_suite=EXPLORE_SUITE)
    result = run_pytest(pytester, "--trtctx-explore=200", "--trtctx-explore-db=exdb")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.endswith(ENTRY_TITLE))
    entry_lines = []
    for line in lines[start + 1 :]:
        text = line.removeprefix("E").strip()  # pytest prefixes the exception's notes with E
        if not text:
            break
        entry_lines.append(text)
    entry = "\n".join(entry_lines)
    assert "kernel = [5, 1]" in entry  # shrunk to the smallest failing kernel
    (pytester.path / "found.toml").write_text("schema = 1\n\n" + entry + "\n")
    [spec] = load_matrix(pytester.path / "found.toml")
    assert spec.kernel == (5, 1)
    assert (pytester.path / "exdb").is_dir()


def test_exploration_is_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_explore_suite=EXPLORE_SUITE)
    result = run_pytest(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*spec exploration is off: pass --trtctx-explore=N*"])


def test_an_example_database_that_cannot_be_written_is_a_warning(
    pytester: pytest.Pytester,
) -> None:
    """hypothesis ignores a database write that fails: the failure found would silently not be
    replayed first next run. The database's folder becomes a file during the run."""
    pytester.makepyfile(
        test_explore_suite="""
        import os, shutil
        def test_explore(trtctx_explore):
            def check(spec):
                if os.path.isdir("exdb"):
                    shutil.rmtree("exdb")
                    open("exdb", "w").close()
                assert spec.kernel[0] < 5, f"kernel {spec.kernel} fails"
            trtctx_explore(check)
        """
    )
    (pytester.path / "exdb").mkdir()  # there at the first check, so every save meets a file
    result = run_pytest(pytester, "--trtctx-explore=200", "--trtctx-explore-db=exdb")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*pytest-trtctx: --trtctx-explore-db */exdb: an example could not be saved there*"]
    )
