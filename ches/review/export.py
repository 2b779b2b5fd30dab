"""Curate a scored run: choose which pairs to keep, preview the effect, write the subset + a manifest.

A pair's fate, in order of precedence (the `reason` column of `select`):

1. the team's decision 'keep'      -> kept     ("decision:keep"), whatever its flags or score
2. the team's decision 'drop'      -> dropped  ("decision:drop")
3. a flag listed in `Rule.drop_flags` -> dropped ("flag:<name>", the first listed flag it carries)
4. the score rule                  -> kept or dropped ("rule"); a 'flag' decision lands here too

The team's decision on a pair comes from everyone's decisions (an `agreement.TeamView`) by the team rule
`Rule.team` (agreement.TEAM_RULES: latest of anyone, the default; majority; unanimous_keep; any_drop;
adjudicated); an adjudication wins under every rule. `only(view, annotator)` applies one person's instead; a
plain mapping {pair_id: decision} is applied as given. The manifest's `team` says how the team decided.

The score rule (docs/CHES.md: higher = more similar = more likely displacement, so curation keeps the
LOWEST scores) is one of
- keep_lowest_percent X: the floor(n * X / 100) pairs with the lowest metric, ranked over ALL n pairs
  of the run (so one pair's outcome never depends on other pairs' decisions or flags); ties are broken
  by dataset order (the earlier row is kept); NaN scores rank last.
- threshold t (when set, it replaces the percent rule): pairs with metric <= t.

The paper (Razin et al. 2025, Sec. 6) trains on the 5% of pairs with the LOWEST LN-CHES
(keep_lowest_percent=5; up to 15% gave the same effect). The default here, 95, is the gentler
curation "drop the riskiest 5%"; pass 5 to follow the paper exactly.

Export formats
- "input": each kept pair's source record exactly as read (Pair.record), one JSON object per line.
  CSV and Parquet sources are written as JSON Lines too (CSV cells holding message lists were already
  parsed into lists when loading; every other CSV cell stays a string).
- "trl": `ches.engine.pairs.to_trl(pair)`, TRL's conversational form.
Either file re-loads with `ches.engine.files.load_dataset` to exactly the kept pairs' pair_ids, in dataset order
(for an "input" export of a source loaded with an explicit `format=`, pass the same format again; the
manifest records it as `reload_format`).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ches.version import __version__
from ches.atomic import atomic_open, atomic_write_text
from ches.engine.pairs import FLAGS, Pair, to_trl
from ches.engine.metrics import METRICS
from ches.engine.store import read_manifest, read_scores, read_texts
from ches.review import agreement, team_rules
from ches.review.team_rules import DEFAULT_TEAM_RULE, TEAM_RULES, TeamView
from ches.review.decisions import DECISION_VALUES, DROP, KEEP
from ches.review.probe.storage import citation
from ches.workspace import confine

DEFAULT_DROP_FLAGS = ("identical", "empty_chosen", "empty_rejected")
EXPORT_FORMATS = ("input", "trl")
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


class ExportError(ValueError):
    """A user error in a curation rule or an export request (printed as one line)."""


class ExportExists(ExportError):
    """The export file is already there and overwriting it was not asked for."""


@dataclass(frozen=True)
class Rule:
    """Which pairs the score rule keeps (see the module docstring for the precedence and the paper's choice)."""
    metric: str = "ln_ches"                        # a column of the scores table (ches.engine.metrics.METRICS)
    keep_lowest_percent: float = 95.0              # keep this % of all pairs, lowest scores first
    threshold: float | None = None                 # when set: keep metric <= threshold (replaces the %)
    drop_flags: tuple[str, ...] = field(default=DEFAULT_DROP_FLAGS)  # pairs carrying any of these go
    team: str = DEFAULT_TEAM_RULE                  # several annotators' decisions -> one (agreement.TEAM_RULES)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ExportError(f"unknown metric {self.metric!r}; valid metrics: {', '.join(METRICS)}")
        p = self.keep_lowest_percent
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
            raise ExportError(f"keep_lowest_percent must be a number from 0 to 100, got {p!r}")
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t)):
            raise ExportError(f"threshold must be a number, got {t!r}")
        object.__setattr__(self, "drop_flags", tuple(self.drop_flags))
        unknown = [f for f in self.drop_flags if f not in FLAGS]
        if unknown:
            raise ExportError(f"unknown flag(s) {', '.join(map(repr, unknown))}; valid flags: {', '.join(FLAGS)}")
        if self.team not in TEAM_RULES:
            raise ExportError(f"unknown team rule {self.team!r}; valid team rules: {', '.join(TEAM_RULES)}")

    @property
    def mode(self) -> str:
        return "lowest_percent" if self.threshold is None else "threshold"

    def describe(self) -> str:
        keep = (f"lowest {self.keep_lowest_percent:g}%" if self.threshold is None
                else f"{self.metric} <= {self.threshold:g}")
        flags = ", ".join(self.drop_flags) or "none"
        return f"keep {keep} by {self.metric}; drop flags: {flags}; team rule: {self.team}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop_flags": list(self.drop_flags), "mode": self.mode}


