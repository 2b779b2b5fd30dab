"""Cached loaders: a run's scores, manifest, texts and pairs, datasets, a model's identity (for a run key; the
model itself is loaded only by jobs), decisions.

A run's reads are cached per run folder and the manifest's mtime (a rewritten run is read again); a run file
that cannot be read (cut short, garbled) is named with the command that mends it, and the page stops there
(the sidebar's counts show none); datasets and
the decisions' TeamView are st.cache_resource (one copy per process: treat them as
read-only); decisions are re-read whenever any process writes the database or this session records one
(DECISIONS_VERSION).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pandas as pd
import streamlit as st

from ches.engine import store
from ches.engine.files import MAX_INPUT_BYTES, load_dataset
from ches.engine.hub import HUB_PREFIX
from ches.engine.metrics import METRICS
from ches.engine.models import ModelIdentity, identify
from ches.engine.pairs import Dataset
from ches.engine.report import dataset_name
from ches.review import decisions as decision_log
from ches.review import agreement, team_rules
from ches.review.team_rules import TeamView
from ches.review.browse import decided_counts, search_rows
from ches.review.export import Rule, select
from ches.review.probe.analysis import short_notice
from ui.render import escape_md
from ui.state import annotator, ws

DECISIONS_VERSION = "_decisions_version"    # session state: bumped by each decision this session records


def _mtime(path: Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


def _run_version(run_dir: str | Path) -> int:
    return _mtime(Path(run_dir) / "manifest.json")


# ------------------------------------------------------------------------------------------ a run

@st.cache_data(max_entries=8, show_spinner=False)
def _scores(run_dir: str, mtime: int) -> pd.DataFrame:
    table = store.read_scores(Path(run_dir))
    return table.assign(pair_id=table["pair_id"].astype(object))


def scores(run_dir: str | Path) -> pd.DataFrame:
    """The run's scores table (cached per run folder and manifest mtime; do not modify it). Its pair ids are
    Python strings (object dtype): every page looks them up in dicts of decisions, 3-5x faster than through
    pandas' Arrow-backed `str` (0.24 s against 0.04 s for one isin at 100k pairs). A damaged file:
    `_stop_damaged`."""
    try:
        return _scores(str(run_dir), _run_version(run_dir))
    except store.DamagedRun as e:
        _stop_damaged(e)


@st.cache_data(max_entries=16, show_spinner=False)
def _short_rule_notice(run_dir: str, metric: str, percent: float, mtime: int) -> str | None:
    kept = select(_scores(run_dir, mtime), Rule(metric=metric, keep_lowest_percent=percent))
    return short_notice(kept.loc[kept["kept"], "len_chosen"],
                        f"the set a rule keeping the lowest {percent:g}% by {METRICS[metric].label} keeps")


def short_rule_notice(run_dir: str | Path, metric: str, percent: float) -> str | None:
    """`short_notice` of what the score rule "keep the lowest `percent`% by `metric`" keeps, decisions aside
    (cached per run, metric and percent: a full select of the table, not redone on every page run)."""
    scores(run_dir)                                   # a damaged run stops here, with its message
    return _short_rule_notice(str(run_dir), metric, percent, _run_version(run_dir))


def _stop_damaged(error: store.DamagedRun) -> NoReturn:
    """Say which file of the run cannot be read and the command that mends it, then stop the page."""
    st.error(f"This run cannot be opened: {escape_md(error.path)} cannot be read: {escape_md(error.why)}. "
             f"Mend it with `{error.command}`, then score its data again on **Data & score** (or score it again "
             "with `ches score`, which notices the damage).", icon=":material/broken_image:")
    st.stop()


@st.cache_resource(max_entries=8, show_spinner=False)
def _pairs_of(run_dir: str, mtime: int) -> tuple[frozenset[str], dict[int, str]]:
    table = _scores(run_dir, mtime)
    return frozenset(table["pair_id"]), dict(zip(table["row"].tolist(), table["pair_id"].tolist()))


def pair_ids(run_dir: str | Path) -> frozenset[str]:
    """The run's pair ids as a set (one shared copy per run version: read-only), for counts that grow with the
    decisions rather than the pairs."""
    return _pairs_of(str(run_dir), _run_version(run_dir))[0]


def pair_of(run_dir: str | Path) -> dict[int, str]:
    """{source row: pair id} of the run (one shared, read-only copy per run version)."""
    return _pairs_of(str(run_dir), _run_version(run_dir))[1]


@st.cache_data(max_entries=16, show_spinner=False)
def _manifest(run_dir: str, mtime: int) -> dict:
    return store.read_manifest(Path(run_dir))


def manifest(run_dir: str | Path) -> dict:
    """The run's manifest (cached like `scores`; a damaged one: `_stop_damaged`)."""
    try:
        return _manifest(str(run_dir), _run_version(run_dir))
    except store.DamagedRun as e:
        _stop_damaged(e)


