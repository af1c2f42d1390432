"""Tests of pytest_trtctx.backends.kernels against the real NVRTC (no GPU needed, no mocks)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC (cuda-bindings[all]) is not installed")

from pytest_trtctx.backends import kernels
from pytest_trtctx.errors import KernelCompileError

from ..conftest import race

ELF_MAGIC = b"\x7fELF"

# On a GPU machine an NVRTC compile calls cuInit in the calling process (two H100s, cuda-bindings
# 13.3.1): the guard in tests/conftest.py found it. Harmless to the plugin (it compiles in the
# isolated worker, after the order's recipe), but these tests must not spread it over workers.
pytestmark = pytest.mark.initialises_cuda("NVRTC compiles call cuInit on a GPU machine")


@pytest.fixture(autouse=True)
def _fresh_memo() -> Any:
    """Each test starts without the in-process memo, so the disk cache is really exercised."""
    kernels.clear_memo()
    yield
    kernels.clear_memo()


def _cache_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "cubin").iterdir())


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_compile_gives_cubin_with_all_kernels(arch: str, tmp_path: Path) -> None:
    cubin = kernels.compile_conv(arch, cache_dir=tmp_path)
    assert cubin.arch == arch
    assert cubin.from_cache is False
    assert cubin.data[:4] == ELF_MAGIC
    assert len(cubin.data) > 4096
    assert set(kernels.KERNEL_NAMES) == {"float32", "float16", "bfloat16"}
    for name in kernels.KERNEL_NAMES.values():
        assert kernels.cubin_has_kernel(cubin.data, name), name
    assert kernels.cubin_has_kernel(cubin.data, kernels.POLL_KERNEL)
    assert not kernels.cubin_has_kernel(cubin.data, "trtctx_conv2d_f64")
    assert cubin.path == tmp_path / "cubin" / f"{cubin.key}.cubin"
    assert cubin.path.read_bytes() == kernels.pack_cached(cubin.data)
    assert len(cubin.key) == 64
    int(cubin.key, 16)


def test_second_call_hits_disk_cache(tmp_path: Path) -> None:
    first = kernels.compile_conv("sm_80", cache_dir=tmp_path)
    kernels.clear_memo()
    second = kernels.compile_conv("sm_80", cache_dir=tmp_path)
    assert first.from_cache is False
    assert second.from_cache is True
    assert second.data == first.data
    assert second.key == first.key
    assert second.path == first.path
    assert _cache_files(tmp_path) == [f"{first.key}.cubin"]


def test_second_call_in_process_does_no_io(tmp_path: Path) -> None:
    first = kernels.compile_conv("sm_80", cache_dir=tmp_path)
    assert first.path is not None
    first.path.unlink()  # a memo hit must not even look at the file
    second = kernels.compile_conv("sm_80", cache_dir=tmp_path)
    assert second.from_cache is True
    assert second.data == first.data
    assert not first.path.exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"garbage, not an ELF file" * 100, id="garbage"),
        pytest.param(lambda data: data, id="raw-cubin-no-header"),
        pytest.param(
            lambda data: (
                kernels.pack_cached(data)[:20000]
                + bytes(b ^ 0xFF for b in kernels.pack_cached(data)[20000:20400])
                + kernels.pack_cached(data)[20400:]
            ),
            id="bytes-20000-20400-flipped",
        ),
    ],
)
def test_corrupt_cache_file_is_recompiled(damage: Any, tmp_path: Path) -> None:
    good = kernels.compile_conv("sm_90", cache_dir=tmp_path)
    assert good.path is not None
    good.path.write_bytes(damage(good.data))
    kernels.clear_memo()
    with pytest.warns(RuntimeWarning, match=good.key):
        again = kernels.compile_conv("sm_90", cache_dir=tmp_path)
    assert again.from_cache is False
    assert again.data == good.data
    assert good.path.read_bytes() == kernels.pack_cached(good.data)
    assert _cache_files(tmp_path) == [f"{good.key}.cubin"]
    kernels.clear_memo()
    assert kernels.compile_conv("sm_90", cache_dir=tmp_path).from_cache is True


def test_different_arch_different_key(tmp_path: Path) -> None:
    a = kernels.compile_conv("sm_80", cache_dir=tmp_path)
    b = kernels.compile_conv("sm_90", cache_dir=tmp_path)
    assert a.key != b.key
    assert a.data != b.data
    assert _cache_files(tmp_path) == sorted([f"{a.key}.cubin", f"{b.key}.cubin"])


def test_invalid_arch_string_rejected(tmp_path: Path) -> None:
    with pytest.raises(KernelCompileError, match="compute_banana"):
        kernels.compile_conv("compute_banana", cache_dir=tmp_path)
    assert not (tmp_path / "cubin").exists()


def test_nvrtc_rejected_arch_carries_log(tmp_path: Path) -> None:
    """sm_999 passes the pattern but not NVRTC: the error names the arch and has NVRTC's log."""
    with pytest.raises(KernelCompileError) as info:
        kernels.compile_conv("sm_999", cache_dir=tmp_path)
    text = str(info.value)
    assert "sm_999" in text
    assert "gpu-architecture" in text.split("log:", 1)[1]


