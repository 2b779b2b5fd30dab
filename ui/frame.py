"""What every page draws first. The app uses Streamlit's own `pages/` mode: a request for /browse runs
pages/browse.py alone (app.py is only the address "/"), so each page starts with `page(title)`.

    page(title)    the page config; the sign-in gate (nobody off the team gets further); presses the decision
                   bar sent that no callback took; the state in the URL (?run=&row=&annotator=&layout=); the
                   sidebar with the navigation (st.page_link to each of PAGES), the jobs, the run and the counts
                   (Browse draws its counts from the fragment a press reruns)

The navigation is drawn here rather than by Streamlit (`client.showSidebarNavigation = false` in
.streamlit/config.toml), so it appears only once the gate has let someone in.
"""
from __future__ import annotations

import gc

import streamlit as st

from ui import auth, decisionbar, jobspanel, sidebar, state

HOME = "pages/score.py"       # where "/" (app.py) leads

# Streamlit collects garbage after every script run (and every fragment run): with torch, transformers and
# pandas imported, that scanned ~410k long-lived objects, 0.2 s of CPU per press. The modules imported so far
# live as long as the process: freeze them once (stdlib gc.freeze), so each collection scans only what runs made.
gc.collect()
gc.freeze()


def page(title: str) -> None:
    """Start a page: config, gate, pending presses, URL state, sidebar (jobs there except on Data & score,
    which shows them beside its Score button)."""
    st.set_page_config(page_title=f"{title} · CHES Studio", page_icon=":material/science:", layout="wide")
    auth.gate()
    decisionbar.take_pending()     # recorded before anything reads the decisions or the open pair
    jobspanel.open_finished()      # a scoring job of this session has finished: its run is the active one
    state.sync_url()
    sidebar.show(jobs_here=title != "Data & score", counts_here=title != "Browse")
