"""What every page shares: cached loaders, session-state helpers, safe text rendering, the sidebar.

Session state (the keys other pages read and write):
    run_dir     str        the active run (a complete run folder)
    annotator   str        who records decisions (sidebar text box; empty until the person gives a name)
    focus_rows  list[int]  source rows chosen elsewhere (e.g. a lasso on the map); Browse shows only those
    pair_row    int        the open pair's source row (Browse, Pair / tokens, the star on the Map)

The run, the open row and the annotator also live in the URL (?run=<run id>&row=<n>&annotator=<name>,
see `sync_url`), so a reload, a bookmark or a shared link lands on the same pair.

Dataset text is never rendered as HTML or Markdown: `show_text` (st.text) everywhere, `escape_md` for
the few Markdown strings (errors, captions) that can contain user text.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from ches.engine import jobs, store
from ches.review import decisions as decision_log
from ches.review.browse import METRIC_LABELS, decision_status, search_rows
from ches.engine.data import MAX_INPUT_BYTES, DataError, Dataset, load_dataset
from ches.engine.models import LoadedModel, ModelError, load_model
from ches.engine.pipeline import pair_tokens
from ches.engine.report import dataset_name
from ches.workspace import PathError, Workspace, confine, workspace

RUN_DIR, ANNOTATOR, FOCUS_ROWS, PAIR_ROW = "run_dir", "annotator", "focus_rows", "pair_row"
USER_ERRORS = (DataError, ModelError, PathError, ValueError, OSError)
DECISIONS_VERSION = "_decisions_version"
_FLASH = "_flash"
_ROLE_AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:", "system": ":material/settings:"}
_URL_ADOPTED = "_url_adopted"
NOTE = "note"
# One colour per meaning on every page: green = the chosen side, orange = the rejected side,
# red / blue = raises / lowers the score.
CHOSEN, REJECTED = ":green[Chosen (y+)]", ":orange[Rejected (y-)]"


# ------------------------------------------------------------------------------ workspace and runs

def ws() -> Workspace:
    """The workspace ($CHES_WORKSPACE), folders created on first use."""
    return workspace()


def active_run() -> Path | None:
    """The run in st.session_state["run_dir"], if it is set, exists and is complete; else None."""
    value = st.session_state.get(RUN_DIR)
    if not value:
        return None
    path = Path(str(value))
    try:
        complete = store.is_complete(path) and (path / "scores.parquet").is_file()
    except OSError:
        complete = False
    return path if complete else None


def set_run(run_dir: str | Path) -> None:
    """Make `run_dir` the active run; selections made on another run no longer apply."""
    if str(run_dir) != st.session_state.get(RUN_DIR):
        for key in (FOCUS_ROWS, PAIR_ROW):                 # rows of another run mean other pairs
            st.session_state.pop(key, None)
    st.session_state[RUN_DIR] = str(run_dir)


def clear_run() -> None:
    """No active run any more (it was deleted): nothing of it stays selected."""
    for key in (RUN_DIR, FOCUS_ROWS, PAIR_ROW, "_run_pick"):
        st.session_state.pop(key, None)


def require_run() -> Path:
    """The active run, or an empty state pointing to Data & score (and the page stops)."""
    run = active_run()
    if run is None:
        st.info("No run yet — score a dataset on **Data & score**, or pick a stored run in the sidebar.",
                icon=":material/info:")
        st.page_link("pages/score.py", label="Go to Data & score", icon=":material/database:")
        st.stop()
    return run


def _mtime(path: Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=8, show_spinner=False)
def _scores(run_dir: str, mtime: int) -> pd.DataFrame:
    return store.read_scores(Path(run_dir))


def scores(run_dir: str | Path) -> pd.DataFrame:
    """The run's scores table (cached per run folder and manifest mtime; do not modify it)."""
    return _scores(str(run_dir), _mtime(Path(run_dir) / "manifest.json"))


