"""Where probes live: `<run_dir>/probes/<key>/` with manifest.json and results.parquet, written as a whole.

The key is 16 hex chars of sha256 over what determines the numbers (the run's key, the rows, the
training settings, PROBE_VERSION). A folder is written through `ches.atomic.atomic_folder`: it appears
complete or not at all, and the first of two probes with the same key wins.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ches.atomic import atomic_folder
from ches.engine.store import read_manifest, read_scores
from ches.review.probe.settings import ProbeSettings, resolved_steps, select_rows

PROBE_VERSION = 1                 # bump when the same settings would give different numbers
RESULT_COLUMNS = ["row", "pair_id", "logp_chosen_before", "logp_chosen_after",
                  "logp_rejected_before", "logp_rejected_after"]


def probe_key(run_dir: Path, rows: Sequence[int], s: ProbeSettings) -> str:
    """16 hex chars over what determines the numbers: run, rows, training settings, autocast dtype, version."""
    run_key = read_manifest(run_dir)["key"]
    canon = json.dumps({"run": run_key, "rows": [int(r) for r in rows], "steps": resolved_steps(len(rows), s),
                        "batch_size": s.batch_size, "lr": s.lr, "beta": s.beta, "optimizer": s.optimizer,
                        "seed": s.seed, "version": PROBE_VERSION}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def probes_dir(run_dir: Path) -> Path:
    """The folder holding a run's probes."""
    return Path(run_dir) / "probes"


def probe_path(run_dir: Path, rows: Sequence[int], s: ProbeSettings) -> Path:
    """Where the probe of `rows` with settings `s` is (or will be) stored."""
    return probes_dir(run_dir) / probe_key(run_dir, rows, s)


def is_complete(probe_dir: Path) -> bool:
    """A probe folder is complete when it has its manifest (folders appear whole, see the module docstring)."""
    return (Path(probe_dir) / "manifest.json").is_file()


def find_probe(run_dir: Path, s: ProbeSettings) -> Path | None:
    """The stored probe for these settings, if one is complete."""
    path = probe_path(run_dir, select_rows(read_scores(run_dir), s), s)
    return path if is_complete(path) else None


def write_probe(target: Path, manifest: dict, results: pd.DataFrame) -> Path:
    """Store a probe at `target` (manifest.json + results.parquet) as a whole; an existing `target` wins."""
    with atomic_folder(target) as tmp:
        results[RESULT_COLUMNS].to_parquet(tmp / "results.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return target


def read_probe(probe_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, results) of a stored probe."""
    probe_dir = Path(probe_dir)
    manifest = json.loads((probe_dir / "manifest.json").read_text(encoding="utf-8"))
    return manifest, pd.read_parquet(probe_dir / "results.parquet")


def list_probes(run_dir: Path) -> list[tuple[Path, dict]]:
    """Complete probes of a run, newest first; unreadable or half-written folders are skipped."""
    return list_folders(probes_dir(run_dir))


def list_folders(root: Path) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every complete folder under `root` (probes, checks), newest first by
    `created_at`; unreadable or half-written folders are skipped."""
    root = Path(root)
    found = []
    if root.is_dir():
        for d in root.iterdir():
            try:
                if not d.name.startswith(".") and is_complete(d):
                    found.append((d, json.loads((d / "manifest.json").read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
    return sorted(found, key=lambda p: p[1].get("created_at", ""), reverse=True)
