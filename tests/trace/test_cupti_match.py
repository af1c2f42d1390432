"""The tracer's CUPTI against torch's (pytest_trtctx.trace.cupti_match), from installed packages'
metadata as pip writes it: torch 2.11.0+cu130's and cuda-toolkit 13.0.2's real requirement lines,
cupti-python's two releases, a CPU torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_trtctx.trace.cupti_match import MSG_CUPTI_MISMATCH, cupti_mismatch

#: The metadata of the GPU host's torch (2.11.0+cu130) and of cuda-toolkit 13.0.2, as installed
#: (their lines on CUPTI and a neighbour of each), and of the two cupti-python releases.
TORCH_CU130 = [
    "filelock",
    "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]"
    '==13.0.2; platform_system == "Linux"',
    'nvidia-cudnn-cu13==9.19.0.56; platform_system == "Linux"',
]
CUDA_TOOLKIT_13_0_2 = [
    "nvidia-cuda-cupti==13.0.85.*; (sys_platform == 'linux' or sys_platform == 'win32') and "
    "extra == 'all'",
    "nvidia-cublas==13.1.0.3.*; (sys_platform == 'linux' or sys_platform == 'win32') and "
    "extra == 'cublas'",
    "nvidia-cuda-cupti==13.0.85.*; (sys_platform == 'linux' or sys_platform == 'win32') and "
    "extra == 'cupti'",
]
CUPTI_PYTHON = {
    "13.0.1": ["nvidia-cuda-cupti~=13.0", "cuda-bindings>=13.0.2", "pyelftools"],
    "13.4.0": ["nvidia-cuda-cupti~=13.4", "cuda-bindings>=13.0.2", "pyelftools"],
}


def _installed(root: Path, name: str, version: str, requires: Sequence[str] = ()) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def _site(root: Path, *, torch: str | None, cupti: str, library: str) -> list[str]:
    if torch == "cu130":
        _installed(root, "torch", "2.11.0", TORCH_CU130)
        _installed(root, "cuda-toolkit", "13.0.2", CUDA_TOOLKIT_13_0_2)
    elif torch == "cpu":
        _installed(root, "torch", "2.13.0+cpu", ["filelock", "sympy>=1.13.3"])
    _installed(root, "cupti-python", cupti, CUPTI_PYTHON[cupti])
    _installed(root, "nvidia-cuda-cupti", library)
    return [str(root)]


def test_a_cupti_that_replaced_torchs_says_which_libraries_disagree_and_the_fix(
    tmp_path: Path,
) -> None:
    """The resolver's pick beside torch 2.11+cu130: cupti-python 13.4.0, torch's CUPTI 13.0.85
    upgraded to 13.5.25. The tracer is off, and says what to install."""
    site = _site(tmp_path, torch="cu130", cupti="13.4.0", library="13.5.25")
    assert cupti_mismatch(site) == MSG_CUPTI_MISMATCH.format(
        what="torch 2.11.0 requires nvidia-cuda-cupti==13.0.85.* (through cuda-toolkit"
        "[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx] "
        "13.0.2); cupti-python 13.4.0 requires nvidia-cuda-cupti~=13.4; nvidia-cuda-cupti "
        "13.5.25 is installed",
        fix="pip install 'cupti-python==13.0.*' 'nvidia-cuda-cupti==13.0.85.*'",
    )


def test_a_cupti_python_installed_without_its_library_says_the_one_to_match(
    tmp_path: Path,
) -> None:
    """cupti-python 13.4.0 put in with --no-deps beside torch's CUPTI 13.0.85."""
    site = _site(tmp_path, torch="cu130", cupti="13.4.0", library="13.0.85")
    assert cupti_mismatch(site) == MSG_CUPTI_MISMATCH.format(
        what="cupti-python 13.4.0 requires nvidia-cuda-cupti~=13.4; nvidia-cuda-cupti 13.0.85 "
        "is installed",
        fix="pip install 'cupti-python==13.0.*'",
    )


@pytest.mark.parametrize(
    ("torch", "cupti", "library"),
    [("cu130", "13.0.1", "13.0.85"), ("cpu", "13.4.0", "13.5.25"), (None, "13.4.0", "13.5.25")],
    ids=["torch-cu130-matched", "torch-cpu-brings-no-cupti", "no-torch"],
)
def test_a_matched_cupti_or_a_torch_without_one_is_no_mismatch(
    tmp_path: Path, torch: str | None, cupti: str, library: str
) -> None:
    assert cupti_mismatch(_site(tmp_path, torch=torch, cupti=cupti, library=library)) is None


def test_without_cupti_python_there_is_nothing_to_match(tmp_path: Path) -> None:
    _installed(tmp_path, "torch", "2.11.0", TORCH_CU130)
    assert cupti_mismatch([str(tmp_path)]) is None
