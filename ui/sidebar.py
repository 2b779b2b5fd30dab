"""The sidebar every page draws (ui.frame): the page links, running jobs, the active run picker, the annotator, and
for the active run my decision counts, the team's (agreed / conflict / settled) and, with an assignment, each assigned
annotator's progress."""
from __future__ import annotations

import streamlit as st

from ches.engine.runs import list_runs
from ches.review.team_rules import AGREED, CONFLICT, SETTLED, SINGLE
from ches.review.decisions import DROP, FLAG, KEEP
from ches.review.assignment import progress
from ui import auth, jobspanel, loaders, state

PAGES = (("pages/score.py", "Data & score", ":material/database:"),
         ("pages/browse.py", "Browse", ":material/table_rows:"),
         ("pages/map.py", "Map", ":material/scatter_plot:"),
         ("pages/pair.py", "Pair / tokens", ":material/compare_arrows:"),
         ("pages/team.py", "Team", ":material/groups:"),
         ("pages/export.py", "Curate & export", ":material/download:"),
         ("pages/compare.py", "Compare runs", ":material/difference:"),
         ("pages/probe.py", "Probe", ":material/science:"))
NAME_BOX = "annotator_box"    # the sidebar's name box; the name itself is state.ANNOTATOR (not a widget key, so
                              # no page switch or run that skips the sidebar can drop it)


def _pick_run() -> None:
    picked = st.session_state.get(state.RUN_PICK)
    if picked:
        state.set_run(picked)


def _take_name() -> None:
    st.session_state[state.ANNOTATOR] = str(st.session_state.get(NAME_BOX) or "").strip()[:100]


def show(jobs_here: bool = True, counts_here: bool = True) -> None:
    """The page links, scoring jobs running now (unless the page shows them itself), active run picker,
    annotator name, and this run's decision counts (unless the page draws them itself: Browse, from the
    fragment a press reruns)."""
    with st.sidebar:
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
        st.divider()
        if jobs_here:
            jobspanel.show("sidebar")
        runs = list_runs(state.ws().runs)
        options = {str(p): m for p, m in runs}
        current = state.active_run()
        if current is not None and str(current) not in options:
            options = {str(current): loaders.manifest(current), **options}
        if options:
            want = str(current) if current is not None else None
            if state.RUN_PICK not in st.session_state or st.session_state[state.RUN_PICK] != want:
                st.session_state[state.RUN_PICK] = want      # None shows the placeholder, not the first run
            st.selectbox("Active run", list(options), key=state.RUN_PICK, on_change=_pick_run,
                         format_func=lambda p: loaders.run_label(p, options[p]), placeholder="Pick a stored run",
                         help="Every scoring run is stored; pick one to browse it.")
        else:
            st.caption("No runs yet.")
        if auth.enabled():
            auth.sidebar()                                  # the signed-in identity, its role, Sign out
        else:
            if st.session_state.get(NAME_BOX) != state.annotator():
                st.session_state[NAME_BOX] = state.annotator()
            st.text_input("Annotator", key=NAME_BOX, placeholder="Your name (needed to decide)", on_change=_take_name,
                          help="Recorded with every keep / drop / flag decision; kept in the page address.")
        if counts_here:
            counts()


def counts() -> None:
    """My Keep / Drop / Flag on the active run's pairs, the team's statuses in one line, and the assignment's progress
    (nothing without an active run). Browse's pair panel, a fragment, draws them into the sidebar itself, last, so
    that a press reruns that one fragment: one script run, not two (a second fragment rerun by `st.rerun(scope=...)`
    from the press's callback), and the pair's heading before the counts. Two elements, not eight: every element a
    press redraws is re-rendered and faded as stale in each annotator's browser (bench/NOTES.md, the press)."""
    run = state.active_run()
    if run is None:
        return
    team, me = loaders.team(), state.annotator()
    mine = loaders.my_counts(run)
    st.markdown(" · ".join(f"{label} **{mine.get(action, 0):,}**"          # "Keep **2** · Drop **1** · Flag **0**"
                           for label, action in (("Keep", KEEP), ("Drop", DROP), ("Flag", FLAG))))
    status = loaders.team_counts(run)
    st.caption(("Your decisions on this run's pairs." if me else "Your decisions: give your name to decide.")
               + "  \nTeam: " + " · ".join(f"{int(status.get(s, 0)):,} {s}" for s in (AGREED, CONFLICT, SETTLED))
               + f" · {int(status.get(SINGLE, 0)):,} by one person")
    assignment, _ = state.assignment(run)        # a broken one is reported on Browse and the Team page
    if assignment.queues:
        table = progress(assignment, team.by_annotator)
        st.caption("Assigned on the Team page (done: decided by that annotator):")
        st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * min(len(table), 6),
                     key="sidebar_progress")