@st.cache_data(max_entries=16, show_spinner=False)
def _manifest(run_dir: str, mtime: int) -> dict:
    return store.read_manifest(Path(run_dir))


def manifest(run_dir: str | Path) -> dict:
    """The run's manifest (cached like `scores`)."""
    return _manifest(str(run_dir), _mtime(Path(run_dir) / "manifest.json"))


@st.cache_data(max_entries=64, show_spinner=False)
def _texts(run_dir: str, rows: tuple[int, ...], mtime: int) -> pd.DataFrame:
    return store.read_texts(Path(run_dir), rows=list(rows))


def texts(run_dir: str | Path, rows: Sequence[int]) -> pd.DataFrame:
    """Texts of these source rows only (one Parquet read per distinct set of rows)."""
    return _texts(str(run_dir), tuple(int(r) for r in rows), _mtime(Path(run_dir) / "manifest.json"))


@st.cache_data(max_entries=32, show_spinner="Searching the texts …")
def _search(run_dir: str, query: str, mtime: int) -> set[int]:
    return search_rows(run_dir, query)


def search(run_dir: str | Path, query: str) -> set[int]:
    """Rows whose prompt or responses contain `query` (case-insensitive; cached per query)."""
    return _search(str(run_dir), query, _mtime(Path(run_dir) / "manifest.json"))


def run_label(run_dir: str | Path, m: dict | None = None) -> str:
    """Plain-text label for a run, dataset name first: dataset, pairs, model, max length, date, and the
    run id last (pickers match labels, so two runs must never share one)."""
    m = m if m is not None else manifest(run_dir)
    key = m.get("key", {})
    return (f"{dataset_name(m.get('source'))} · {m.get('pairs', '?')} pairs · {key.get('model_id', '?')} · "
            f"max {key.get('max_length', '?')} · {str(m.get('created_at', ''))[:16].replace('T', ' ')} · "
            f"{Path(run_dir).name[:8]}")


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
    """A Hugging Face Hub dataset, loaded once per (name, config, split, format)."""
    return load_dataset(name, config=config or None, split=split or "train", format=format)


@st.cache_resource(max_entries=2, show_spinner=False)
def model(spec: str, dtype: str = "auto") -> LoadedModel:
    """The language model, loaded once per process per (spec, dtype)."""
    return load_model(spec, dtype=dtype)


@st.cache_data(max_entries=32, show_spinner=False)
def _pair(run_dir: str, row: int, mtime: int):
    found = store.read_pairs(Path(run_dir), rows=[row])
    return found[0] if found else None


def pair(run_dir: str | Path, row: int):
    """The Pair record of one source row of a run (None if the run has no such row)."""
    return _pair(str(run_dir), int(row), _mtime(Path(run_dir) / "manifest.json"))


@st.cache_data(max_entries=16, show_spinner=False)
def _pair_tokens(run_dir: str, row: int, metric: str, max_length: int, model_key: tuple, _lm: LoadedModel) -> dict:
    return pair_tokens(_lm, pair(run_dir, row), max_length, metric=metric)


def token_view(run_dir: str | Path, row: int, metric: str, lm: LoadedModel) -> dict:
    """`pipeline.pair_tokens` for one row of a run (its max length), cached per (run, row, metric, model)."""
    max_length = int(manifest(run_dir)["key"]["max_length"])
    return _pair_tokens(str(run_dir), int(row), metric, max_length, (lm.model_id, lm.fingerprint, str(lm.dtype)), lm)


# ------------------------------------------------------------------------------------- decisions

def annotator() -> str:
    """The annotator's name (sidebar or URL), "" until one is given: no decision is recorded without it."""
    return str(st.session_state.get(ANNOTATOR) or "").strip()[:100]


def _take_name() -> None:
    st.session_state[ANNOTATOR] = str(st.session_state.get("_name_prompt") or "").strip()[:100]


