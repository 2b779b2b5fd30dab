"""What the Streamlit pages share; pages/*.py import its modules (`from ui import state, loaders`).

    state            the workspace, the active run, the annotator, the session id, the URL (?run=&row=&annotator=),
                     flash messages
    loaders          cached reads: a run's scores, manifest, texts and pairs; datasets; the model (or its
                     identity, for a run key); one pair's token view; the decisions in force
    decisionbar      recording decisions (one, many, undo) and the Keep / Drop / Flag / Undo bar
    render           safe rendering: dataset text never as HTML or Markdown; conversations, responses, user errors
    frame            what every page draws first (`frame.page(title)`): page config, sign-in gate, the URL's
                     state, the sidebar; the app uses Streamlit's own pages/ mode, each page file runs alone
    sidebar          the sidebar: page links, jobs, active run, annotator, decision counts
    jobspanel        scoring jobs: progress bars, Cancel, how a stopped job ended, Dismiss
"""
