"""CHES Studio: find preference pairs that cause likelihood displacement in DPO (Razin et al., ICLR 2025).

    streamlit run app.py        (or: python -m ches app)

The pages live in pages/ (Streamlit's pages/ mode: each page file runs on its own and starts with
`ui.frame.page`), the logic in ches/, what the pages share in ui/. This file is the address "/": it opens
Data & score, keeping the address's query (?run=&row=&annotator=).
"""
import streamlit as st

from ui import frame

st.switch_page(frame.HOME, query_params=st.query_params.to_dict())
