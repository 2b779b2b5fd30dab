"""Browse: rank the active run's pairs by a metric, filter them, read one pair, decide keep / drop / flag."""
import plotly.graph_objects as go
import streamlit as st

import ui
from ches.browse import (METRIC_LABELS, PAGE_SIZE, STATUSES, filter_pairs, has_any_flag, histogram,
                         next_row, page_count, page_of, percentile_of)
from ches.data import FLAGS
from ches.scores import METRICS

ROW = "browse_row"            # the source row opened below the table (Browse's own state)
TABLE = "browse_table"
TABLE_GEN = "_browse_table_gen"   # bumped after each decision / undo: a new table key clears the old tick

run = ui.require_run()
table = ui.scores(run)
decided = ui.decisions()

st.title("Browse")
ui.show_flash()

# ------------------------------------------------------------------------------ metric + filters
c_metric, c_help = st.columns([1, 3])
metric = c_metric.selectbox("Rank by", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key="browse_metric")
c_help.caption(METRICS[metric] + "  \nThe table lists the highest scores first: the pairs most likely to "
               "cause likelihood displacement. The paper filters by keeping the lowest LN-CHES pairs.")

focus = st.session_state.get(ui.FOCUS_ROWS)
if focus:
    c1, c2 = st.columns([4, 1])
    c1.info(f"Showing only the {len(focus)} pairs selected elsewhere (e.g. a lasso on the Map).",
            icon=":material/filter_alt:")
    if c2.button("Clear selection", key="browse_clear_focus", icon=":material/filter_alt_off:"):
        st.session_state.pop(ui.FOCUS_ROWS, None)
        st.rerun()

values = table[metric]
with st.expander("Filters", expanded=True, icon=":material/tune:"):
    f1, f2, f3 = st.columns(3)
    band = f1.slider("Percentile band", 0, 100, (0, 100), key="browse_pct",
                     help="Percentile of the metric over the whole run (100 = highest score).")
    lo, hi = float(values.min()), float(values.max())
    score_range = None
    if hi > lo:
        picked = f2.slider(f"{METRIC_LABELS[metric]} range", lo, hi, (lo, hi), key=f"browse_range_{metric}",
                           format="%.4g")
        score_range = None if picked == (lo, hi) else picked
    lengths = table[["len_chosen", "len_rejected"]]
    lmin, lmax = int(lengths.min().min()), int(lengths.max().max())
    length_range = None
    if lmax > lmin:
        picked_len = f3.slider("Response length (tokens, both sides)", lmin, lmax, (lmin, lmax), key="browse_len")
        length_range = None if picked_len == (lmin, lmax) else picked_len
    g1, g2, g3 = st.columns(3)
    present = sorted({f for cell in table["flags"].unique() for f in str(cell).split(",") if f})
    flags = g1.multiselect("Flags (any of)", present, key="browse_flags",
                           format_func=lambda f: f"{f} ({int(has_any_flag(table['flags'], [f]).sum())})",
                           help="\n\n".join(f"**{f}**: {FLAGS.get(f, '')}" for f in present) or None)
    status = g2.multiselect("Decision", STATUSES, key="browse_status")
    query = g3.text_input("Search prompt and responses", key="browse_query",
                          placeholder="case-insensitive substring")

rows_filter = None
if focus:
    rows_filter = {int(r) for r in focus}
if query.strip():
    hits = ui.search(run, query)
    rows_filter = hits if rows_filter is None else rows_filter & hits

ranked = filter_pairs(table, metric=metric, percentile=band, score_range=score_range, flags=flags, status=status,
                      decisions=decided, rows=rows_filter, length_range=length_range)
ranked_rows = ranked["row"].tolist()

n_flagged = int((table["flags"] != "").sum())
n_decided = int(table["pair_id"].isin(decided.keys()).sum())
m1, m2, m3, m4 = st.columns(4)
m1.metric("Pairs in run", f"{len(table):,}")
m2.metric("Shown by filters", f"{len(ranked):,}")
m3.metric("With data flags", f"{n_flagged:,}", help="Pairs with at least one load-time or scoring flag.")
m4.metric("Decided", f"{n_decided:,}", help="Pairs with a keep / drop / flag decision (any annotator).")

