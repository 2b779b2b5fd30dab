"""Map: a 2-D UMAP of the active run; select points to decide on them in bulk or open them in Browse."""
import streamlit as st

import ui
from ches import mapview
from ches.browse import METRIC_LABELS
from ches.projection import map_coordinates
from ches.store import read_arrays

VIEWS = {"pairs": "One point per pair (m⁻ − m⁺, centred)",
         "responses": "Chosen and rejected means (centred), joined by a line"}
COLOR_BY = {"metric": "Score", "decision": "Decision", "flag": "Flag"}

run = ui.require_run()
table = ui.scores(run)
st.title("Map")
ui.show_flash()
st.caption("Each pair's hidden-state means m = S / |y| from the scoring run, centred and laid out with UMAP "
           "(PCA to 50 dimensions first above 2000 points). LN-CHES = ⟨m⁺, m⁻ − m⁺⟩ is measured along the "
           "preference direction m⁻ − m⁺. Click, box or lasso points to act on them.")

c_view, c_color, c_metric = st.columns([2, 1, 1])
view = c_view.radio("View", list(VIEWS), format_func=VIEWS.get, key="map_view")
color_by = c_color.radio("Colour by", list(COLOR_BY), format_func=COLOR_BY.get, key="map_color", horizontal=True)
metric = c_metric.selectbox("Score", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key="map_metric")
with st.expander("UMAP parameters", icon=":material/tune:"):
    u1, u2 = st.columns(2)
    n_neighbors = u1.slider("n_neighbors", 2, 100, 15, key="map_n_neighbors",
                            help="Larger values keep more of the global structure.")
    min_dist = u2.slider("min_dist", 0.0, 0.99, 0.1, 0.01, key="map_min_dist",
                         help="Smaller values pack similar points more tightly.")

arrays = read_arrays(run)
coords = None
with ui.user_errors(), st.spinner("Computing the map … (the first UMAP run in a session compiles numba: ~35 s)"):
    coords = map_coordinates(run, view, arrays["S_plus"], arrays["S_minus"], table["len_chosen"].to_numpy(),
                             table["len_rejected"].to_numpy(), n_neighbors=n_neighbors, min_dist=min_dist)
if coords is None:
    st.stop()

rows = table["row"].tolist()
prompts = None
if len(table) <= mapview.HOVER_TEXT_MAX_PAIRS:
    t = ui.texts(run, rows)
    prompts = dict(zip(t["row"].astype(int), t["prompt"]))
else:
    st.caption(f"{len(table)} pairs: hover shows the row and the score only.")
frame = mapview.map_frame(table, coords, view, metric=metric, color_by=color_by, decisions=ui.decisions(),
                          prompts=prompts)
event = st.plotly_chart(mapview.map_figure(frame, color_by=color_by, metric=metric), key="map",
                        on_select="rerun", selection_mode=("points", "box", "lasso"))
selected = mapview.selection_rows(event.selection if event else None, rows, view)

if not selected:
    st.caption("Nothing selected.")
    st.stop()
st.markdown(f"**{len(selected)} pair(s) selected**")
pair_ids = table.set_index("row").loc[selected, "pair_id"].tolist()
b1, b2, b3, b4 = st.columns(4)
for col, decision, label, icon in ((b1, "keep", "Keep all", ":material/check:"),
                                   (b2, "drop", "Drop all", ":material/delete:"),
                                   (b3, "flag", "Flag all", ":material/flag:")):
    if col.button(label, key=f"map_{decision}", icon=icon, width="stretch"):
        with ui.user_errors():
            n = ui.record_bulk(pair_ids, decision)
            ui.flash("success", f"Recorded '{decision}' for {n} pair(s) as {ui.annotator()}.")
            st.rerun()
if b4.button("Open in Browse", key="map_browse", icon=":material/table_rows:", width="stretch"):
    st.session_state[ui.FOCUS_ROWS] = selected
    st.switch_page("pages/browse.py")