def require_annotator() -> str:
    """The annotator's name; without one, a box asking for it (the decision buttons stay disabled)."""
    name = annotator()
    if not name:
        st.text_input("Your name, to record decisions", key="_name_prompt", on_change=_take_name,
                      placeholder="Type your name and press Enter: it is saved with every decision",
                      icon=":material/person:")
    return name


def session_id() -> str:
    """A random id for this browser session, stored with every decision event."""
    return st.session_state.setdefault("_session_id", uuid.uuid4().hex[:12])


@st.cache_data(max_entries=4, show_spinner=False)
def _decisions(db_path: str, file_version: tuple, session_version: int) -> dict:
    return decision_log.current(db_path)


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


def decisions(db_path: str | Path | None = None) -> dict[str, decision_log.Decision]:
    """{pair_id: Decision} in force (latest across annotators); re-read after every write."""
    db = str(db_path or ws().decisions)
    return _decisions(db, _db_version(db), st.session_state.get(DECISIONS_VERSION, 0))


def _bump() -> None:
    st.session_state[DECISIONS_VERSION] = st.session_state.get(DECISIONS_VERSION, 0) + 1


def record_decision(pair_id: str, decision: str, note: str = "") -> int:
    """Record this annotator's decision (committed before returning); the event id."""
    event = decision_log.record(ws().decisions, pair_id, decision, annotator=annotator(), note=note,
                               session=session_id())
    _bump()
    return event


def record_bulk(pair_ids: Sequence[str], decision: str) -> int:
    """Record one decision on many pairs as one action (one transaction, one undo); how many pairs."""
    events = decision_log.record_many(ws().decisions, pair_ids, decision, annotator=annotator(), session=session_id())
    _bump()
    return len(events)


def undo_decision() -> list[decision_log.Event]:
    """Undo this annotator's latest action (one decision or one bulk); the undone events ([] if none)."""
    events = decision_log.undo(ws().decisions, annotator=annotator(), session=session_id())
    _bump()
    return events


_BUTTONS = (("keep", "Keep", ":material/check:", "primary", "Keep this pair and open the next undecided one"),
            ("drop", "Drop", ":material/delete:", "secondary", "Drop this pair from the curated set and open the "
             "next undecided one"),
            ("flag", "Flag", ":material/flag:", "secondary", "Flag for a second look and open the next undecided one"))


def _decide(choice: str, pair_id: str, row: int, following: int | None) -> None:
    record_decision(pair_id, choice, str(st.session_state.get(NOTE) or ""))
    st.session_state[NOTE] = ""
    st.session_state[PAIR_ROW] = following if following is not None else row
    flash("success", f"Row {row}: {choice}" + (f". Next undecided: row {following}." if following is not None
                                               else ". No undecided pair left in this ranking."))


def _undo() -> None:
    events = undo_decision()
    if not events:
        flash("info", "Nothing to undo.")
        return
    run = active_run()
    match = scores(run).loc[lambda t: t["pair_id"] == events[0].pair_id, "row"] if run else pd.Series(dtype=int)
    if len(match):
        st.session_state[PAIR_ROW] = int(match.iloc[0])
    where = f"row {int(match.iloc[0])}" if len(match) else "a pair outside this run"
    more = f" and on {len(events) - 1:,} more pairs (one bulk action)" if len(events) > 1 else ""
    flash("info", f"Undid {events[0].action} on {where}{more}.")


