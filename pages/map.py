"""Map: a 2-D UMAP of the active run; select points to decide on them in bulk or open them in Browse.

A layout not stored yet is computed by a job (`ches project`, ches/engine/jobs.py), one per run, view and
UMAP parameters, started when the page first needs it: its progress and Cancel show here and in the
sidebar, a reload or another tab finds it again, and the map appears once it is stored with the run. A
cancelled or failed one stays shown (how it ended) until Compute the map starts it again, or Dismiss.
"""
import streamlit as st

from ui import decisionbar, frame, jobspanel, loaders, render, state
from ches.cli.project import project_args
from ches.engine import jobs
from ches.engine.metrics import METRICS
from ches.review import map as mapview
from ches.review.browse import decided_counts
from ches.review.decisions import DROP, FLAG, KEEP
from ches.review.projection import cached_layout

frame.page("Map")      # first: page config, sign-in gate, the URL's state, the sidebar

VIEWS = {"pairs": "One point per pair (m⁻ − m⁺, centred)",
         "responses": "Chosen and rejected means (centred), joined by a line"}
COLOR_BY = {"metric": "Score", "decision": "Decision", "flag": "Flag"}
PENDING = "_map_pending"      # (decision, pair ids) waiting for the annotator to confirm an overwrite
FOLLOW = "_map_job"           # the layout job this session started or watched: (job file, (view, UMAP parameters))

run = state.require_run()
table = loaders.scores(run)
st.title("Map")
state.show_flash()
st.caption("Each pair's hidden-state means m = S / |y| from the scoring run, centred and laid out with UMAP "
           "(above 2,000 points, a randomized PCA to 50 dimensions first). LN-CHES = ⟨m⁺, m⁻ − m⁺⟩ is "
           "measured along the preference direction m⁻ − m⁺. Grey shading: how many points lie there; "
           "rings: the riskiest pairs. Click a point to select it (shift-click adds more), or pick Box or Lasso "
           "select in the chart's toolbar for an area (Zoom or Pan again to click); drag to zoom, double-click "
           "to zoom out and clear the selection.")

c_view, c_color, c_metric = st.columns([2, 1, 1])
view = c_view.radio("View", list(VIEWS), format_func=VIEWS.get, key="map_view")
color_by = c_color.radio("Colour by", list(COLOR_BY), format_func=COLOR_BY.get, key="map_color", horizontal=True)
metric = c_metric.selectbox("Score", list(METRICS), format_func=lambda m: METRICS[m].label, key="map_metric")
with st.expander("UMAP parameters", icon=":material/tune:"):
    u1, u2 = st.columns(2)
    params = {"n_neighbors": u1.slider("n_neighbors", 2, 100, 15, key="map_n_neighbors",
                                       help="Larger values keep more of the global structure."),
              "min_dist": u2.slider("min_dist", 0.0, 0.99, 0.1, 0.01, key="map_min_dist",
                                    help="Smaller values pack similar points more tightly.")}

coords = None
with render.user_errors():
    done = jobspanel.finished(FOLLOW)
    coords = cached_layout(run, view, **params)
    if coords is not None and done == (view, params):
        st.success("Map computed and stored with the run.", icon=":material/scatter_plot:")
    if coords is None:
        argv = project_args(run, view, **params)
        job = jobspanel.page_job("project", run, argv, follow=FOLLOW, opens=(view, params))
        label = f"{VIEWS[view]}, n_neighbors {params['n_neighbors']}, min_dist {params['min_dist']:g} · run " \
            f"{run.name[:8]}"
        if job is None:                         # nothing recorded for these settings: compute them
            job = jobspanel.start("project", run, argv, label=label, follow=FOLLOW, opens=(view, params))
        points = len(table) * (1 if view == "pairs" else 2)
        if jobs.status(job).running:
            st.info(f"Computing the map of {points:,} points in the background (once per run, view and UMAP "
                    "parameters; it is stored with the run): you can leave this page or reload it.",
                    icon=":material/hourglass_top:")
        else:
            st.button("Compute the map", key="map_compute", type="primary", icon=":material/play_arrow:",
                      on_click=jobspanel.start, args=("project", run, argv),
                      kwargs={"label": label, "follow": FOLLOW, "opens": (view, params)})
        jobspanel.in_place(job, FOLLOW)
if coords is None:
    st.stop()

frame = mapview.map_frame(table, coords, view, metric=metric, color_by=color_by, decisions=loaders.mine())
riskiest = mapview.riskiest_rows(table, metric)
fig = mapview.map_figure(frame, color_by=color_by, metric=metric, riskiest=riskiest,
                        current=st.session_state.get(state.PAIR_ROW))