# -------------------------------------------------------------------------------- current pair
current = st.session_state.get(ROW)
if current not in set(ranked_rows):
    current = ranked_rows[0] if ranked_rows else None
    st.session_state[ROW] = current
if current is not None:
    st.session_state[ui.PAIR_ROW] = int(current)    # Pair / tokens opens the pair open here by default

# ---------------------------------------------------------------------------------- histogram
counts, edges = histogram(values)
fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1:] - edges[:-1],
                       marker_color="#94a3b8", name="all pairs",
                       hovertemplate="%{x:.4g}: %{y} pairs<extra></extra>"))
caption = f"Distribution of {METRIC_LABELS[metric]} over all {len(table):,} pairs."
if current is not None:
    x = float(table.loc[table["row"] == current, metric].iloc[0])
    pct = percentile_of(values, x)
    fig.add_vline(x=x, line_color="#dc2626", line_width=2)
    caption += f" Red line: row {current} at {x:.4g}, percentile {pct:.1f} (higher = riskier)."
fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=10), bargap=0.05, showlegend=False,
                  xaxis_title=METRIC_LABELS[metric], yaxis_title="pairs")
st.plotly_chart(fig, width="stretch", key="browse_hist")
st.caption(caption)

# -------------------------------------------------------------------------------- ranked table
if not ranked_rows:
    st.info("No pair matches these filters.", icon=":material/search_off:")
    st.stop()

n_pages = page_count(len(ranked))
p1, p2 = st.columns([1, 5])
page = p1.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key="browse_page")
p2.caption(f"{PAGE_SIZE} pairs per page; select a row to open it below. Only this page's texts are read.")
view = page_of(ranked, page).copy()
view.insert(0, "rank", range((int(page) - 1) * PAGE_SIZE + 1, (int(page) - 1) * PAGE_SIZE + 1 + len(view)))
txt = ui.texts(run, view["row"].tolist()).set_index("row")


