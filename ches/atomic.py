"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Contract
1. Data goes to a temp file in the target's folder (same filesystem, so the rename is atomic).
2. The temp file is flushed and fsynced, then `os.replace`d onto the target, then the folder is
   fsynced so the rename itself survives a power cut.
3. If the block raises, the target is untouched and the temp file is removed. A killed process can
   leave a `.<name>.<random>.tmp` file behind, but never a half-written target.
4. A replaced file keeps the previous file's permission bits; a new one gets 0o666 minus the umask,
   like `open(path, "w")` would give it.
5. A folder (`atomic_folder`) is filled under a temp name beside its target and renamed into place as a
   whole; a target that already exists is left as it is (the first writer wins: same key, same content).
6. `atomic_create` makes a file only where none exists (temp file, then `os.link`): the first writer
   wins, every other caller learns that it lost and reads the winner's file.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_create", "atomic_folder", "atomic_open", "atomic_remove", "atomic_write_bytes", "atomic_write_text",
           "temp_of"]


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Yield a file object for `path` that replaces it only when the block exits cleanly.

    `mode` is "w" (text, UTF-8 by default) or "wb" (bytes); append/read modes make no sense here.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open mode must be 'w', 'wt' or 'wb', got {mode!r}")
    target = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(target)
    fd, tmp = _create_temp(folder, name)
    try:
        binary = "b" in mode
        with os.fdopen(fd, "wb" if binary else "w",
                       encoding=None if binary else encoding,
                       newline=None if binary else newline) as f:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, os.stat(target).st_mode & 0o7777)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (see module contract)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically, encoded as `encoding` (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_create(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create `path` holding `data` only if it does not exist yet; True when this call created it.

    The first writer wins, whatever the number of processes: the data goes to a temp file (fsynced),
    which is hard-linked to `path` (`os.link` fails when `path` exists), then removed. A reader sees
    no file or the whole of it.
    """
    target = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(target)
    fd, tmp = _create_temp(folder, name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(folder)
    return True


class atomic_folder:
    """`with atomic_folder(path) as tmp:` fills the empty temp folder `tmp` beside `path`; when the block
    exits cleanly it becomes `path`, and `.created` tells whether it did.

    If `path` exists by then (another process finished the same folder first), the temp folder is
    dropped, `path` is kept and `.created` stays False. If the block raises, nothing is left behind. A
    killed process can leave a `.<name>.<random>.tmp` folder, never a half-filled `path`.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.target = Path(os.path.abspath(os.fspath(path)))
        self.tmp = self.target.with_name(f".{self.target.name}.{secrets.token_hex(6)}.tmp")
        self.created = False

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None and not self.target.exists():
                try:
                    os.replace(self.tmp, self.target)
                    self.created = True
                except OSError:
                    if not self.target.exists():       # a real failure, not a concurrent writer that won
                        raise
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is None:
            _fsync_dir(str(self.target.parent))
        return False


def atomic_remove(path: str | os.PathLike[str]) -> None:
    """Remove a file or a folder (nothing when it is gone already); a folder is first renamed to a temp
    name beside it, so it never reads as half there."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            os.rename(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def temp_of(name: str) -> str | None:
    """The target name a temp entry `.<name>.<random>.tmp` (file or folder) is filled for; None for any other name."""
    if name.startswith(".") and name.endswith(".tmp"):
        stem, dot, token = name[1:-4].rpartition(".")
        if dot and stem and len(token) == 12 and all(c in "0123456789abcdef" for c in token):
            return stem
    return None


def _create_temp(folder: str, name: str) -> tuple[int, str]:
    # Like tempfile.mkstemp, but created 0o666 so the kernel applies the umask (mkstemp gives 0o600).
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file next to {os.path.join(folder, name)}")


def _fsync_dir(folder: str) -> None:
    # Directory fsync makes the rename durable; not possible on Windows, harmless to skip there.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
