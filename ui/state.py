"""Session state and the page address: the workspace, the active run, the annotator, flash messages.

Session state (the keys other pages read and write):
    run_dir     str        the active run (a complete run folder)
    annotator   str        who records decisions (sidebar text box; empty until the person gives a name;
                           with sign-in, `annotator()` is the signed-in identity instead, ui/auth.py)
    focus_rows  list[int]  source rows chosen elsewhere (e.g. a lasso on the map); Browse shows only those
    pair_row    int        the open pair's source row (Browse, Pair / tokens, the star on the Map)
    layout      str        Browse's layout, one of LAYOUTS (kept while other pages are open)
    my_queue    bool       Browse's "My queue" toggle in Review (default on; the Team page's "Open" turns it off)

The run, the open row, the annotator and Browse's layout also live in the URL
(?run=<run id>&row=<n>&annotator=<name>&layout=review, see `sync_url`), so a reload, a bookmark, a
shared link or a page switch lands on the same pair in the same layout.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from ches.engine import store
from ches.review.assignment import Assignment, AssignmentError, read_assignment
from ches.workspace import PathError, Workspace, confine, workspace
from ui import auth
from ui.render import USER_ERRORS, escape_md

RUN_DIR, ANNOTATOR, FOCUS_ROWS, PAIR_ROW, LAYOUT = "run_dir", "annotator", "focus_rows", "pair_row", "layout"
MY_QUEUE = "my_queue"
LAYOUTS = {"review": "Review", "table": "Table"}      # Browse's layouts (the control's order)
DEFAULT_LAYOUT = "table"
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
        gone = st.session_state.get(RUN_DIR)
        if gone and not Path(str(gone)).exists():          # deleted (here or by a teammate) while it was open
            st.warning(f"The run {escape_md(Path(str(gone)).name)} was deleted: its scores, map, probes and checks "
                       "are gone; decisions on its pairs are kept. Pick another run in the sidebar or score the "
                       "data again on **Data & score**.", icon=":material/delete:")
        else:
            st.info("No run yet — score a dataset on **Data & score**, or pick a stored run in the sidebar.",
                    icon=":material/info:")
        st.page_link("pages/score.py", label="Go to Data & score", icon=":material/database:")
        st.stop()
    return run


def assignment(run_dir: str | Path) -> tuple[Assignment, str | None]:
    """The run's assignment (ches.review.assignment: blind, queues) and, when its review.json cannot be read, why.
    An unreadable assignment fails closed: blind, nothing assigned (the Team page can write it again)."""
    try:
        return read_assignment(run_dir), None
    except AssignmentError as e:
        return Assignment(blind=True), str(e)


# ------------------------------------------------------------------------------------- who decides

def annotator() -> str:
    """Who records decisions: the signed-in member's name when the app signs people in (ui.auth), else the
    name typed in the sidebar or given in the URL; "" until there is one (no decision without it)."""
    if auth.enabled():
        return auth.identity()
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


def layout() -> str:
    """Browse's layout (a key of LAYOUTS), kept in the session and the URL while other pages are open."""
    value = st.session_state.get(LAYOUT)
    return value if value in LAYOUTS else DEFAULT_LAYOUT


def _adopt(run_id: str | None, row: str | None, name: str | None, layout_name: str | None) -> None:
    if run_id:
        try:
            path = confine(ws().runs, run_id)
        except PathError:
            path = None
        if path is not None and path.parent == ws().runs.resolve() and store.is_complete(path):
            set_run(path)
        else:
            flash("warning", f"The link names the run {run_id!r}, which is not in this workspace (it may have "
                             "been deleted): pick a run in the sidebar.")
    if row and row.strip().isdigit():
        st.session_state[PAIR_ROW] = int(row)
    if name and name.strip() and not auth.enabled():          # signed in, the name is the identity
        st.session_state[ANNOTATOR] = name.strip()[:100]
    if layout_name in LAYOUTS:
        st.session_state[LAYOUT] = layout_name


def sync_url() -> None:
    """?run=&row=&annotator=&layout=: a session's first run adopts them (reload, bookmark, shared link); every
    run then writes the session's run, open row, annotator and layout back, so the address always reopens
    this pair the same way, and a page switch (which empties the address) loses none of them."""
    params = st.query_params
    if not st.session_state.get(_URL_ADOPTED):
        st.session_state[_URL_ADOPTED] = True
        _adopt(params.get("run"), params.get("row"), params.get("annotator"), params.get("layout"))
    run = active_run()
    _set_param("run", run.name if run is not None else None)
    _set_param("row", st.session_state.get(PAIR_ROW) if run is not None else None)
    _set_param("annotator", annotator())
    _set_param("layout", layout() if layout() != DEFAULT_LAYOUT else None)


def allowed(action: str) -> bool:
    """For a callback: whether this session may do `action` now (ui.auth reads the roles from team.toml when the
    action runs, not only when its button was drawn); if not, a flash message says why and nothing is done."""
    if auth.can(action):
        return True
    flash("error", f"Not done: {auth.refuse(action)}")
    return False


# ---------------------------------------------------------------------------------- flash messages

def flash(kind: str, message: str) -> None:
    """Queue a message for the next run (survives st.rerun)."""
    st.session_state[_FLASH] = (kind, message)


@contextlib.contextmanager
def errors_flashed() -> Iterator[None]:
    """For a callback (an action runs as one: ARCHITECTURE rule 11): a user-facing error (bad data, model,
    path, value) becomes the page's message (show_flash), not a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        flash("error", f"{type(e).__name__}: {e}" if isinstance(e, OSError) else str(e))


def show_flash() -> None:
    """Show and clear the queued message, if any (message text is escaped)."""
    item = st.session_state.pop(_FLASH, None)
    if item:
        kind, message = item
        getattr(st, kind if kind in ("success", "info", "warning", "error") else "info")(escape_md(message))