@st.cache_data(max_entries=64, show_spinner=False)
def _texts(run_dir: str, rows: tuple[int, ...], mtime: int) -> pd.DataFrame:
    return store.read_texts(Path(run_dir), rows=list(rows))


def texts(run_dir: str | Path, rows: Sequence[int]) -> pd.DataFrame:
    """Texts of these source rows only (one Parquet read per distinct set of rows; a damaged file:
    `_stop_damaged`)."""
    try:
        return _texts(str(run_dir), tuple(int(r) for r in rows), _run_version(run_dir))
    except store.DamagedRun as e:
        _stop_damaged(e)


@st.cache_data(max_entries=32, show_spinner="Searching the texts …")
def _search(run_dir: str, query: str, mtime: int) -> set[int]:
    return search_rows(run_dir, query)


def search(run_dir: str | Path, query: str) -> set[int]:
    """Rows whose prompt or responses contain `query` (case-insensitive; cached per query; a damaged texts file:
    `_stop_damaged`)."""
    try:
        return _search(str(run_dir), query, _run_version(run_dir))
    except store.DamagedRun as e:
        _stop_damaged(e)


def run_label(run_dir: str | Path, m: dict | None = None) -> str:
    """Plain-text label for a run, dataset name first: dataset, pairs, model (a model folder by its name),
    max length, dtype, when it was made (to the second) and the run id last: two runs of one file made the
    same minute differ in what differs between them, and pickers match labels, so two never share one."""
    m = m if m is not None else manifest(run_dir)
    key = m.get("key", {})
    model, made = str(key.get("model_id", "?")), str(m.get("created_at", ""))[:19].replace("T", " ")
    return (f"{dataset_name(m.get('source'))} · {m.get('pairs', '?')} pairs · "
            f"{Path(model).name if os.path.isabs(model) else model} · max {key.get('max_length', '?')} · "
            f"{key.get('dtype', '?')} · {made} · {Path(run_dir).name[:8]}")


@st.cache_data(max_entries=32, show_spinner=False)
def _pair(run_dir: str, row: int, mtime: int):
    found = store.read_pairs(Path(run_dir), rows=[row])
    return found[0] if found else None


def pair(run_dir: str | Path, row: int):
    """The Pair record of one source row of a run (None if the run has no such row; a damaged file:
    `_stop_damaged`)."""
    try:
        return _pair(str(run_dir), int(row), _run_version(run_dir))
    except store.DamagedRun as e:
        _stop_damaged(e)


# ------------------------------------------------------------------------------- datasets and model

@st.cache_resource(max_entries=4, show_spinner="Reading the dataset …")
def _dataset_file(path: str, mtime: int, size: int, format: str | None, columns: tuple, max_bytes: int | None) -> Dataset:
    return load_dataset(path, format=format, columns=dict(columns) or None, max_bytes=max_bytes)


def dataset_file(path: str | Path, format: str | None = None, columns: dict[str, str] | None = None, *,
                 max_bytes: int | None = MAX_INPUT_BYTES) -> Dataset:
    """A local dataset file, loaded once per (path, mtime, size, format, column mapping), refused once it
    passes `max_bytes` decompressed (uploads: workspace.MAX_UPLOAD_BYTES). Treat it as read-only."""
    p = Path(path)
    try:
        st_ = p.stat()
        mtime, size = st_.st_mtime_ns, st_.st_size
    except OSError:
        mtime = size = 0
    return _dataset_file(str(p), mtime, size, format, tuple(sorted((columns or {}).items())), max_bytes)


@st.cache_resource(max_entries=2, show_spinner="Downloading the dataset from the Hugging Face Hub …")
def dataset_hub(name: str, config: str | None, split: str, format: str | None) -> Dataset:
    """A Hugging Face Hub dataset, loaded once per (name, config, split, format): the Hub only, `name` is never
    read as a path on the server."""
    return load_dataset(HUB_PREFIX + name, config=config or None, split=split or "train", format=format)


def model_identity(spec: str, dtype: str = "auto") -> ModelIdentity:
    """What the run key needs of the model (its id, weights' fingerprint, tokenizer, dtype), read from its
    files without loading it (models.identify; not cached here: a changed weight file changes the key)."""
    return identify(spec, dtype=dtype)


