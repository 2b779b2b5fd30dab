"""Where things live: the workspace (runs, decisions, exports, uploads) and the data root.

    $CHES_WORKSPACE  (default ./workspace)  runs/  decisions.sqlite  exports/  uploads/<sha12>/<name>
                                            jobs/<name>.json|.log|.status.jsonl  (jobs, ches/engine/jobs.py:
                                            a scoring job's name is its run id; a probe, check or map job's
                                            <kind>-<run id>-<digest of its arguments>)
    $CHES_DATA_ROOT  (default ./data)       the only folder the app reads datasets from by path
    $CHES_MODELS_ROOT (default: none)       the only folder the app loads local models from

`confine(root, path)` is the one gate for paths typed by a user: the resolved path (symlinks
followed) must lie inside the resolved root, else PathError. `existing(root, path)` adds that it exists,
with one message for "missing" and "outside" (an error never tells what exists outside a root).
The models root is the only place the app's model field may name a folder in (ches.engine.models.app_model).

`bundled(name)` finds what the project ships beside the package (app.py, pages/, .streamlit/config.toml,
data/sample.jsonl): in the checkout, else where `pip install .` put it (<prefix>/share/ches-studio/).
"""
from __future__ import annotations

import hashlib
import os
import re
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ches.atomic import atomic_write_bytes

MB = 10**6                                # the one size unit: decimal megabytes, everywhere sizes are shown
MAX_UPLOAD_BYTES = 200 * MB              # largest dataset file the app accepts as an upload
CHECKOUT = Path(__file__).resolve().parent.parent    # the repository root, when ches runs from a checkout
INSTALLED = Path("share") / "ches-studio"             # under an install prefix: pyproject's [tool.setuptools.data-files]


def bundled(name: str | Path) -> Path:
    """`name` (relative to the repository root, e.g. "app.py") from the checkout if ches runs from one, else
    from the installed copy (<prefix>/share/ches-studio/, then the per-user prefix). The first place that
    holds it; when none does, the first place looked in (so an error names it)."""
    places = [CHECKOUT / name] if (CHECKOUT / "pyproject.toml").is_file() else []
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        places.append(Path(sysconfig.get_path("data", scheme)) / INSTALLED / name)
    return next((p for p in places if p.exists()), places[0])


def streamlit_flags(config: str | Path) -> list[str]:
    """A Streamlit config.toml as `streamlit run` flags: [section] key = value -> --section.key value (nested
    tables join with dots). `ches app` passes the project's settings so, as the user's folder has no .streamlit/."""
    def flat(table: dict, prefix: str) -> list[str]:
        out = []
        for key, value in table.items():
            if isinstance(value, dict):
                out += flat(value, f"{prefix}{key}.")
            else:
                out += [f"--{prefix}{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        return out
    return flat(tomllib.loads(Path(config).read_text(encoding="utf-8")), "")


SAMPLE = bundled("data/sample.jsonl")                 # the bundled sample


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

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"


def workspace(root: str | Path | None = None) -> Workspace:
    ws = Workspace(Path(root or os.environ.get("CHES_WORKSPACE", "workspace")).resolve())
    for d in (ws.runs, ws.exports, ws.uploads, ws.jobs):
        d.mkdir(parents=True, exist_ok=True)
    return ws


def data_root() -> Path:
    return Path(os.environ.get("CHES_DATA_ROOT", "data")).resolve()


def models_root() -> Path | None:
    """$CHES_MODELS_ROOT resolved, or None when it is not set (the app then offers no local model folders)."""
    value = os.environ.get("CHES_MODELS_ROOT", "").strip()
    return Path(value).resolve() if value else None


def existing(root: str | Path, path: str | Path, what: str = "data root") -> Path:
    """confine(root, path) if it exists; else PathError, the same message whether it is missing or outside."""
    try:
        target = confine(root, path)
    except PathError:
        target = None
    if target is None or not target.exists():
        raise PathError(f"{str(path).strip()[:200]!r}: no such file or folder in the {what}")
    return target


def confine(root: str | Path, path: str | Path) -> Path:
    """`path` (relative to `root`, or absolute) resolved, if it stays inside `root`; else PathError."""
    root = Path(root).resolve()
    text = str(path).strip()
    if not text or "\x00" in text:
        raise PathError("empty or invalid path")
    plain = Path(os.path.normpath(root / text))          # first by name alone: nothing outside is looked at
    if plain != root and root not in plain.parents:
        raise PathError(f"{text!r} is outside the allowed folder {root}")
    target = plain.resolve()
    if target != root and root not in target.parents:
        raise PathError(f"{text!r} is outside the allowed folder {root}")
    return target


def megabytes(n_bytes: float) -> float:
    """`n_bytes` in MB (1 MB = 10^6 bytes), the unit every size is shown in."""
    return n_bytes / MB


def check_upload_size(n_bytes: int, limit: int | None = None) -> None:
    """ValueError with a readable message when an upload is over the limit (default MAX_UPLOAD_BYTES)."""
    limit = MAX_UPLOAD_BYTES if limit is None else limit
    if n_bytes > limit:
        raise ValueError(f"the file is {megabytes(n_bytes):.1f} MB; uploads are limited to {megabytes(limit):.1f} MB "
                         f"(put larger files under the data root and load them by path)")


def safe_filename(name: str, max_len: int = 80) -> str:
    """`name` without folders, with characters other than letters, digits, '.', '-', '_' replaced by '_'."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "upload"
    return base[-max_len:]


def save_upload(uploads: str | Path, data: bytes, filename: str) -> Path:
    """Store an upload as `<uploads>/<sha256[:12]>/<safe name>` (idempotent) and return its path: the
    file keeps its own name, so messages and run labels lead with it, not with the hash."""
    check_upload_size(len(data))
    target = Path(uploads) / hashlib.sha256(data).hexdigest()[:12] / safe_filename(filename)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return target