def decision_bar(pair_id: str, row: int, following: int | None) -> None:
    """Keep / Drop / Flag (each then opens `following`), Undo and the note: the same controls, keys and
    keyboard shortcuts (K, D, F, U) on every page that shows a pair. Asks for a name first."""
    name = require_annotator()
    cols = st.columns([1, 1, 1, 1, 4])
    for col, (choice, label, icon, kind, help_text) in zip(cols, _BUTTONS):
        col.button(label, key=choice, on_click=_decide, args=(choice, pair_id, row, following), icon=icon,
                   type=kind, shortcut=choice[0], width="stretch", disabled=not name,
                   help=f"{help_text} ({choice[0].upper()})")
    cols[3].button("Undo", key="undo", on_click=_undo, shortcut="u", icon=":material/undo:", width="stretch",
                   disabled=not name, help="Undo your last decision, or your last bulk action on the Map (U)")
    cols[4].text_input("Note (optional)", key=NOTE, label_visibility="collapsed",
                       placeholder="Note saved with the decision (optional)")
    decision = decisions().get(pair_id)
    if decision is not None:
        st.caption(f"Current decision: **{decision.decision}** by {escape_md(decision.annotator)} at "
                   f"{decision.at[:19].replace('T', ' ')}" + (f" — note: {escape_md(decision.note)}" if decision.note else ""))
    else:
        st.caption("No decision yet.")


# ------------------------------------------------------------------------------------------ the URL

def open_row(row: int) -> None:
    """Make `row` the open pair, in the session and in the URL."""
    st.session_state[PAIR_ROW] = int(row)
    _set_param("row", int(row))


def _set_param(key: str, value: object) -> None:
    params = st.query_params
    if value is None or value == "":
        if key in params:
            del params[key]
    elif params.get(key) != str(value):
        params[key] = str(value)


def _adopt(run_id: str | None, row: str | None, name: str | None) -> None:
    if run_id:
        try:
            path = confine(ws().runs, run_id)
        except PathError:
            path = None
        if path is not None and path.parent == ws().runs.resolve() and store.is_complete(path):
            set_run(path)
        else:
            flash("warning", f"The link names the run {run_id!r}, which is not in this workspace: pick a run "
                             "in the sidebar.")
    if row and row.strip().isdigit():
        st.session_state[PAIR_ROW] = int(row)
    if name and name.strip():
        st.session_state[ANNOTATOR] = name.strip()[:100]


def sync_url() -> None:
    """?run=&row=&annotator=: a session's first run adopts them (reload, bookmark, shared link); every run
    then writes the session's run, open row and annotator back, so the address always reopens this pair."""
    params = st.query_params
    if not st.session_state.get(_URL_ADOPTED):
        st.session_state[_URL_ADOPTED] = True
        _adopt(params.get("run"), params.get("row"), params.get("annotator"))
    run = active_run()
    _set_param("run", run.name if run is not None else None)
    _set_param("row", st.session_state.get(PAIR_ROW) if run is not None else None)
    _set_param("annotator", annotator())


# ----------------------------------------------------------------------------------- safe display

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def escape_md(text: object) -> str:
    """`text` with every Markdown / HTML special character backslash-escaped (shows literally)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def show_text(text: object) -> None:
    """Dataset text, shown literally: no Markdown, no HTML, line breaks kept, long lines wrapped."""
    body = "" if text is None else str(text)
    st.text(body if body else "(empty)", width="stretch")


def parse_messages(value: str | None) -> list[dict]:
    """A prompt column (JSON list of {role, content}) back to messages; [] for None or bad JSON."""
    if not value:
        return []
    try:
        msgs = json.loads(value)
    except (TypeError, ValueError):
        return [{"role": "user", "content": str(value)}]
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def render_conversation(messages: Sequence[dict]) -> None:
    """One st.chat_message per turn; the role and the content shown as plain text."""
    if not messages:
        st.caption("(no prompt)")
    for m in messages:
        role = str(m.get("role", ""))
        name = "user" if role == "user" else "assistant"
        with st.chat_message(name, avatar=_ROLE_AVATARS.get(role, ":material/chat:")):
            if role not in ("user", "assistant"):
                st.text(f"[{role}]")
            show_text(m.get("content", ""))


def render_responses(chosen: object, rejected: object, notes: tuple[str, str] = ("", "")) -> None:
    """The two responses side by side, headed in their side's colour (+ a note each), shown literally."""
    for column, head, text, note in zip(st.columns(2), (CHOSEN, REJECTED), (chosen, rejected), notes):
        with column:
            st.markdown(f"##### {head}{note}")
            show_text(text)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a user-facing error (bad data, model, path, value) as st.error instead of a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        st.error(escape_md(f"{type(e).__name__}: {e}" if isinstance(e, OSError) else e), icon=":material/error:")