# ------------------------------------------------------------------------------------------ decisions

def _db_version(db_path: str) -> tuple:
    """Changes whenever any process writes the database (WAL mode: the -wal file changes)."""
    out = []
    for suffix in ("", "-wal"):
        try:
            s = os.stat(db_path + suffix)
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_resource(max_entries=8, show_spinner=False)
def _team(db_path: str, file_version: tuple, session_version: int) -> TeamView:
    return TeamView.read(db_path)


def team() -> TeamView:
    """Everyone's decisions side by side (ches.review.team_rules.TeamView): each annotator's own, the
    adjudications, the latest of anyone. Re-read whenever the database changes; one shared copy (a page
    calls this several times per run: no unpickled copy each time), so treat it as read-only."""
    db = str(ws().decisions)
    return _team(db, _db_version(db), st.session_state.get(DECISIONS_VERSION, 0))


@st.cache_data(max_entries=8, show_spinner=False)
def _team_counts(run_dir: str, run_version: int, db_path: str, file_version: tuple, session_version: int) -> dict:
    return team_rules.team_counts(pair_ids(run_dir), team())


def team_counts(run_dir: str | Path) -> dict[str, int]:
    """{team status: pairs} over the run (ches.review.team_rules.team_counts), cached per run and database
    version: the sidebar shows it on every page and after every press."""
    db = str(ws().decisions)
    try:
        return _team_counts(str(run_dir), _run_version(run_dir), db, _db_version(db),
                            st.session_state.get(DECISIONS_VERSION, 0))
    except store.DamagedRun:                        # the page says so (scores)
        return {}


@st.cache_data(max_entries=4, show_spinner=False)
def _agreement(run_dir: str, run_version: int, db_path: str, file_version: tuple, session_version: int) -> dict:
    pair_ids, view = scores(run_dir)["pair_id"], team()
    return {"alpha": agreement.alpha(view, pair_ids), "kappas": agreement.kappa_table(view, pair_ids),
            "conflicts": agreement.conflicts(view, pair_ids)}


def team_agreement(run_dir: str | Path) -> dict:
    """The Team page's statistics over the run: {"alpha": Krippendorff's alpha, "kappas": kappa_table,
    "conflicts": conflicts} (ches.review.agreement), cached per run and database version (about 4 s at 100k
    pairs, paid again only after a decision)."""
    db = str(ws().decisions)
    return _agreement(str(run_dir), _run_version(run_dir), db, _db_version(db),
                      st.session_state.get(DECISIONS_VERSION, 0))


@st.cache_data(max_entries=16, show_spinner=False)
def _my_counts(run_dir: str, run_version: int, annotator: str, db_path: str, file_version: tuple,
               session_version: int) -> dict[str, int]:
    return decided_counts(pair_ids(run_dir), team().mine(annotator))


def my_counts(run_dir: str | Path) -> dict[str, int]:
    """{'keep': n, 'drop': n, 'flag': n}: this session's annotator's decisions on the run's pairs ({} without a
    name), cached per run, annotator and database version (the sidebar and Browse both show it after a press)."""
    me, db = annotator(), str(ws().decisions)
    if not me:
        return {}
    try:
        return _my_counts(str(run_dir), _run_version(run_dir), me, db, _db_version(db),
                          st.session_state.get(DECISIONS_VERSION, 0))
    except store.DamagedRun:                        # the page says so (scores)
        return {}


@st.cache_data(max_entries=8, show_spinner=False)
def _overridden(adjudicator: str, db_path: str, file_version: tuple, session_version: int) -> dict:
    return team_rules.overridden(decision_log.history(db_path), team().adjudicated, adjudicator)


def overridden() -> dict[str, tuple[decision_log.Event, decision_log.Decision]]:
    """team_rules.overridden for this session's annotator: their settlements another adjudicator has since
    changed ({} without a name). Reads the whole log: cached per database version."""
    me, db = annotator(), str(ws().decisions)
    if not me or not team().adjudicated:
        return {}
    return _overridden(me, db, _db_version(db), st.session_state.get(DECISIONS_VERSION, 0))


def mine() -> dict[str, decision_log.Decision]:
    """{pair_id: Decision}: this session's annotator's own decisions in force ({} until they give a name): what
    "decided", "undecided" and the decision colours mean on every page (Browse, Pair / tokens, the Map)."""
    me = annotator()
    return team().mine(me) if me else {}
