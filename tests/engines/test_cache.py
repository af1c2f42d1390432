"""Tests of pytest_trtctx.engines.cache with real TensorRT-RTX plans (no GPU needed, no mocks)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)
np = pytest.importorskip("numpy", reason="numpy is not installed")

from pytest_trtctx.backends import tensorrt as T  # noqa: E402
from pytest_trtctx.engines import cache as ec  # noqa: E402
from pytest_trtctx.engines.matrix import ConvSpec, default_matrix_path, load_matrix  # noqa: E402
from pytest_trtctx.errors import TrtctxError  # noqa: E402

from ..conftest import race  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_matrix(default_matrix_path(ROOT))[0]
MODULE = "tensorrt_rtx"


def _weights(spec: ConvSpec) -> tuple[Any, Any | None]:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(spec.weight_shape).astype(np.float32)
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) if spec.bias else None
    return weight, bias


def _key_parts(spec: ConvSpec = SPEC) -> dict[str, object]:
    weight, bias = _weights(spec)
    trt = T.load_module(MODULE)
    return ec.key_parts_for(
        MODULE,
        T.module_version(trt),
        cuda_version="13.0",
        driver_version="none",
        target="portable",
        spec=spec,
        settings=T.builder_settings(MODULE),
        weights=T.weights_digest(spec, weight, bias),
    )


class CountingBuild:
    """A real plan build that counts how often it ran."""

    def __init__(self, spec: ConvSpec = SPEC) -> None:
        self.spec = spec
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        weight, bias = _weights(self.spec)
        return T.build_plan(MODULE, self.spec, weight, bias)


def _entry(cache_dir: Path, parts: dict[str, object]) -> Path:
    return ec.entry_path(cache_dir, ec.cache_key(parts))


def test_round_trip_second_get_is_a_hit(tmp_path: Path) -> None:
    parts, build = _key_parts(), CountingBuild()
    plan, hit = ec.get_or_build(parts, build, tmp_path)
    assert (hit, build.calls) == (False, 1)
    assert len(plan) > 100_000
    again, hit = ec.get_or_build(parts, build, tmp_path)
    assert (hit, build.calls) == (True, 1)
    assert again == plan
    path = _entry(tmp_path, parts)
    assert ec.describe_entry(path)["key_parts"] == parts
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix != ".lock") == [path.name]


def test_key_changes_with_every_part() -> None:
    base = _key_parts()
    variants: list[dict[str, object]] = [
        {**base, "backend_version": "0.0"},
        {**base, "cuda": "12.8"},
        {**base, "driver": "580.159.04"},
        {**base, "target": "8.6"},
        {**base, "spec": {**SPEC.to_dict(), "stride": [2, 2]}},
        {**base, "settings": {**T.builder_settings(MODULE), "version_compatible": True}},
        {**base, "weights": "0" * 64},
    ]
    keys = {ec.cache_key(v) for v in variants} | {ec.cache_key(base)}
    assert len(keys) == len(variants) + 1
    assert ec.cache_key(dict(reversed(list(base.items())))) == ec.cache_key(base)  # order-free


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_payload(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]


def _bad_magic(data: bytes) -> bytes:
    return b"NOTMAGIC" + data[8:]


def _other_format(data: bytes) -> bytes:
    return data[:8] + struct.pack("<I", ec.FORMAT_VERSION + 1) + data[12:]


def _header_only(data: bytes) -> bytes:
    return data[:10]


def _empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_truncate, "truncated or padded"),
        (_flip_payload, "sha256 mismatch"),
        (_bad_magic, "not an engine cache entry"),
        (_other_format, "format version"),
        (_header_only, "truncated header"),
        (_empty, "truncated header"),
    ],
)
def test_damaged_entry_is_rebuilt_with_a_warning(tmp_path: Path, damage: Any, why: str) -> None:
    parts, build = _key_parts(), CountingBuild()
    plan, _ = ec.get_or_build(parts, build, tmp_path)
    path = _entry(tmp_path, parts)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(RuntimeWarning, match=why) as record:
        again, hit = ec.get_or_build(parts, build, tmp_path)
    assert str(path) in str(record[0].message)
    assert (hit, build.calls) == (False, 2)
    assert len(again) == len(plan)
    assert ec.read_entry(path, parts) == again  # replaced by a valid entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ec.get_or_build(parts, build, tmp_path)[1] is True


def test_entry_of_another_key_is_not_returned(tmp_path: Path) -> None:
    parts, build = _key_parts(), CountingBuild()
    ec.get_or_build(parts, build, tmp_path)
    other = {**parts, "cuda": "other"}
    _entry(tmp_path, parts).replace(_entry(tmp_path, other))  # a file under the wrong name
    with pytest.warns(RuntimeWarning, match="stored key differs"):
        _, hit = ec.get_or_build(other, build, tmp_path)
    assert hit is False


def test_rebuild_ignores_a_valid_entry(tmp_path: Path) -> None:
    parts, build = _key_parts(), CountingBuild()
    ec.get_or_build(parts, build, tmp_path)
    _, hit = ec.get_or_build(parts, build, tmp_path, rebuild=True)
    assert (hit, build.calls) == (False, 2)
    assert ec.get_or_build(parts, build, tmp_path)[1] is True


@pytest.mark.initialises_cuda("a build TensorRT-RTX refuses calls cuInit on a GPU machine")
def test_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    parts = _key_parts()
    weight, bias = _weights(SPEC)

    def bad() -> bytes:
        return T.build_plan(MODULE, SPEC, weight[:1], bias)

    with pytest.raises(T.EngineBuildError):
        ec.get_or_build(parts, bad, tmp_path)
    assert not _entry(tmp_path, parts).exists()
    with pytest.raises(ec.CacheEntryError, match="empty plan"):
        ec.get_or_build(parts, lambda: b"", tmp_path)


def test_unwritable_cache_warns_and_still_returns_the_plan(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    build = CountingBuild()
    with pytest.warns(RuntimeWarning, match="cannot write the engine cache entry"):
        plan, hit = ec.get_or_build(_key_parts(), build, not_a_dir)
    assert plan and hit is False


def test_key_parts_must_be_json() -> None:
    with pytest.raises(TrtctxError, match="JSON"):
        ec.cache_key({"spec": SPEC})


def _get(cache_dir: str) -> tuple[bytes, bool]:
    return ec.get_or_build(_key_parts(), CountingBuild(), Path(cache_dir))


def test_concurrent_builders_leave_one_valid_entry(tmp_path: Path) -> None:
    got = race(_get, 3, str(tmp_path))
    # The build lock lets one process build; the others wait and read its entry.
    assert sorted(hit for _, hit in got) == [False, True, True]
    parts = _key_parts()
    path = _entry(tmp_path, parts)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == sorted([path.name, path.with_suffix(".lock").name])  # no temp files left
    on_disk = ec.read_entry(path, parts)
    assert {plan for plan, _ in got} == {on_disk}
