"""CHES Studio: find preference pairs that cause likelihood displacement in DPO (Razin et al., ICLR 2025).

    streamlit run app.py        (or: python -m ches app)

This file only routes: the pages live in pages/, the logic in ches/, what the pages share in ui/.
"""
import streamlit as st

from ui import auth, decisionbar, sidebar, state

st.set_page_config(page_title="CHES Studio", page_icon=":material/science:", layout="wide")

pg = st.navigation([
    st.Page("pages/score.py", title="Data & score", icon=":material/database:", default=True),
    st.Page("pages/browse.py", title="Browse", icon=":material/table_rows:"),
    st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("pages/pair.py", title="Pair / tokens", icon=":material/compare_arrows:"),
    st.Page("pages/team.py", title="Team", icon=":material/groups:"),
    st.Page("pages/export.py", title="Curate & export", icon=":material/download:"),
    st.Page("pages/compare.py", title="Compare runs", icon=":material/difference:"),
    st.Page("pages/probe.py", title="Probe", icon=":material/science:"),
], position="sidebar" if auth.admitted() else "hidden")     # signed out or off the team: no page list
auth.gate()                 # with sign-in on (secrets.toml [auth]): nobody off the team gets further
decisionbar.take_pending()  # presses no callback took: recorded before anything reads the decisions or the open pair
state.sync_url()
sidebar.show(jobs_here=pg.title != "Data & score")     # that page shows them beside its Score button
pg.run()