def flash(kind: str, message: str) -> None:
    """Queue a message for the next run (survives st.rerun)."""
    st.session_state[_FLASH] = (kind, message)


def show_flash() -> None:
    """Show and clear the queued message, if any (message text is escaped)."""
    item = st.session_state.pop(_FLASH, None)
    if item:
        kind, message = item
        getattr(st, kind if kind in ("success", "info", "warning", "error") else "info")(escape_md(message))


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


# ----------------------------------------------------------------------------------------- sidebar

def _pick_run() -> None:
    picked = st.session_state.get("_run_pick")
    if picked:
        set_run(picked)


def sidebar(jobs_here: bool = True) -> None:
    """Scoring jobs running now (unless the page shows them itself), active run picker, annotator name,
    and this run's decision counts."""
    st.session_state.setdefault(ANNOTATOR, "")
    with st.sidebar:
        if jobs_here:
            scoring_jobs("sidebar")
        runs = store.list_runs(ws().runs)
        options = {str(p): m for p, m in runs}
        current = active_run()
        if current is not None and str(current) not in options:
            options = {str(current): manifest(current), **options}
        if options:
            want = str(current) if current is not None else None
            if "_run_pick" not in st.session_state or st.session_state["_run_pick"] != want:
                st.session_state["_run_pick"] = want      # None shows the placeholder, not the first run
            st.selectbox("Active run", list(options), key="_run_pick", on_change=_pick_run,
                         format_func=lambda p: run_label(p, options[p]), placeholder="Pick a stored run",
                         help="Every scoring run is stored; pick one to browse it.")
        else:
            st.caption("No runs yet.")
        st.text_input("Annotator", key=ANNOTATOR, placeholder="Your name (needed to decide)",
                      help="Recorded with every keep / drop / flag decision; kept in the page address.")
        if current is not None:
            status = decision_status(scores(current)["pair_id"], decisions()).value_counts()
            c1, c2, c3 = st.columns(3)
            c1.metric("Keep", int(status.get("keep", 0)))
            c2.metric("Drop", int(status.get("drop", 0)))
            c3.metric("Flag", int(status.get("flag", 0)))
            st.caption("Decisions on this run's pairs (latest across annotators).")


# ---------------------------------------------------------------------------------- scoring jobs

MY_JOBS = "_my_jobs"     # run folders whose job this session started or watched on Data & score: opened when done
POLL_S = 1.0             # how often a page with a running job reads its progress


def job_label(source: object, pairs: int, model_spec: str, max_length: int) -> str:
    return f"{dataset_name(source)} · {pairs:,} pairs · {model_spec} · max {max_length}"


def follow_job(run_dir: str | Path) -> None:
    """Open `run_dir` in this session once its scoring job has finished."""
    mine = st.session_state.setdefault(MY_JOBS, [])
    if str(run_dir) not in mine:
        mine.append(str(run_dir))


def job_outcome(s: jobs.JobStatus) -> str:
    """What a job that is over left behind, in the words the user acts on."""
    kept = (f"{s.kept:,} of {s.total:,} pairs kept; Score again to resume." if s.total
            else "It stopped before any pair was scored.")
    if s.state == "failed":
        return f"Scoring failed: {s.error}" + (f" ({kept})" if s.kept else "")
    return ("Scoring cancelled: " if s.state == "cancelled" else "Scoring interrupted: ") + kept


