"""ches.atomic: the target is the old file or the new one, never half of either."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ches import atomic
from ches.atomic import atomic_folder, atomic_open, atomic_write_bytes, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_writes_text_and_bytes(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "héllo\nwörld\n")
    assert target.read_bytes() == "héllo\nwörld\n".encode()
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    with atomic_open(target) as f:
        f.write("line\n")
    assert target.read_text() == "line\n"
    assert leftovers(tmp_path, "out.txt") == []


def test_exception_in_block_keeps_previous_file(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target) as f:
            f.write("half of the new content\n" * 1000)
            f.flush()
            raise RuntimeError("boom")
    assert target.read_text() == "previous\n"
    assert leftovers(tmp_path, "out.jsonl") == []       # the temp file is gone too


def test_exception_on_new_target_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.bin", "wb") as f:
            f.write(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_text(tmp_path / "f.txt", "data")
    assert calls[:2] == ["fsync", "replace"]           # file data durable first ...
    assert calls[2:] == (["fsync"] if os.name == "posix" else [])   # ... then the folder entry


def test_replacing_keeps_permissions(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    fresh = tmp_path / "g.txt"
    atomic_write_text(fresh, "new")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask   # like open(path, "w"), not mkstemp's 0o600


def test_rejects_non_write_modes(tmp_path):
    for mode in ("a", "r", "w+", "ab"):
        with pytest.raises(ValueError, match="mode"):
            with atomic_open(tmp_path / "f", mode):
                pass


_SLOW_WRITER = """
import sys, time
from ches.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    for i in range(10_000):
        f.write("new %d\\n" % i)
        f.flush()
        if i == 10:
            print("writing", flush=True)
        time.sleep(0.001)
"""


def test_killed_writer_leaves_previous_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("previous\n")
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    assert child.stdout.readline() == "writing\n"
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert target.read_text() == "previous\n"


def test_a_folder_appears_whole_and_the_first_writer_wins(tmp_path):
    target = tmp_path / "sub" / "chunk"
    first = atomic_folder(target)
    with first as tmp:
        (tmp / "a.txt").write_text("first")
        assert not target.exists()                       # nothing visible while it is filled
        second = atomic_folder(target)
        with second as other:                            # a concurrent writer of the same folder finishes first
            (other / "a.txt").write_text("second")
    assert second.created and not first.created
    assert (target / "a.txt").read_text() == "second" and leftovers(target.parent, keep="chunk") == []


def test_a_folder_whose_block_raises_leaves_nothing(tmp_path):
    target = tmp_path / "chunk"
    folder = atomic_folder(target)
    with pytest.raises(RuntimeError):
        with folder as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed halfway")
    assert not folder.created and list(tmp_path.iterdir()) == []