def test_unwritable_cache_dir_still_returns_cubin(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="cannot write"):
        cubin = kernels.compile_conv("sm_80", cache_dir=blocker / "cache")
    assert cubin.path is None
    assert cubin.from_cache is False
    assert cubin.data[:4] == ELF_MAGIC
    assert kernels.cubin_has_kernel(cubin.data, "trtctx_conv2d_bf16")


def test_default_cache_dir_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRTCTX_CACHE_DIR", str(tmp_path / "env-cache"))
    cubin = kernels.compile_conv("sm_80")
    assert cubin.path == tmp_path / "env-cache" / "cubin" / f"{cubin.key}.cubin"
    assert cubin.path.read_bytes() == kernels.pack_cached(cubin.data)


def test_grid_size() -> None:
    assert kernels.BLOCK_SIZE == 256
    assert kernels.grid_size(0) == 1
    assert kernels.grid_size(1) == 1
    assert kernels.grid_size(256) == 1
    assert kernels.grid_size(257) == 2
    assert kernels.grid_size(10**12) == kernels.MAX_GRID_BLOCKS
    with pytest.raises(ValueError):
        kernels.grid_size(-1)


def test_nvrtc_version() -> None:
    major, minor = kernels.nvrtc_version()
    assert major >= 12
    assert minor >= 0


def _compile(cache_dir: str) -> tuple[str, bytes]:
    cubin = kernels.compile_conv("sm_80", cache_dir=Path(cache_dir))
    return cubin.key, cubin.data


def test_concurrent_processes_share_one_cache(tmp_path: Path) -> None:
    got = race(_compile, 4, str(tmp_path))
    keys = {key for key, _ in got}
    blobs = {data for _, data in got}
    assert len(keys) == 1
    assert len(blobs) == 1
    (key,) = keys
    (data,) = blobs
    assert _cache_files(tmp_path) == [f"{key}.cubin"]
    on_disk = (tmp_path / "cubin" / f"{key}.cubin").read_bytes()
    assert on_disk == kernels.pack_cached(data)
    assert data[:4] == ELF_MAGIC
    kernels.clear_memo()
    assert kernels.compile_conv("sm_80", cache_dir=tmp_path).from_cache is True


def test_the_cache_is_private_to_its_user(tmp_path: Path) -> None:
    """Only its owner may write what gets loaded into the GPU: new cache folders are 0700, entries
    0600."""
    cubin = kernels.compile_conv("sm_80", cache_dir=tmp_path / "fresh")
    assert cubin.path is not None
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
    assert cubin.path.parent.stat().st_mode & 0o777 == 0o700
    assert cubin.path.stat().st_mode & 0o777 == 0o600


def test_import_does_not_load_cuda() -> None:
    """Importing the module (and building its source) must not import any CUDA module."""
    code = (
        "import sys; import pytest_trtctx.backends.kernels as k; k.grid_size(5); k.CONV_SOURCE; "
        "print(sorted(m for m in sys.modules if m == 'cuda' or m.startswith(('cuda.', 'torch'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(kernels.__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_a_fifo_named_like_a_cached_cubin_is_refused_not_read(tmp_path: Path) -> None:
    """A FIFO (or a device) under a cache entry's name is reported and the kernel compiled; it is
    never opened for a blocking read (in a child: such a read would hang the test)."""
    good = kernels.compile_conv("sm_90", cache_dir=tmp_path)
    assert good.path is not None
    good.path.unlink()
    os.mkfifo(good.path)
    code = (
        "import sys, warnings\n"
        "from pathlib import Path\n"
        "from pytest_trtctx.backends import kernels\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    got = kernels.compile_conv('sm_90', cache_dir=Path(sys.argv[1]))\n"
        "print(got.from_cache, len(got.data))\n"
        "print('|'.join(str(w.message) for w in seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, warned = done.stdout.splitlines()
    assert first == f"False {len(good.data)}"
    assert f"{good.path} is a FIFO, not a regular file" in warned
    assert stat.S_ISFIFO(os.lstat(good.path).st_mode)
