"""Session state and the page address: the workspace, the active run, the annotator, flash messages.

Session state (the keys other pages read and write):
    run_dir     str        the active run (a complete run folder)
    annotator   str        who records decisions (sidebar text box; empty until the person gives a name)
    focus_rows  list[int]  source rows chosen elsewhere (e.g. a lasso on the map); Browse shows only those
    pair_row    int        the open pair's source row (Browse, Pair / tokens, the star on the Map)

The run, the open row and the annotator also live in the URL (?run=<run id>&row=<n>&annotator=<name>,
see `sync_url`), so a reload, a bookmark or a shared link lands on the same pair.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from ches.engine import store
from ches.workspace import PathError, Workspace, confine, workspace
from ui.render import escape_md

RUN_DIR, ANNOTATOR, FOCUS_ROWS, PAIR_ROW = "run_dir", "annotator", "focus_rows", "pair_row"
RUN_PICK = "_run_pick"        # the sidebar's run picker
_FLASH = "_flash"
_URL_ADOPTED = "_url_adopted"


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
    for key in (RUN_DIR, FOCUS_ROWS, PAIR_ROW, RUN_PICK):
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


# ------------------------------------------------------------------------------------- who decides

def annotator() -> str:
    """The annotator's name (sidebar or URL), "" until one is given: no decision is recorded without it."""
    return str(st.session_state.get(ANNOTATOR) or "").strip()[:100]


def session_id() -> str:
    """A random id for this browser session, stored with every decision event."""
    return st.session_state.setdefault("_session_id", uuid.uuid4().hex[:12])


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


# ---------------------------------------------------------------------------------- flash messages

def flash(kind: str, message: str) -> None:
    """Queue a message for the next run (survives st.rerun)."""
    st.session_state[_FLASH] = (kind, message)


def show_flash() -> None:
    """Show and clear the queued message, if any (message text is escaped)."""
    item = st.session_state.pop(_FLASH, None)
    if item:
        kind, message = item
        getattr(st, kind if kind in ("success", "info", "warning", "error") else "info")(escape_md(message))
