"""Several backends in one run (``settings.backend_axis``): ``--trtctx-backend=cuda,triton,cudnn``
runs each test that builds engines once per backend, the first keeping the ids it has alone.
Collection and grouping run for real on CPU (the recipes stood in for: ``CPU_ORDERS``)."""

from __future__ import annotations

import pytest

from pytest_trtctx.errors import ConfigError
from pytest_trtctx.settings.config import parse_backends

from ..conftest import MATRIX_A_F32, MATRIX_B_F16, cpu_orders, marked_suite, run_pytest

SUITE = (
    marked_suite("triton")
    + """
def test_no_engines(trtctx_order):
    pass
"""
)


def _ids(pytester: pytest.Pytester, *args: str) -> list[str]:
    (pytester.path / "engines").mkdir(exist_ok=True)
    (pytester.path / "engines" / "conv_matrix.toml").write_text(
        "schema = 1\n" + MATRIX_A_F32 + MATRIX_B_F16
    )
    pytester.makepyfile(test_suite=SUITE)
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--collect-only", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    return [line for line in result.stdout.lines if line.startswith("test_suite.py::")]


def test_the_first_backend_keeps_its_ids_and_each_other_adds_its_name(
    pytester: pytest.Pytester,
) -> None:
    alone = _ids(pytester, "--trtctx-backend=cuda")
    listed = _ids(pytester, "--trtctx-backend=cuda,triton,cudnn", "--trtctx-cudnn-plans=2")
    conv = [i for i in listed if i.startswith("test_suite.py::test_conv[")]
    assert conv == [
        f"test_suite.py::test_conv[torch-first{backend}-{spec}]"
        for backend in ("", "-triton", "-cudnn-plan0", "-cudnn-plan1")
        for spec in ("a_f32", "b_f16")
    ]
    assert set(alone) <= set(listed)  # the first backend's tests, ids unchanged
    # A test that names its backend runs that one alone; one without a spec gets no plan slots;
    # one that builds no engines is not multiplied.
    assert [i for i in listed if "test_marked" in i] == [i for i in alone if "test_marked" in i]
    assert [i for i in listed if "test_own" in i] == [
        "test_suite.py::test_own[torch-first]",
        "test_suite.py::test_own[torch-first-triton]",
        "test_suite.py::test_own[torch-first-cudnn]",
    ]
    assert [i for i in listed if "test_no_engines" in i] == [
        "test_suite.py::test_no_engines[torch-first]"
    ]
    # cuDNN listed first: its slot moves after the order (the one exception, documented).
    first = _ids(pytester, "--trtctx-backend=cudnn,cuda", "--trtctx-cudnn-plans=1")
    assert [i for i in first if i.startswith("test_suite.py::test_conv[")] == [
        "test_suite.py::test_conv[torch-first-plan0-a_f32]",
        "test_suite.py::test_conv[torch-first-plan0-b_f16]",
        "test_suite.py::test_conv[torch-first-cuda-a_f32]",
        "test_suite.py::test_conv[torch-first-cuda-b_f16]",
    ]


#: Each test writes the backend its plan names and the process it ran in, before the backend
#: is chosen (an autouse fixture runs first: a backend that cannot run here skips at trtctx).
WHERE = """
import os
import pytest
from pytest_trtctx.settings import plan

@pytest.fixture(autouse=True)
def where(request):
    with open("where.txt", "a") as out:
        out.write(f"{request.node.name} {plan.of(request.node).backend.value} {os.getpid()}\\n")

@pytest.mark.parametrize("n", range(3))
def test_x(trtctx, n):
    pass

def test_plain():
    pass
"""


