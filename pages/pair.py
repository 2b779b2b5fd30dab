"""Pair / tokens: one pair's per-token CHES contributions, the rejected side's alignment, and the token diff."""
import html

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from ches.browse import METRIC_LABELS
from ches.tokendiff import legend_html, merged_diff, pair_ops, tokens_html

INPUT = "_pair_row_input"

run = ui.require_run()
table = ui.scores(run)
key = ui.manifest(run)["key"]
known = set(table["row"].tolist())

st.title("Pair / tokens")
st.caption("CHES decomposes exactly over the chosen response's positions: "
           "CHES = Σₖ ⟨h⁺ₖ, S⁻ − S⁺⟩ and LN-CHES = Σₖ ⟨h⁺ₖ, m⁻ − m⁺⟩ / |y⁺|. Red tokens push the score up "
           "(towards displacement), blue ones pull it down. Token states are recomputed for this pair only.")


def _typed() -> None:
    """The Row box changed: open that row if the run has it, else keep the current one and say why."""
    value = int(st.session_state[INPUT])
    if value in known:
        st.session_state[ui.PAIR_ROW] = value
    else:
        st.session_state["_pair_row_missing"] = value


row = st.session_state.get(ui.PAIR_ROW)
if row not in known:
    row = int(table.sort_values(["ln_ches", "row"], ascending=[False, True])["row"].iloc[0])
    st.session_state[ui.PAIR_ROW] = row
if st.session_state.get(INPUT) != row:          # pair_row was set elsewhere (Browse, Map): show it in the box
    st.session_state[INPUT] = row

c1, c2, c3 = st.columns([1, 2, 3])
c1.number_input("Row", min_value=int(min(known)), max_value=int(max(known)), step=1, key=INPUT, on_change=_typed,
                help="Source row (1-based line / record number in the dataset).")
metric = c2.radio("Metric", ["ln_ches", "ches"], format_func=METRIC_LABELS.get, horizontal=True, key="pair_metric")
missing = st.session_state.pop("_pair_row_missing", None)
if missing is not None:
    st.warning(f"Row {missing} is not in this run (it may have been skipped when loading). Showing row {row}.")
rec = table.loc[table["row"] == row].iloc[0]
c3.page_link("pages/browse.py", label="Back to Browse", icon=":material/table_rows:")

with ui.user_errors():
    with st.spinner(f"Loading the model {key['model_id']} …"):
        lm = ui.model(key["model_id"], key["dtype"])
    if lm.fingerprint != key["fingerprint"]:
        st.warning("The model's weights differ from the ones this run was scored with; token values may not "
                   "match the stored scores.")
    with st.spinner("Computing this pair's token states …"):
        res = ui.token_view(run, row, metric, lm)

    contrib = np.asarray(res["contributions"], dtype=np.float64)
    stored = float(rec[metric])
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(f"{METRIC_LABELS[metric]} (this pair)", f"{res['score']:.6g}")
    m2.metric("Sum of token contributions", f"{contrib.sum():.6g}")
    m3.metric("Stored in the run", f"{stored:.6g}", help="From the batched scoring run; tiny differences come "
              "from batching and padding in float arithmetic.")
    m4.metric("Tokens |y+| / |y-|", f"{len(res['chosen_tokens'])} / {len(res['rejected_tokens'])}")
    st.caption(f"The {len(contrib)} per-token contributions sum to {contrib.sum():.10g}; the score is "
               f"{res['score']:.10g} (difference {abs(contrib.sum() - res['score']):.2e}).")
    if res["truncated"]:
        st.warning("This pair was cut to the run's max length; only the tokens kept are shown.", icon=":material/content_cut:")

    chosen_ops, rejected_ops = pair_ops(res)
    st.html(legend_html())
    left, right = st.columns(2)
    with left:
        st.markdown("##### :green[Chosen (y+)] · shaded by contribution")
        st.html(tokens_html(res["chosen_tokens"], contrib.tolist(), chosen_ops, value_name="contribution"))
    with right:
        st.markdown("##### :red[Rejected (y-)] · shaded by alignment ⟨h⁻ₖ, m⁺⟩")
        st.html(tokens_html(res["rejected_tokens"], list(res["rejected_alignment"]), rejected_ops,
                            value_name="alignment", center=True))
        st.caption("Shading is relative to the mean alignment; the tooltip shows the value.")

    st.markdown("##### Per-token contributions")
    labels = [html.escape(repr(t), quote=True) for t in res["chosen_tokens"]]
    fig = go.Figure(go.Bar(x=list(range(len(contrib))), y=contrib, customdata=labels,
                           marker_color=np.where(contrib >= 0, "#dc2626", "#2563eb"),
                           hovertemplate="#%{x} %{customdata}<br>%{y:.4g}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="chosen position k",
                      yaxis_title="contribution")
    st.plotly_chart(fig, width="stretch", key="pair_bars")

    st.markdown("##### Token diff (chosen → rejected)")
    diff = merged_diff(res["chosen_tokens"], res["rejected_tokens"], res["chosen_ids"], res["rejected_ids"])
    same = sum(1 for _, op in diff if op == "equal")
    st.caption(f"{same} tokens shared, {chosen_ops.count('deleted')} only in chosen (struck through), "
               f"{rejected_ops.count('inserted')} only in rejected (underlined).")
    st.html(tokens_html([t for t, _ in diff], None, [op for _, op in diff]))

    with st.expander("Prompt", icon=":material/chat:"):
        p = ui.pair(run, row)
        ui.render_conversation([dict(m) for m in p.prompt])
