"""Pair / tokens: one pair's per-token CHES contributions, the rejected side's alignment, and the token diff.

A view not stored yet is computed by a job (`ches tokens`, ches/review/tokenview.py) for the row opened and the
next ones of this page's ranking, started when the page first needs it: the view shows as soon as its row is
stored (the job goes on in the sidebar), the next pairs open from disk, and a reload or another tab finds the
job again. A cancelled or failed one stays shown until Compute the token view starts it again, or Dismiss.
"""
import numpy as np
import streamlit as st

from ui import decisionbar, frame, jobspanel, loaders, render, state
from ches.engine import jobs
from ches.engine.metrics import METRICS, TOKEN_METRICS
from ches.review import charts, tokenview
from ches.review.browse import Undecided, next_undecided
from ches.review.tokendiff import CUT_LABEL, legend_html, mark_cuts, merged_diff, pair_ops, tokens_html

frame.page("Pair / tokens")      # first: page config, sign-in gate, the URL's state, the sidebar

INPUT = "_pair_row_input"
AGREE = 1e-3      # relative difference from the stored score expected from batching and padding alone
FOLLOW = "_tokens_job"      # the token-view job this session started or watched: (job file, row)

run = state.require_run()
table = loaders.scores(run)
key = loaders.manifest(run)["key"]
known = set(table["row"].tolist())

st.title("Pair / tokens")
st.caption("CHES decomposes exactly over the chosen response's positions: "
           "CHES = Σₖ ⟨h⁺ₖ, S⁻ − S⁺⟩ and LN-CHES = Σₖ ⟨h⁺ₖ, m⁻ − m⁺⟩ / |y⁺|. Red tokens push the score up "
           "(towards displacement), blue ones pull it down. Token states are recomputed for this pair alone, "
           "by a job, and stored with the run.")


def _typed() -> None:
    """The Row box changed: open that row if the run has it, else keep the current one and say why."""
    value = int(st.session_state[INPUT])
    if value in known:
        st.session_state[state.PAIR_ROW] = value
    else:
        st.session_state["_pair_row_missing"] = value


row = st.session_state.get(state.PAIR_ROW)
if row not in known:
    row = int(table.sort_values(["ln_ches", "row"], ascending=[False, True])["row"].iloc[0])
state.open_row(row)
if st.session_state.get(INPUT) != row:          # pair_row was set elsewhere (Browse, Map): show it in the box
    st.session_state[INPUT] = row

c1, c2, c3 = st.columns([1, 2, 3])
c1.number_input("Row", min_value=int(min(known)), max_value=int(max(known)), step=1, key=INPUT, on_change=_typed,
                help="Source row (1-based line / record number in the dataset).")
metric = c2.radio("Metric", list(TOKEN_METRICS), format_func=lambda m: METRICS[m].label, horizontal=True,
                  key="pair_metric")
missing = st.session_state.pop("_pair_row_missing", None)
if missing is not None:
    st.warning(f"Row {missing} is not in this run (it may have been skipped when loading). Showing row {row}.")
rec = table.loc[table["row"] == row].iloc[0]
c3.page_link("pages/browse.py", label="Back to Browse", icon=":material/table_rows:")

ranked_rows = table.sort_values([metric, "row"], ascending=[False, True])["row"].tolist()
state.show_flash()
decisionbar.show(rec["pair_id"], row, next_undecided(ranked_rows, row, Undecided(loaders.pair_of(run), loaders.mine())),
                 heading=f"Row {row}")


def _compute(rows: list[int]) -> jobs.Job:
    """The job that stores the views of `rows` (the opened row first), started or attached to."""
    return jobspanel.start("tokens", run, tokenview.tokens_args(run, rows), follow=FOLLOW, opens=rows[0],
                           label=f"row {rows[0]}" + (f" and the next {len(rows) - 1} of this ranking" if len(rows) > 1
                                                     else "") + f" · run {run.name[:8]}")


