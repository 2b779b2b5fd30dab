"""Where probes live: `<run_dir>/probes/<key>/` with manifest.json and results.parquet, written as a whole.

The key is 16 hex chars of sha256 over what determines the numbers (the run's key, the rows, the
training settings, PROBE_VERSION). A folder is written through `ches.atomic.atomic_folder`: it appears
complete or not at all, and the first of two probes with the same key wins.

The curation checks (`ches.review.probe.check`) live beside them in `<run_dir>/checks/<key>/`; what an
export manifest cites of them (`citation`) is read here, so that `ches.review.export` reads stored checks
without importing the check (which imports the export's Rule and select).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ches.atomic import atomic_folder
from ches.engine.store import read_manifest, read_scores
from ches.review.probe.settings import ProbeSettings, resolved_steps, select_rows

PROBE_VERSION = 2                 # bump when the same settings would give different numbers or files
# len_chosen = |y+| as trained: the response's content tokens + EOS (version 2 on; older probes lack it)
RESULT_COLUMNS = ["row", "pair_id", "len_chosen", "logp_chosen_before", "logp_chosen_after",
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


# ------------------------------------------------------------------------------------ curation checks

CHECK_VERSION = 2                 # the stored check's shape: 2 = several arms, |y+|, per token, behaviour


def checks_dir(run_dir: Path) -> Path:
    """The folder holding a run's curation checks."""
    return Path(run_dir) / "checks"


def list_checks(run_dir: Path) -> list[tuple[Path, dict]]:
    """Complete checks of a run (any version), newest first."""
    return list_folders(checks_dir(run_dir))


def decisions_digest(sel: pd.DataFrame) -> str:
    """16 hex chars over the decisions in force for the run's pairs (`select`'s `decision` column)."""
    decided = sorted((str(p), str(d)) for p, d in zip(sel["pair_id"], sel["decision"]) if d)
    return hashlib.sha256(json.dumps(decided).encode()).hexdigest()[:16]


def rule_identity(rule: Mapping[str, Any]) -> dict[str, Any]:
    """What a check's result depends on in a rule's `as_dict` (its team rule aside: the decisions it gave are
    recorded as a digest): metric, percent and threshold as floats, the drop flags as a list."""
    r = {k: v for k, v in rule.items() if k != "team"}
    if r.get("keep_lowest_percent") is not None:
        r["keep_lowest_percent"] = float(r["keep_lowest_percent"])
    if r.get("threshold") is not None:
        r["threshold"] = float(r["threshold"])
    if "drop_flags" in r:
        r["drop_flags"] = list(r["drop_flags"])
    return r


def citation(run_dir: Path, rule: Any, sel: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """What an export manifest cites: the latest stored check that trained an arm on `rule` (a Rule, or its
    `as_dict`), or None. Its key, folder, arm, verdict (as stored), the arm's and the check's statistics,
    and `same_decisions` (whether it applied the decisions `sel`, the export's `select` table, applies).
    A check stored by an older version (check_version < CHECK_VERSION) is cited with `outdated` True."""
    want = rule_identity(rule.as_dict() if hasattr(rule, "as_dict") else rule)
    for _, m in list_checks(run_dir):
        arms = m.get("arms") or [{"name": "curated", "rule": m.get("rule") or {},
                                  "decisions_digest": m.get("decisions_digest")}]        # version 1: one rule
        for arm in arms:
            if arm.get("rule") is not None and rule_identity(arm["rule"]) == want:
                stats = m.get("stats") or {}
                return {"key": m.get("key"), "created_at": m.get("created_at", ""), "folder": f"checks/{m.get('key')}",
                        "check_version": m.get("check_version", 1),
                        "outdated": m.get("check_version", 1) < CHECK_VERSION, "arm": arm["name"],
                        "verdict": m.get("verdict", ""), "settings": m.get("settings"),
                        "arm_stats": (stats.get("arms") or {}).get(arm["name"]),
                        "stats": {k: v for k, v in stats.items() if not k.startswith("per_seed")},
                        "same_decisions": None if sel is None else arm.get("decisions_digest") == decisions_digest(sel)}
    return None