def score_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's `as_dict` without its team rule: what a curation check depends on besides the decisions in
    force (which it records as a digest), so a check is cited whichever team rule gave those decisions."""
    return {k: v for k, v in rule.items() if k != "team"}


# ------------------------------------------------------------------------------------ selection

Decisions = Mapping[str, Any] | TeamView | None


def only(view: TeamView, annotator: str, rule: Rule | None = None) -> TeamView:
    """`annotator`'s own decisions as a team of one (no adjudications): "apply only my decisions".
    ExportError with a team rule other than 'latest' (it combines several people's decisions)."""
    if rule is not None and rule.team != DEFAULT_TEAM_RULE:
        raise ExportError(f"the team rule {rule.team!r} combines several annotators' decisions; applying only "
                          f"{annotator!r}'s takes the team rule {DEFAULT_TEAM_RULE!r}: give one or the other")
    mine = dict(view.mine(annotator))
    return TeamView({annotator: mine} if mine else {}, {}, mine)


def applied(decisions: Decisions, rule: Rule) -> dict[str, str]:
    """{pair_id: 'keep' / 'drop' / 'flag'}: a TeamView resolved by `rule.team` (agreement.resolve), or a
    mapping's values as given (Decisions or plain strings); ExportError for a non-empty mapping under a
    team rule other than 'latest', which needs everyone's decisions."""
    if decisions is None:
        return {}
    if isinstance(decisions, TeamView):
        return team_rules.resolve(decisions, rule.team)
    if decisions and rule.team != DEFAULT_TEAM_RULE:
        raise ExportError(f"the team rule {rule.team!r} needs every annotator's decisions (an agreement.TeamView), "
                          "not one decision per pair")
    return {pid: _decision_of(d) for pid, d in decisions.items()}


def _decision_of(d: Any) -> str:
    value = getattr(d, "decision", d)           # a decisions.Decision or a plain string
    if value not in DECISION_VALUES:
        raise ExportError(f"decision must be one of {', '.join(DECISION_VALUES)}; got {value!r}")
    return value


def _has_flag(flags: pd.Series, flag: str) -> np.ndarray:
    return ("," + flags.fillna("").astype(str) + ",").str.contains(f",{flag},", regex=False).to_numpy()


def _rule_keeps(values: pd.Series, rule: Rule) -> np.ndarray:
    """The score rule alone over all pairs: (n,) bool."""
    v = values.to_numpy(dtype=np.float64)        # (n,)
    if rule.threshold is not None:
        return v <= rule.threshold                 # NaN compares False: dropped
    n = len(v)
    k = math.floor(n * rule.keep_lowest_percent / 100 + 1e-9)
    order = np.argsort(np.where(np.isnan(v), np.inf, v), kind="stable")  # ties: dataset order; NaN last
    keep = np.zeros(n, dtype=bool)
    keep[order[:k]] = True
    return keep


def select(table: pd.DataFrame, rule: Rule, decisions: Decisions = None) -> pd.DataFrame:
    """A copy of the scores table with `decision` (the team's, `applied`; '' when none), `rule_kept` (rule +
    flags alone), `kept` (the final outcome) and `reason` ("rule", "decision:keep", "decision:drop", "flag:<name>")."""
    missing = [c for c in ("row", "pair_id", "flags", rule.metric) if c not in table.columns]
    if missing:
        raise ExportError(f"the scores table has no column(s) {', '.join(missing)}")
    out = table.copy()
    decided = applied(decisions, rule)
    decision = pd.Series([decided.get(pid, "") for pid in out["pair_id"]], index=out.index, dtype=str)
    n = len(out)
    reason = np.full(n, "rule", dtype=object)
    flagged = np.zeros(n, dtype=bool)
    for flag in reversed(rule.drop_flags):        # the first listed flag wins the reason
        has = _has_flag(out["flags"], flag)
        reason[has] = f"flag:{flag}"
        flagged |= has
    rule_kept = _rule_keeps(out[rule.metric], rule) & ~flagged
    is_keep, is_drop = (decision == KEEP).to_numpy(), (decision == DROP).to_numpy()
    reason[is_keep] = f"decision:{KEEP}"
    reason[is_drop] = f"decision:{DROP}"
    out["decision"] = decision
    out["rule_kept"] = rule_kept
    out["kept"] = (rule_kept | is_keep) & ~is_drop
    out["reason"] = reason.astype(str)
    return out


def _quantiles(values: pd.Series) -> dict[str, float | None]:
    v = values.to_numpy(dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return {f"q{round(q * 100)}": None for q in QUANTILES}
    return {f"q{round(q * 100)}": float(x) for q, x in zip(QUANTILES, np.quantile(v, QUANTILES))}


def preview(table: pd.DataFrame, rule: Rule, decisions: Decisions = None) -> dict[str, Any]:
    """What `export` would do, as plain JSON-ready numbers: counts before/after, removals by reason,
    flags removed, decision counts (over this run's pairs), pairs whose outcome a decision changed,
    and quantiles of the metric and of the response lengths before and after."""
    sel = select(table, rule, decisions)
    kept = sel[sel["kept"]]
    columns = [rule.metric] + [c for c in ("len_chosen", "len_rejected") if c in sel.columns]
    flags_removed = sel.loc[~sel["kept"] & sel["reason"].str.startswith("flag:"), "reason"]
    overridden = ((sel["decision"] == KEEP) & ~sel["rule_kept"]) | ((sel["decision"] == DROP) & sel["rule_kept"])
    kept_rule = sel.loc[(sel["reason"] == "rule") & sel["kept"], rule.metric]
    return {
        "metric": rule.metric,
        "rule": rule.as_dict(),
        "before": int(len(sel)),
        "after": int(len(kept)),
        "dropped": int(len(sel) - len(kept)),
        "kept_by_reason": {k: int(v) for k, v in sel.loc[sel["kept"], "reason"].value_counts().items()},
        "dropped_by_reason": {k: int(v) for k, v in sel.loc[~sel["kept"], "reason"].value_counts().items()},
        "flags_removed": {k.removeprefix("flag:"): int(v) for k, v in flags_removed.value_counts().items()},
        "decisions": {d: int((sel["decision"] == d).sum()) for d in DECISION_VALUES},
        "overridden": int(overridden.sum()),
        "cutoff": None if kept_rule.dropna().empty else float(kept_rule.max()),  # highest score the rule kept
        "quantiles": {"before": {c: _quantiles(sel[c]) for c in columns},
                      "after": {c: _quantiles(kept[c]) for c in columns}},
    }


SETTLED_BY = ("adjudication", "team rule", "score rule")


def team_report(decisions: Decisions, rule: Rule, sel: pd.DataFrame) -> dict[str, Any]:
    """How the team decided, for a manifest: the team rule and its description; with a TeamView also
    `agreement.summary` over the run's pairs (decisions by annotator, conflicts, adjudications, kappa, alpha),
    `settled_by` (conflicts counted by what settled them for this export: an adjudication, the team rule, or
    nothing, so the score rule) and `conflict_pairs` (each conflict's row, decisions, what settled it, the
    decision applied and whether the pair is kept). `sel` is `select`'s table."""
    out: dict[str, Any] = {"rule": rule.team, "description": TEAM_RULES[rule.team]}
    if not isinstance(decisions, TeamView):
        return out
    first = sel.drop_duplicates("pair_id")
    info = dict(zip(first["pair_id"], zip(first["row"].astype(int), first["decision"].astype(str), first["kept"])))
    pids, pairs = set(info), []
    for c in agreement.conflicts(decisions, pids).itertuples(index=False):
        row, value, kept = info[c.pair_id]
        how = SETTLED_BY[0] if c.status == team_rules.SETTLED else SETTLED_BY[1] if value else SETTLED_BY[2]
        pairs.append({"pair_id": c.pair_id, "row": int(row), "decisions": c.decisions, "settled_by": how,
                      "by": c.by, "decision": value, "kept": bool(kept)})
    return {**out, **agreement.summary(decisions, pids),
            "settled_by": {k: sum(p["settled_by"] == k for p in pairs) for k in SETTLED_BY}, "conflict_pairs": pairs}


# ------------------------------------------------------------------------------------ export

def json_line(obj: Any) -> str:
    """One JSON Lines line, \\u-escaped only when it holds text UTF-8 cannot encode (a lone surrogate, which
    the run store keeps the same way): json.loads reads either spelling back to the same record."""
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj) + "\n"
    return line


def manifest_path(out_path: str | Path) -> Path:
    """`<folder>/<stem>.manifest.json` beside the export file."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.manifest.json")


_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_export_name(dataset: str, rule: Rule, when: datetime) -> str:
    """The dataset's name, the rule and the time, e.g. 'orca_validation-ln_ches-keep95-20260127-141502'
    or '...-le0.12-...' (no suffix): a new name for every export."""
    part = f"keep{rule.keep_lowest_percent:g}" if rule.threshold is None else f"le{rule.threshold:g}"
    part += "" if rule.team == DEFAULT_TEAM_RULE else f"-{rule.team}"
    return _NAME.sub("_", f"{dataset}-{rule.metric}-{part}-{when:%Y%m%d-%H%M%S}")


def export_path(exports_dir: str | Path, name: str) -> Path:
    """The export file for a user-typed `name`, confined to `exports_dir` (PathError outside it);
    '.jsonl' is appended unless the name already ends in .jsonl or .ndjson."""
    name = str(name).strip()
    if not name:
        raise ExportError("the export name is empty")
    if not name.lower().endswith((".jsonl", ".ndjson")):
        name += ".jsonl"
    path = confine(exports_dir, name)
    if path.name.startswith(".") or path.name.lower() in (".jsonl", ".ndjson"):
        raise ExportError(f"{name!r} is not a usable file name")
    return path


def _read_pairs(run_dir: Path, rows: list[int]) -> list[Pair]:
    """The given rows' pairs in dataset order. (Not store.read_pairs: under pandas 3 a string column
    with some nulls reads back NaN, which its json.loads of `rejected_prompt` chokes on.)"""
    load = lambda s: None if s is None or pd.isna(s) else tuple(json.loads(s))  # noqa: E731
    t = read_texts(run_dir, rows).sort_values("row")
    return [Pair(int(r.row), load(r.prompt), r.chosen, r.rejected, load(r.rejected_prompt), (),
                 json.loads(r.record), r.pair_id) for r in t.itertuples(index=False)]


def curated(run_dir: str | Path, rule: Rule, decisions: Decisions, *, fmt: str = "input",
            annotator: str | None = None) -> tuple[list[Pair], dict[str, Any]]:
    """The kept pairs of `run_dir` in dataset order (`as_row(pair, fmt)` gives what is written) and the
    curation's manifest: run, model and weights fingerprint, rule, decisions applied, how the team decided
    (`team_report`), counts, score quantiles (`export` adds the file's name, size and sha256).
    `annotator`: with a TeamView, apply only that person's decisions (`only`); with a mapping it only
    records whose they were. None: the team's, by `rule.team`."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORT_FORMATS)}")
    if annotator and isinstance(decisions, TeamView):
        decisions = only(decisions, annotator, rule)
    run_dir = Path(run_dir)
    run = read_manifest(run_dir)
    table = read_scores(run_dir)
    sel = select(table, rule, decisions)
    summary = preview(table, rule, decisions)
    kept_rows = sel.loc[sel["kept"], "row"].astype(int).tolist()
    pairs = _read_pairs(run_dir, kept_rows) if kept_rows else []
    key = run.get("key", {})
    manifest = {
        "kind": "ches-export",
        "app_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": fmt,
        "reload_format": run.get("format") if fmt == "input" else None,  # None: auto-detect
        "run": run.get("run", run_dir.name),
        "model_id": key.get("model_id"),
        "fingerprint": key.get("fingerprint"),
        "template": key.get("template"),
        "max_length": key.get("max_length"),
        "dtype": key.get("dtype"),
        "dataset_hash": key.get("dataset_hash"),
        "source": run.get("source"),
        "source_format": run.get("format"),
        "source_subset": run.get("subset"),          # {limit, records_read, source_records}: what part was scored
        "rows_skipped": run.get("rows_skipped", []),  # [{row, reason}]: unreadable rows, ties, template rejections
        "metric": rule.metric,
        "rule": rule.as_dict(),
        "cutoff": summary["cutoff"],
        "counts": {
            "pairs": summary["before"], "kept": len(pairs), "dropped": summary["before"] - len(pairs),
            "kept_by_reason": summary["kept_by_reason"], "dropped_by_reason": summary["dropped_by_reason"],
            "flags_removed": summary["flags_removed"], "overridden_by_decisions": summary["overridden"],
        },
        "decisions": summary["decisions"],
        "decisions_annotator": annotator,
        "team": team_report(decisions, rule, sel),
        "quantiles": summary["quantiles"],
    }
    manifest["curation_check"] = citation(run_dir, rule.as_dict(), sel)   # the latest check of this rule, or None
    return pairs, manifest


def as_row(pair: Pair, fmt: str) -> dict[str, Any]:
    """What an export writes for a pair: its source record ("input") or TRL's conversational form ("trl")."""
    return pair.record if fmt == "input" else to_trl(pair)


def export(run_dir: str | Path, rule: Rule, decisions: Decisions, out_path: str | Path, *,
           fmt: str = "input", annotator: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the kept pairs of `run_dir` to `out_path` (JSON Lines) and its manifest beside it.

    An existing `out_path` is replaced only with overwrite=True (else ExportExists, nothing written).
    Both files are written atomically (temp file + rename): a failure leaves any previous files intact.
    The JSONL is written first; the manifest carries its sha256, so a stale pairing is detectable.
    `decisions` and `annotator` as in `curated`. Returns the manifest.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORT_FORMATS)}")
    out = Path(out_path)
    if not out.name.lower().endswith((".jsonl", ".ndjson")):
        raise ExportError(f"{out}: the export file name must end in .jsonl or .ndjson")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such folder")
    if out.exists() and not overwrite:
        raise ExportExists(f"{out} already exists: choose another name, or overwrite it (ches export --force)")
    pairs, curation = curated(run_dir, rule, decisions, fmt=fmt, annotator=annotator)
    digest, size = hashlib.sha256(), 0
    with atomic_open(out, "w", newline="\n") as f:
        for p in pairs:
            line = json_line(as_row(p, fmt))
            data = line.encode("utf-8")
            digest.update(data)
            size += len(data)
            f.write(line)
    first = ("kind", "app_version", "created_at")
    manifest = {**{k: curation[k] for k in first}, "file": out.name, "sha256": digest.hexdigest(), "bytes": size,
                **curation}
    atomic_write_text(manifest_path(out), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
