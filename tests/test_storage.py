"""Where the plugin keeps files and how it writes them (pytest_trtctx.storage)."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import threading
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


def _reader(fifo: Path, into: list[bytes]) -> threading.Thread:
    """A thread that opens ``fifo`` for reading and keeps what comes through."""

    def read() -> None:
        with open(fifo, "rb") as fh:
            into.append(fh.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_write_output_writes_through_a_symlink_and_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    storage.write_output(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"


def test_write_output_creates_a_dangling_symlinks_target(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    storage.write_output(link, b"new")
    assert link.is_symlink() and (tmp_path / "made.json").read_bytes() == b"new"


def test_write_output_writes_into_a_fifo_with_a_reader_and_keeps_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    thread = _reader(fifo, got)
    deadline = 50
    while deadline:  # the reader must have the FIFO open before the non-blocking open
        try:
            storage.write_output(fifo, b"x" * 200_000)  # more than a pipe's buffer
            break
        except storage.UnsafeOutput:
            deadline -= 1
            threading.Event().wait(0.1)
    thread.join(timeout=30)
    assert got == [b"x" * 200_000]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_write_output_refuses_a_fifo_nobody_reads_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(storage.UnsafeOutput, match=r"pipe: a FIFO nobody reads"):
        storage.write_output(fifo, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_write_output_writes_into_a_character_device_and_keeps_it(tmp_path: Path) -> None:
    """A node with /dev/null's numbers, made in tmp_path: the real /dev/null is never touched."""
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    storage.write_output(null, b"data")
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_read_regular_refuses_fifos_and_devices_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nobody writes: a blocking open or read would never return
    with pytest.raises(storage.UnusableInput, match=r"pipe is a FIFO, not a regular file"):
        storage.read_regular(fifo, 100)
    with pytest.raises(storage.UnusableInput, match=r"/dev/zero is a character device"):
        storage.read_regular(Path("/dev/zero"), 100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(storage.UnusableInput, match=r"big is 101 bytes, more than the 100"):
        storage.read_regular(big, 100)
    assert storage.read_regular(big, 101) == b"x" * 101


def test_save_json_leaves_no_empty_fallback_when_nothing_can_be_written(tmp_path: Path) -> None:
    """Writing that fails everywhere (a full disk, ``ulimit -f``) returns why, never raises, and
    leaves no empty file that would pass for a result."""
    code = (
        "import resource, signal, sys, json\n"
        "from pathlib import Path\n"
        "from pytest_trtctx import storage\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
        "print(json.dumps(storage.save_json(Path(sys.argv[1]), {'x': 'y' * 1000})))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r.json")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, why = json.loads(done.stdout)
    assert where is None
    assert "r.json could not be written (File too large)" in why
    assert "nor could a copy in the temp folder (File too large)" in why
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "r.json").exists()


def test_locked_serialises_its_holders(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "x.lock"
    with storage.locked(lock, private=True) as held:
        assert held
        code = (
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n"
            "    sys.exit(3)\n"
        )
        busy = subprocess.run([sys.executable, "-c", code, str(lock)], timeout=60, check=False)
        assert busy.returncode == 3
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700
    assert lock.stat().st_mode & 0o777 == 0o600
