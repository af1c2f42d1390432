"""The README tells the truth: its code is the code that runs, its options and markers exist, its
commands select what they say. The GPU run of its own-engine example is in test_testrun.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_trtctx.scenarios import ORDERS, SCENARIOS
from pytest_trtctx.settings.options import OPTIONS
from pytest_trtctx.settings.plan import MARKERS

from .conftest import gpu_skip_reason, run_pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: Where the README's Python comes from: each block is a verbatim excerpt of one of these.
SOURCES = [
    ROOT / "examples" / "test_own_engine.py",
    ROOT / "pytest_trtctx/suite/test_conv_matrix.py",
    ROOT / "examples" / "own_scenario" / "conftest.py",
]


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language`` ("" for a bare fence), in order."""
    found, current, fence = [], [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if fence is None:
                fence, current = line[3:].strip(), []
            else:
                if fence == language:
                    found.append("\n".join(current) + "\n")
                fence = None
        elif fence is not None:
            current.append(line)
    return found


@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.split("\n")[0][:40])
def test_every_python_block_is_code_that_runs(block: str) -> None:
    assert any(block in source.read_text() for source in SOURCES), block


def test_every_option_the_readme_names_exists() -> None:
    known = {option.flag for option in OPTIONS}
    named = set(re.findall(r"--trtctx-[a-z-]+", README))
    assert named and named <= known, named - known


def test_every_marker_the_readme_names_exists() -> None:
    known = {line.split("(")[0].split(":")[0] for line in MARKERS}
    named = set(
        re.findall(
            r"\btrtctx_(?:orders|known_failure|nonzero|bitwise_stable|timeout|backend)\b", README
        )
    )
    assert named <= known, named - known


def test_the_readme_lists_every_marker() -> None:
    """The reference's Markers line names each marker `pytest --markers` lists."""
    listed = README.split("Markers (`pytest --markers` lists them):", 1)[1].split("\n\n", 1)[0]
    known = {line.split("(")[0].split(":")[0] for line in MARKERS}
    missing = {name for name in known if not re.search(rf"`{name}[`(]", listed)}
    assert not missing, missing


def test_every_order_the_readme_names_exists() -> None:
    named = set(re.findall(r"`([a-z]+-(?:first|hop|device|stream|capture|destroyed))`", README))
    assert named <= set(SCENARIOS), named - set(SCENARIOS)


def test_the_readme_filter_example_selects_tests() -> None:
    """`./dev matrix -k f16` must select the float16 specs (ids say f16, not float16)."""
    assert "./dev matrix -k f16" in README
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/regression", "--trtctx-order=torch-first",
         "-k", "f16", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    assert selected and all("f16" in line for line in selected), done.stdout[-2000:]


def test_the_summary_shown_in_the_readme_has_the_summarys_columns() -> None:
    from pytest_trtctx.records.summary import COLUMNS

    shown = next(b for b in blocks("") if "trtctx summary" in b)
    header = shown.splitlines()[1].split()
    assert header == ["order", "backend", *COLUMNS]


@pytest.mark.skipif(gpu_skip_reason() is None, reason="this machine has a GPU: it runs the example")
def test_the_own_engine_example_skips_under_every_order_without_a_gpu(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings[all] is not installed")
    pytester.makepyfile(test_own_engine=SOURCES[0].read_text())
    result = run_pytest(pytester, "--trtctx-order=all", "-rs")
    result.assert_outcomes(skipped=2 * len(ORDERS))
    result.stdout.fnmatch_lines([f"SKIPPED [[]*[]] test_own_engine.py:*: {gpu_skip_reason()}"])


#: What a command needs installed, by what it says: an extra of this package or a tool.
NEEDS = (
    (re.compile(r"\bpytest\b.* -n \d"), "xdist"),
    (re.compile(r"--trtctx-explore="), "explore"),
    (re.compile(r"--trtctx-trace\b"), "trace"),
    (re.compile(r"\bpytest\b.*--trtctx-order=|--pyargs pytest_trtctx\.suite"), "cuda"),
    (re.compile(r"^tox\b"), "tox"),
)


def _extras() -> set[str]:
    import tomllib

    return set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )


@pytest.mark.parametrize("doc", ["README.md", "docs/trace.md", "docs/gpu-ci.md"])
def test_every_documented_command_runs_after_the_installs_before_it(doc: str) -> None:
    """Read in order, each shell command finds what it needs installed by a `pip install` line
    earlier in the same document (`pytest -n 4` needs [xdist], as the README once forgot)."""
    installed: set[str] = set()
    text = (ROOT / doc).read_text()
    commands = [
        line.split("#")[0].strip().removeprefix("- run:").strip()
        for line in text.splitlines()
        if re.match(r"\s*(- run: )?(python3? -m )?(pip|pytest|tox)\b", line)
    ]
    assert commands, doc
    for command in commands:
        if re.search(r"\bpip install\b", command):
            for extras in re.findall(r"\.\[([a-z,]+)\]", command):
                named = set(extras.split(","))
                assert named <= _extras(), (doc, command, named - _extras())
                installed |= named
                if "test" in named:
                    installed |= {"cuda", "torch", "xdist", "explore"}
            installed |= {w for w in command.split() if w in ("tox",)}
            continue
        for pattern, need in NEEDS:
            if pattern.search(command):
                assert need in installed, (
                    f"{doc}: `{command}` needs [{need}], installed: {installed}"
                )


def _table_rows(header: str) -> list[list[str]]:
    """The rows of the README's table whose header line starts with ``header``."""
    lines = README.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize(("header", "kind"), [("| order |", "order"), ("| hazard |", "hazard")])
def test_the_readme_tables_are_the_registry(header: str, kind: str) -> None:
    """One row per shipped scenario of the kind, in the registry's order; each names the field
    reports the scenario stands for, and says known failure where the scenario declares one."""
    import re

    from pytest_trtctx.scenarios import SHIPPED

    shipped = [s for s in SHIPPED if s.kind == kind]
    rows = _table_rows(header)
    assert [row[0].strip("`") for row in rows] == [s.name for s in shipped]
    for scenario, row in zip(shipped, rows, strict=True):
        for report in scenario.stands_for:
            number = re.search(r"#(\d+)$", report)
            assert number and number.group(1) in row[2], (scenario.name, report, row[2])
        declared = "known failure" in row[3].lower()
        assert declared == (scenario.known_failure is not None), (scenario.name, row[3])
