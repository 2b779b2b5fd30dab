"""What the Streamlit pages share; app.py and pages/*.py import its modules (`from ui import state, loaders`).

    state            the workspace, the active run, the annotator, the session id, the URL (?run=&row=&annotator=),
                     flash messages
    loaders          cached reads: a run's scores, manifest, texts and pairs; datasets; the model (or its
                     identity, for a run key); one pair's token view; the decisions in force
    decisionbar      recording decisions (one, many, undo) and the Keep / Drop / Flag / Undo bar
    render           safe rendering: dataset text never as HTML or Markdown; conversations, responses, user errors
    sidebar          the sidebar app.py draws: jobs, active run, annotator, decision counts
    jobspanel        scoring jobs: progress bars, Cancel, how a stopped job ended, Dismiss
    streamlit_patch  the one private Streamlit attribute the app sets (deep links on a fresh server): every
                     page calls `streamlit_patch.route_deep_links_through_app_py()` first, on every run
"""