def _preview(cell, limit: int = 90) -> str:
    text = " ".join(str(cell or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prompt_preview(cell) -> str:
    msgs = ui.parse_messages(cell)
    return _preview(msgs[-1].get("content", "") if msgs else "")


view["prompt"] = view["row"].map(txt["prompt"]).map(_prompt_preview)
view["chosen"] = view["row"].map(txt["chosen"]).map(_preview)
view["rejected"] = view["row"].map(txt["rejected"]).map(_preview)
view = view.reset_index(drop=True)
st.session_state["_browse_page_rows"] = view["row"].tolist()


def _open_selected() -> None:
    sel = st.session_state[_table_key].selection.rows
    rows = st.session_state.get("_browse_page_rows", [])
    if sel and sel[0] < len(rows):
        st.session_state[ROW] = int(rows[sel[0]])


shown = ["rank", "row", metric, "percentile", "decision", "flags", "prompt", "chosen", "rejected",
         "len_chosen", "len_rejected"]
_table_key = f"{TABLE}_{st.session_state.get(TABLE_GEN, 0)}"
st.dataframe(view, key=_table_key, on_select=_open_selected, selection_mode="single-row", hide_index=True,
             width="stretch", height=min(38 + 35 * len(view), 420), column_order=shown,
             column_config={
                 metric: st.column_config.NumberColumn(METRIC_LABELS[metric], format="%.4g"),
                 "percentile": st.column_config.ProgressColumn("pctl", min_value=0, max_value=100, format="%.0f"),
                 "rank": st.column_config.NumberColumn("#", width="small"),
                 "row": st.column_config.NumberColumn("row", width="small", format="%d"),
                 "len_chosen": st.column_config.NumberColumn("|y+|", width="small"),
                 "len_rejected": st.column_config.NumberColumn("|y-|", width="small"),
             })

# ---------------------------------------------------------------------------------- the pair
st.divider()
row = int(current)
rec = table.loc[table["row"] == row].iloc[0]
pair_text = ui.texts(run, [row]).iloc[0]
position = ranked_rows.index(row) + 1
upcoming = next_row(ranked_rows, row)
decision = decided.get(rec["pair_id"])

st.subheader(f"Row {row} · rank {position:,} of {len(ranked_rows):,}")
k1, k2, k3, k4, k5 = st.columns(5)
k1.metric("LN-CHES", f"{rec['ln_ches']:.4g}", help=METRICS["ln_ches"])
k2.metric("CHES", f"{rec['ches']:.4g}", help=METRICS["ches"])
k3.metric("Edit similarity", f"{rec['edit_sim']:.3f}", help=METRICS["edit_sim"])
k4.metric("Last-hidden IP", f"{rec['last_hidden_ip']:.4g}", help=METRICS["last_hidden_ip"])
k5.metric("Percentile", f"{percentile_of(values, rec[metric]):.1f}", help=f"of {METRIC_LABELS[metric]} in this run")
row_flags = [f for f in str(rec["flags"]).split(",") if f]
if row_flags:
    st.warning("  \n".join(f"**{ui.escape_md(f)}**: {ui.escape_md(FLAGS.get(f, ''))}" for f in row_flags),
               icon=":material/flag:")
if decision is not None:
    st.caption(f"Current decision: **{decision.decision}** by {ui.escape_md(decision.annotator)} at "
               f"{decision.at[:19].replace('T', ' ')}" + (f" — note: {ui.escape_md(decision.note)}" if decision.note else ""))
else:
    st.caption("No decision yet.")


def _reset_table_selection() -> None:
    st.session_state[TABLE_GEN] = st.session_state.get(TABLE_GEN, 0) + 1


def _decide(choice: str, pair_id: str, row: int, following: int | None) -> None:
    _reset_table_selection()
    note = st.session_state.get("browse_note", "")
    ui.record_decision(pair_id, choice, note)
    st.session_state["browse_note"] = ""
    st.session_state[ROW] = following if following is not None else row
    ui.flash("success", f"Row {row}: {choice}" + (f". Next: row {following}." if following is not None
                                                   else ". That was the last pair in this ranking."))


def _undo() -> None:
    _reset_table_selection()
    events = ui.undo_decision()
    if not events:
        ui.flash("info", "Nothing to undo.")
        return
    match = table.loc[table["pair_id"] == events[0].pair_id, "row"]
    if len(match):
        st.session_state[ROW] = int(match.iloc[0])
    where = f"row {int(match.iloc[0])}" if len(match) else "a pair outside this run"
    more = f" and {len(events) - 1:,} more pairs (one bulk action)" if len(events) > 1 else ""
    ui.flash("info", f"Undid {events[0].action} on {where}{more}.")


b = st.columns([1, 1, 1, 1, 1, 3])
args = (rec["pair_id"], row, upcoming)
b[0].button("Keep", key="keep", on_click=_decide, args=("keep", *args), shortcut="k", icon=":material/check:",
            type="primary", width="stretch", help="Keep this pair and open the next one (K)")
b[1].button("Drop", key="drop", on_click=_decide, args=("drop", *args), shortcut="d", icon=":material/delete:",
            width="stretch", help="Drop this pair from the curated set and open the next one (D)")
b[2].button("Flag", key="flag", on_click=_decide, args=("flag", *args), shortcut="f", icon=":material/flag:",
            width="stretch", help="Flag for a second look and open the next one (F)")
b[3].button("Undo", key="undo", on_click=_undo, shortcut="u", icon=":material/undo:", width="stretch",
            help=f"Undo {ui.escape_md(ui.annotator())}'s last decision (U)")
if b[4].button("Tokens", key="tokens", icon=":material/compare_arrows:", width="stretch",
               help="Open this pair in the token view"):
    st.session_state[ui.PAIR_ROW] = row
    st.switch_page("pages/pair.py")
b[5].text_input("Note (optional)", key="browse_note", label_visibility="collapsed",
                placeholder="Note saved with the decision (optional)")

st.markdown("##### Prompt")
prompt = ui.parse_messages(pair_text["prompt"])
ui.render_conversation(prompt)
rejected_prompt = ui.parse_messages(pair_text["rejected_prompt"])
if rejected_prompt:
    with st.expander("The rejected side's prompt differs (prompt_mismatch)"):
        ui.render_conversation(rejected_prompt)
left, right = st.columns(2)
with left:
    st.markdown(f"##### :green[Chosen (y+)] · {int(rec['len_chosen'])} positions")
    ui.show_text(pair_text["chosen"])
with right:
    st.markdown(f"##### :red[Rejected (y-)] · {int(rec['len_rejected'])} positions")
    ui.show_text(pair_text["rejected"])