def scoring_jobs(place: str) -> None:
    """Every scoring job of the workspace, from any tab or session: a running one with its progress bar and
    Cancel; on the page itself ("main") also how a stopped one ended. Polls while a job runs."""
    running = any(jobs.status(j).running for j in jobs.list_jobs(ws().jobs))
    st.fragment(_scoring_jobs, run_every=POLL_S if running else None)(place, running)


def _scoring_jobs(place: str, was_running: bool) -> None:
    mine = st.session_state.setdefault(MY_JOBS, [])
    finished = [r for r in mine if store.is_complete(Path(r))]
    shown = []
    for job in jobs.list_jobs(ws().jobs):
        s = jobs.status(job)
        if s.state == "complete":                 # the run is listed everywhere now; the record has done its work
            with contextlib.suppress(OSError, ValueError):
                jobs.forget(job)
        elif place == "main" or s.running:
            shown.append((job, s))
            if place == "main" and s.running:
                follow_job(job.run_dir)           # watched here (after a reload too): open its run when done
    if finished:
        for r in finished:
            mine.remove(r)
        set_run(finished[-1])
        m = manifest(finished[-1])
        flash("success", f"Scored {m['pairs']} pairs ({m.get('seconds', 0):.1f} s of scoring). The run is active: "
                         "open Browse, Map or Pair / tokens.")
        st.rerun()
    if any(s.running for _, s in shown) != was_running:
        st.rerun()                                # a job started or ended elsewhere: poll, or stop polling
    for job, s in shown:
        name = job.run_dir.name
        if s.running:
            if place == "sidebar":
                st.caption(f"Scoring {escape_md(job.label)}")
                _job_bar(st, s)
                st.button("Cancel scoring", key=f"sidebar_cancel_{name}", on_click=jobs.cancel, args=(job,),
                          icon=":material/stop:", help="Stops after the current batch; finished chunks are kept.")
                continue
            bar, stop = st.columns([5, 1], vertical_alignment="bottom")
            _job_bar(bar, s)
            stop.button("Cancel", key=f"main_cancel_{name}", on_click=jobs.cancel, args=(job,), icon=":material/stop:",
                        width="stretch", help="Stops after the current batch; the finished chunks are kept, and "
                        "scoring the same data with the same settings again resumes there.")
            st.caption(f"Scoring {escape_md(job.label)}" + (f" · {escape_md(s.estimate)}" if s.estimate else ""))
        else:
            note, dismiss = st.columns([5, 1], vertical_alignment="center")
            (note.error if s.state == "failed" else note.warning)(
                f"{escape_md(job.label)}: {escape_md(job_outcome(s))}",
                icon=":material/error:" if s.state == "failed" else ":material/cancel:")
            dismiss.button("Dismiss", key=f"main_dismiss_{name}", on_click=_dismiss, args=(job,), width="stretch")


def _dismiss(job: jobs.Job) -> None:
    with contextlib.suppress(ValueError):        # restarted meanwhile: it shows its progress instead
        jobs.forget(job)


def _job_bar(where, s: jobs.JobStatus) -> None:
    """A running job's progress bar: pairs done, speed and time left, as the job itself reports them."""
    if not s.total:
        where.progress(0.0, text="Starting: reading the data, loading the model, measuring the speed …")
        return
    where.progress(s.done / s.total, text=f"{s.done:,} / {s.total:,} pairs" + (f" · {s.rate}" if s.rate else "")
                   + (f" · {s.seconds_left} left" if s.seconds_left else ""))


# ---------------------------------------------------------------------------------- deep links

def _run_app_py() -> None:
    """A fresh server asked first for a page address (/browse?run=..., a bookmark) runs that page file
    alone, as an old-style multipage app, because a pages/ folder sits beside app.py; Streamlit learns
    otherwise only when app.py calls st.navigation. Say so now and rerun, so app.py runs: navigation,
    sidebar and the state in the URL."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_run_app_py()        # at import, so that every page, whoever wrote it, is covered
