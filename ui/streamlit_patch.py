"""The one place the app reaches into Streamlit's internals: a deep link on a fresh server runs app.py.

Why: a folder named pages/ beside app.py makes Streamlit start in its legacy multipage mode, which runs
a requested page file alone (/browse?run=...: no navigation, no sidebar, no state adopted from the URL)
until some session has called st.navigation; only then does it switch, for the whole process, to running
app.py on every request (documented on st.navigation: "As soon as any session of your app executes the
st.navigation command, your app will ignore the pages/ directory (across all sessions)"). Streamlit has no
option to skip the legacy mode; the supported ways out are renaming pages/ or moving app.py away from it,
and the project keeps both names.

How: every page calls `route_deep_links_through_app_py()` first, on every run. A run that executed the
page alone is recognised by its page registry, which in legacy mode lists app.py itself as a page (app.py's
own st.navigation never does); such a run switches the process out of legacy mode and reruns, now through
app.py. Checking once per process is not enough: eight tabs opening deep links at the same moment on a
fresh server start eight page-alone runs before the first of them can switch the mode.

Risk: `PagesManager.uses_pages_directory` and the run context's `pages_manager` are private
(streamlit/runtime/pages_manager.py, read by the script runner before each run). Any Streamlit upgrade may
rename or drop them: then the import below fails loudly, or deep links on a fresh server silently open a
bare page again. Hence streamlit is pinned in requirements.txt, and tests/test_browser.py
(test_eight_deep_links_at_once_to_a_fresh_server_all_show_the_run) opens deep links on a fresh server;
run it after any upgrade. AppTest resets the attribute on every run, so tests/conftest.py
(`navigation_pages`) and bench/app_bench.py set it the same way.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st


def route_deep_links_through_app_py() -> None:
    """If this run executed the page alone (Streamlit's legacy pages/ mode), leave that mode for the whole
    process and rerun, so that app.py runs: navigation, sidebar and the state in the URL."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:                                  # not run by Streamlit (imported by a test or a tool)
        return
    if _ran_alone(ctx.pages_manager, ctx.page_script_hash):
        PagesManager.uses_pages_directory = False
        st.rerun()


def _ran_alone(pages_manager, page_hash: str) -> bool:
    """The main script is app.py, the registry lists it as a page, and the page running is another file.
    (A test that runs a page file as its main script never reroutes.)"""
    main = Path(pages_manager.main_script_path).resolve()
    if main.name != "app.py":
        return False
    scripts = {h: Path(p["script_path"]).resolve() for h, p in pages_manager.get_pages().items()
               if p.get("script_path")}
    return main in scripts.values() and scripts.get(page_hash, main) != main
