"""Where things live: the workspace (runs, decisions, exports, uploads) and the data root.

    $CHES_WORKSPACE  (default ./workspace)  runs/  decisions.sqlite  exports/  uploads/
    $CHES_DATA_ROOT  (default ./data)       the only folder the app reads datasets from by path

`confine(root, path)` is the one gate for paths typed by a user: the resolved path (symlinks
followed) must lie inside the resolved root, else PathError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class PathError(ValueError):
    """A user-supplied path points outside the folder it is confined to."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def decisions(self) -> Path:
        return self.root / "decisions.sqlite"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"


def workspace(root: str | Path | None = None) -> Workspace:
    ws = Workspace(Path(root or os.environ.get("CHES_WORKSPACE", "workspace")).resolve())
    for d in (ws.runs, ws.exports, ws.uploads):
        d.mkdir(parents=True, exist_ok=True)
    return ws


def data_root() -> Path:
    return Path(os.environ.get("CHES_DATA_ROOT", "data")).resolve()


def confine(root: str | Path, path: str | Path) -> Path:
    """`path` (relative to `root`, or absolute) resolved, if it stays inside `root`; else PathError."""
    root = Path(root).resolve()
    text = str(path).strip()
    if not text or "\x00" in text:
        raise PathError("empty or invalid path")
    target = (root / text).resolve()
    if target != root and root not in target.parents:
        raise PathError(f"{text!r} is outside the allowed folder {root}")
    return target
