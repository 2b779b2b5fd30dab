"""The one place the app reaches into Streamlit's internals: a deep link on a fresh server runs app.py.

Why: a folder named pages/ beside app.py makes Streamlit start in its legacy multipage mode, which runs
a requested page file alone (/browse?run=...: no navigation, no sidebar, no state adopted from the URL)
until some session has called st.navigation; only then does it switch, for the whole process, to running
app.py on every request (documented on st.navigation: "As soon as any session of your app executes the
st.navigation command, your app will ignore the pages/ directory (across all sessions)"). Streamlit has no
option to skip the legacy mode; the supported ways out are renaming pages/ or moving app.py away from it,
and the project keeps both names.

Risk: `PagesManager.uses_pages_directory` is private (streamlit/runtime/pages_manager.py, read by the
script runner before each run). Any Streamlit upgrade may rename or drop it: then the import below fails
loudly, or deep links on a fresh server silently open a bare page again. Hence streamlit is pinned in
requirements.txt, and tests/test_browser.py::test_reload_and_deep_links_keep_run_row_and_annotator starts
a fresh server and opens a deep link first; run it after any upgrade. AppTest resets the attribute on
every run, so tests/conftest.py (`navigation_pages`) and bench/app_bench.py set it the same way.
"""
from __future__ import annotations

import streamlit as st


def route_deep_links_through_app_py() -> None:
    """If Streamlit still thinks this is a legacy pages/ app, tell it otherwise now and rerun, so that
    app.py runs: navigation, sidebar and the state in the URL. Called when `ui` is imported (every page
    imports it)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