view = tokenview.stored_view(run, row)
if view is None:
    with render.user_errors():
        of_run = tokenview.tokens_jobs(jobs.list_jobs(state.ws().jobs), run)
        job = next(iter(tokenview.tokens_jobs(of_run, run, row)), None)
        if job is not None and jobs.status(job).state == "complete":    # done, but this row's file is unreadable
            jobspanel.in_place(job, FOLLOW)                              # (removes the record)
            job = None
        waiting = None if job is not None else next((j for j in of_run if jobs.status(j).running), None)
        if waiting is not None:                          # one token job per run at a time: this row's starts next
            job = waiting
            st.info("Another token view of this run is being computed (each loads the model): this pair's starts "
                    "as soon as it is done.", icon=":material/hourglass_top:")
        elif job is None:                                # nothing recorded for this row: compute it, and the next ones
            job = _compute(tokenview.rows_to_compute(run, ranked_rows, row))
        if jobs.status(job).running and waiting is None:
            st.session_state[FOLLOW] = (str(job.file), row)
            st.info(f"Computing this pair's token states in the background with {key['model_id']} (with the next "
                    f"{tokenview.AHEAD} pairs of this ranking, which then open at once; stored with the run): it "
                    "shows here when it is done; you can leave this page or reload it.",
                    icon=":material/hourglass_top:")
        elif waiting is None:
            st.button("Compute the token view", key="tokens_compute", type="primary", icon=":material/play_arrow:",
                      on_click=_compute, args=(tokenview.rows_to_compute(run, ranked_rows, row),))
        jobspanel.in_place(job, FOLLOW, ready=lambda: tokenview.stored_view(run, row) is not None)
    st.stop()

with render.user_errors():
    if view.get("fingerprint") != key["fingerprint"]:
        st.warning("The model's weights differ from the ones this run was scored with; token values may not "
                   "match the stored scores.")
    res = mark_cuts({**view, "contributions": view["contributions"][metric]})
    pair = loaders.pair(run, row)

    contrib = np.asarray(res["contributions"], dtype=np.float64)
    total, stored = float(contrib.sum()), float(rec[metric])
    diff = total - stored
    rel = abs(diff) / max(abs(stored), 1e-30)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Sum of token contributions", f"{total:.6g}", help="Recomputed for this pair alone (by a job; stored with the run).")
    m2.metric(f"{METRICS[metric].label} stored in the run", f"{stored:.6g}",
              help="From the batched scoring run.")
    m3.metric("Difference", f"{diff:+.2e}", help=f"Relative: {rel:.1e}. Batching and padding change the float "
              f"rounding; more than {AGREE:g} relative would mean a different computation.")
    m4.metric("Tokens |y+| / |y-|", f"{len(res['chosen_tokens'])} / {len(res['rejected_tokens'])}")
    st.caption(f"The {len(contrib)} per-token contributions sum to {total:.10g}; the run stored {stored:.10g} "
               f"for this pair (difference {diff:+.3e}, relative {rel:.2e}).")
    if rel > AGREE:
        st.warning(f"The recomputed score differs from the stored one by {rel:.1e} (relative), more than float "
                   "rounding explains: the token view may not match this run.", icon=":material/error:")
    if res["truncated"]:
        st.warning(f"This pair was cut to the run's max length ({key['max_length']} tokens); only the tokens kept "
                   f"are shown, and {CUT_LABEL} marks where a response was cut.", icon=":material/content_cut:")

    chosen_ops, rejected_ops = pair_ops(res)
    st.html(legend_html())
    left, right = st.columns(2)
    with left:
        st.markdown(f"##### {render.CHOSEN} · shaded by contribution")
        st.html(tokens_html(res["chosen_tokens"], contrib.tolist(), chosen_ops, value_name="contribution"))
    with right:
        st.markdown(f"##### {render.REJECTED} · shaded by alignment ⟨h⁻ₖ, m⁺⟩")
        st.html(tokens_html(res["rejected_tokens"], list(res["rejected_alignment"]), rejected_ops,
                            value_name="alignment", center=True))
        st.caption("Shading is relative to the mean alignment; the tooltip shows the value.")

    st.markdown("##### Per-token contributions")
    st.plotly_chart(charts.token_contributions(contrib, res["chosen_tokens"]), width="stretch", key="pair_bars")

    st.markdown("##### Token diff (chosen → rejected)")
    diff_tokens = merged_diff(res["chosen_tokens"], res["rejected_tokens"], res["chosen_ids"], res["rejected_ids"])
    same = sum(1 for _, op in diff_tokens if op == "equal")
    st.caption(f"{same} tokens shared, {chosen_ops.count('deleted')} only in chosen (green, struck through), "
               f"{rejected_ops.count('inserted')} only in rejected (orange, underlined).")
    st.html(tokens_html([t for t, _ in diff_tokens], None, [op for _, op in diff_tokens]))

    with st.expander("Prompt", icon=":material/chat:"):
        render.conversation([dict(m) for m in pair.prompt])
