"""Where the plugin keeps files and how it writes them (pytest_trtctx.storage)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from pytest_trtctx import storage


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRTCTX_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert storage.default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TRTCTX_CACHE_DIR")
    assert storage.default_cache_dir() == tmp_path / "xdg" / "pytest-trtctx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert storage.default_cache_dir() == tmp_path / "home" / ".cache" / "pytest-trtctx"


def test_clear_caches_removes_the_plugins_entries_and_nothing_else(tmp_path: Path) -> None:
    key = "0123456789abcdef" * 4
    (tmp_path / "cubin").mkdir()
    (tmp_path / "engines").mkdir()
    (tmp_path / "cubin" / f"{key}.cubin").write_bytes(b"\x7fELF")
    (tmp_path / "cubin" / f".{key}.x1.tmp").write_bytes(b"half")
    (tmp_path / "engines" / f"{key}.plan").write_bytes(storage.ENGINE_MAGIC + b"...")
    (tmp_path / "engines" / f"{key}.lock").write_bytes(b"")
    (tmp_path / "mine.txt").write_text("not the plugin's")
    assert storage.clear_caches(tmp_path) == (4, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]  # emptied folders go
    assert storage.clear_caches(tmp_path) == (0, [])


def test_clear_caches_leaves_what_it_did_not_write(tmp_path: Path) -> None:
    """``--trtctx-cache-dir=.`` in a clone: its engines/ folder holds the matrix, not entries."""
    key = "0123456789abcdef" * 4
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "conv_matrix.toml").write_text("schema = 1\n")
    (tmp_path / "engines" / f"{key}.plan").write_bytes(b"not an engine entry")
    (tmp_path / "engines" / "sub").mkdir()
    assert storage.clear_caches(tmp_path) == (0, [])
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [
        f"{key}.plan",
        "conv_matrix.toml",
        "sub",
    ]


def test_write_atomic_replaces_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.bin"
    storage.write_atomic(target, b"one")
    storage.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.bin"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomic_leaves_no_temp_when_writing_fails(tmp_path: Path) -> None:
    (tmp_path / "dir.bin").mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        storage.write_atomic(tmp_path / "dir.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.bin"]


def test_write_json_compresses_a_gz_path_reproducibly(tmp_path: Path) -> None:
    data = {"b": [1, 2], "a": "x"}
    storage.write_json(tmp_path / "r.json", data)
    storage.write_json(tmp_path / "r.json.gz", data)
    assert json.loads((tmp_path / "r.json").read_text()) == data
    blob = (tmp_path / "r.json.gz").read_bytes()
    assert json.loads(gzip.decompress(blob)) == data
    storage.write_json(tmp_path / "again.json.gz", data)
    assert (tmp_path / "again.json.gz").read_bytes() == blob  # no timestamp inside


def test_digest_separates_its_parts() -> None:
    assert storage.digest(["ab", "c"]) != storage.digest(["a", "bc"])
    assert storage.digest(["ab", "c"]) == storage.digest(["ab", "c"])