def test_each_backend_of_an_order_runs_in_processes_of_its_own(pytester: pytest.Pytester) -> None:
    """Under isolate=order an init order's tests share one process per backend listed: a
    backend's outcomes are those of a run of it alone; each test's plan names its backend."""
    pytester.makepyfile(test_where=WHERE)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "--trtctx-isolate=order",
        "--trtctx-workers=1", "--trtctx-backend=cuda,triton", "--trtctx-report=r.json",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    from pytest_trtctx.records.report import load

    # In the report too, each test is its backend's, one that skipped before it was chosen
    # (no GPU here) included; a test that builds no engines is none's.
    recorded = {
        t["nodeid"].split("::")[1]: t["backend"] for t in load(pytester.path / "r.json")["tests"]
    }
    assert recorded == {
        **{f"test_x[torch-first-{n}]": "cuda" for n in range(3)},
        **{f"test_x[torch-first-triton-{n}]": "triton" for n in range(3)},
        "test_plain": None,  # builds no engines: no backend's
    }
    rows = [line.split() for line in (pytester.path / "where.txt").read_text().splitlines()]
    rows = [row for row in rows if row[0].startswith("test_x")]
    seen = {(name, backend): pid for name, backend, pid in rows}
    assert sorted(seen) == sorted(
        [(f"test_x[torch-first-{n}]", "cuda") for n in range(3)]
        + [(f"test_x[torch-first-triton-{n}]", "triton") for n in range(3)]
    )
    pids = {
        b: {pid for (_n, backend), pid in seen.items() if backend == b} for b in ("cuda", "triton")
    }
    assert len(pids["cuda"]) == len(pids["triton"]) == 1 and pids["cuda"] != pids["triton"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("cuda,cuda", "backend 'cuda' is listed twice"),
        ("auto,cuda", "'auto' and 'cuda' are both listed"),
        ("triton,tensorrt_rtx,auto", "'auto' and 'tensorrt_rtx' are both listed"),
        ("cuda,cudnn9", "unknown value 'cudnn9'"),
        (" , ", "empty value; allowed: auto, "),
    ],
)
def test_a_bad_list_names_what_is_wrong(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"option --trtctx-backend: .*{problem}"):
        parse_backends(value, "option --trtctx-backend")
    assert parse_backends("auto, triton,cudnn", "x") == ("auto", "triton", "cudnn")


@pytest.mark.parametrize("installed", [[], ["triton"], ["triton", "cudnn"]])
def test_vendors_lists_the_vendor_backends_installed_here(
    monkeypatch: pytest.MonkeyPatch, installed: list[str]
) -> None:
    import pytest_trtctx.backends as backends

    monkeypatch.setattr(backends, "installed", lambda module: module in installed)
    assert backends.installed_vendors() == installed  # Triton first: it keeps its ids
    assert parse_backends("auto,vendors", "x") == ("auto", *installed)
    if not installed:
        with pytest.raises(ConfigError, match="lists no backend: no vendor backend is installed"):
            parse_backends("vendors", "option --trtctx-backend")
    else:
        with pytest.raises(ConfigError, match=f"backend '{installed[0]}' is listed twice"):
            parse_backends(f"vendors,{installed[0]}", "option --trtctx-backend")


PARAM_MARKED = """
import pytest

@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.trtctx_backend("cuda"))])
def test_p(trtctx, n):
    pass
"""


def test_a_backend_marked_on_one_parameter_under_a_list_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """Each of that parameter's runs would be the marked backend under another's id."""
    pytester.makepyfile(test_param=PARAM_MARKED)
    result = run_pytest(
        pytester, "--trtctx-order=torch-first", "--trtctx-backend=cuda,triton", "--co"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*marker trtctx_backend on test_param.py::test_p: marks one of its parameters, but the "
         "run lists several backends (option --trtctx-backend) and each of its runs would be "
         "cuda*"]
    )  # fmt: skip


def test_a_bad_list_is_a_usage_error_and_the_header_names_every_backend(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_one="def test_one(): pass")
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--trtctx-backend=triton,triton")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --trtctx-backend: backend 'triton' is listed twice*"])
    result = run_pytest(
        pytester, "--trtctx-order=torch-first", "--trtctx-backend=cuda,triton", "--co"
    )
    result.stdout.fnmatch_lines(["trtctx: *; backends cuda, triton (option --trtctx-backend): *"])
    from pytest_trtctx.backends import installed_vendors

    found = ", ".join(installed_vendors()) or "none installed"
    result = run_pytest(
        pytester, "--trtctx-order=torch-first", "--trtctx-backend=auto,vendors", "--co"
    )
    result.stdout.fnmatch_lines([f"trtctx: *(option --trtctx-backend; vendors: {found}): *"])