# a new key, with nothing selected, whenever the drawing changes (view, UMAP parameters, colouring, score): the
# points move or regroup, and the browser would not highlight an old selection that the server still counts.
# A counter, not the settings: going back to an earlier drawing starts empty too (its old key would bring
# back "n pair(s) selected" with nothing highlighted)
drawing = (view, params["n_neighbors"], params["min_dist"], color_by, metric)
if st.session_state.get("_map_drawing") != drawing:
    st.session_state["_map_drawing"] = drawing
    st.session_state["_map_drawn"] = st.session_state.get("_map_drawn", 0) + 1
chart_key = f"map_chart_{st.session_state['_map_drawn']}"
event = st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("points", "box", "lasso"))
if len(frame) > mapview.MAX_POINTS:
    st.caption(f"Drawn: a fixed random {mapview.MAX_POINTS:,} of {len(frame):,} points. The grey density counts "
               "all of them, and a box or lasso selects every pair inside it, drawn or not.")
selected = mapview.selection_rows(event.selection if event else None, frame)


def _record(decision: str, pair_ids: list[str]) -> None:
    st.session_state.pop(PENDING, None)
    n = decisionbar.record_bulk(pair_ids, decision)
    state.flash("success", f"Recorded '{decision}' for {n:,} pair(s) as {state.annotator()}, as one action: "
                        "'Undo my last action' reverts all of them.")


def _undo_last() -> None:
    events = decisionbar.undo()
    state.flash("info", f"Undid your last action: {events[0].action} on {len(events):,} pair(s)." if events
                else "Nothing of yours to undo.")


def _ask_or_record(decision: str, pair_ids: list[str]) -> None:
    """Record at once when none of the pairs has a decision; else ask first (see below)."""
    if decided_counts(pair_ids, loaders.mine()):
        st.session_state[PENDING] = (decision, list(pair_ids))
    else:
        _record(decision, pair_ids)


pending = st.session_state.get(PENDING)
if pending:
    decision, pair_ids = pending
    decided = loaders.mine()
    counts = decided_counts(pair_ids, decided)
    undecided = [p for p in pair_ids if p not in decided]
    already = sum(counts.values())
    with st.container(border=True):
        st.warning(f"{already:,} of the {len(pair_ids):,} pairs to mark '{decision}' already have a decision ("
                   + ", ".join(f"{n:,} {d}" for d, n in counts.items()) + "). Overwrite them?",
                   icon=":material/warning:")
        o1, o2, o3 = st.columns(3)
        o1.button(f"Overwrite: '{decision}' for all {len(pair_ids):,}", key="map_overwrite", type="primary",
                  on_click=_record, args=(decision, pair_ids), width="stretch")
        o2.button(f"Only the {len(undecided):,} undecided", key="map_only_undecided", on_click=_record,
                  args=(decision, undecided), disabled=not undecided, width="stretch")
        o3.button("Cancel", key="map_cancel", on_click=lambda: st.session_state.pop(PENDING, None), width="stretch")

st.button("Undo my last action", key="map_undo", icon=":material/undo:", on_click=_undo_last,
          disabled=not state.annotator(), help="Undo your last action: a bulk action here, whole, or your last "
          "decision anywhere (Browse's Undo acts on the pair it shows)")
if not selected:
    st.caption("Nothing selected.")
    st.stop()
indexed = table.set_index("row")
pair_ids = indexed.loc[selected, "pair_id"].tolist()
counts = decided_counts(pair_ids, loaders.mine())
st.markdown(f"**{len(selected):,} pair(s) selected**" + (
    " · already decided: " + ", ".join(f"{n:,} {d}" for d, n in counts.items()) if counts else ""))
decisionbar.require_annotator()
b1, b2, b3, b4 = st.columns(4)
for col, decision, label, icon in ((b1, KEEP, "Keep all", ":material/check:"),
                                   (b2, DROP, "Drop all", ":material/delete:"),
                                   (b3, FLAG, "Flag all", ":material/flag:")):
    col.button(label, key=f"map_{decision}", icon=icon, width="stretch", on_click=_ask_or_record,
               args=(decision, pair_ids), disabled=not state.annotator())
if b4.button("Open in Browse", key="map_browse", icon=":material/table_rows:", width="stretch"):
    st.session_state[state.FOCUS_ROWS] = selected
    st.switch_page("pages/browse.py")
if len(selected) == 1:
    row = selected[0]
    text = loaders.texts(run, [row]).iloc[0]
    prompt = render.parse_messages(text["prompt"])
    st.caption(f"Row {row} · {METRICS[metric].label} {indexed.loc[row, metric]:.4g}")
    render.conversation(prompt[-1:])
    render.responses(text["chosen"], text["rejected"])
