"""Browse: rank the active run's pairs by a metric, filter them, read one pair, decide keep / drop / flag.

Two layouts: "Review" shows one pair with its buttons at the top of the page, one after another in
"next undecided" order; "Table" adds the distribution, score vs length and the ranked table above it.

Each annotator's decision is their own: `decision` is mine (the session's annotator), `team` the pair's team
status (single / agreed / conflict / settled), shown as "hidden (blind)" on the pairs I have not decided
while the run's review is blind. "Next undecided" means undecided by me. In Review, an annotator with a
queue in the run's assignment (pages/team.py) works through it in its order ("My queue", on by default).
"""
import streamlit as st

from ui import decisionbar, frame, loaders, render, sidebar, state
from ches.review.browse import (HIDDEN, PAGE_SIZE, Undecided, filter_pairs, has_any_flag, in_queue,
                                next_undecided, page_count, page_of, pair_to_open, percentile_of, team_column)
from ches.review.team_rules import TEAM_STATUSES
from ches.review.charts import score_histogram, score_vs_length
from ches.review.decisions import STATUSES
from ches.engine.pairs import FLAGS
from ches.engine.metrics import METRICS

frame.page("Browse")      # first: page config, sign-in gate, the URL's state, the sidebar

TABLE = "browse_table"
MODE = "browse_mode"          # the layout control; the layout itself is state.LAYOUT (kept off this page, in the URL)
SHORT_RULE_PERCENT = 10.0     # the short-response notice reads the set a "keep the lowest 10%" rule keeps
QUEUE = "browse_queue"        # the "My queue" toggle; its value is state.MY_QUEUE (kept while other pages are open)

run = state.require_run()
table = loaders.scores(run)
me = state.annotator()
team = loaders.team()
mine = team.mine(me) if me else {}
assignment, assignment_error = state.assignment(run)
team_col = team_column(table["pair_id"], team, me, assignment.blind)

st.title("Browse")

# ------------------------------------------------------------------------------ metric + filters
c_metric, c_mode, c_help = st.columns([1, 1, 3])
metric = c_metric.selectbox("Rank by", list(METRICS), format_func=lambda m: METRICS[m].label, key="browse_metric")
if st.session_state.get(MODE) != state.layout():
    st.session_state[MODE] = state.layout()
mode = c_mode.segmented_control("Layout", list(state.LAYOUTS), format_func=state.LAYOUTS.get, key=MODE,
                                required=True, on_change=lambda: st.session_state.update(
                                    {state.LAYOUT: st.session_state.get(MODE)}),
                                help="Review: one pair with its buttons, next undecided after each decision. "
                                "Table: the distribution, score vs length and the ranked table above the pair.")
c_help.caption(METRICS[metric].help + "  \nHighest scores first: the pairs most likely to cause likelihood "
               "displacement. The paper filters by keeping the lowest LN-CHES pairs.")
short = loaders.short_rule_notice(run, metric, SHORT_RULE_PERCENT)
if short:
    st.warning(render.escape_md(short), icon=":material/short_text:")

focus = st.session_state.get(state.FOCUS_ROWS)
if focus:
    c1, c2 = st.columns([4, 1])
    c1.info(f"Showing only the {len(focus)} pairs selected elsewhere (e.g. a lasso on the Map).",
            icon=":material/filter_alt:")
    c2.button("Clear selection", key="browse_clear_focus", icon=":material/filter_alt_off:",
              on_click=lambda: st.session_state.pop(state.FOCUS_ROWS, None))

values = table[metric]
with st.expander("Filters", expanded=mode == "table", icon=":material/tune:"):
    f1, f2, f3 = st.columns(3)
    band = f1.slider("Percentile band", 0, 100, (0, 100), key="browse_pct",
                     help="Percentile of the metric over the whole run (100 = highest score).")
    lo, hi = float(values.min()), float(values.max())
    score_range = None
    if hi > lo:
        picked = f2.slider(f"{METRICS[metric].label} range", lo, hi, (lo, hi), key=f"browse_range_{metric}",
                           format="%.4g")
        score_range = None if picked == (lo, hi) else picked
    lengths = table[["len_chosen", "len_rejected"]]
    lmin, lmax = int(lengths.min().min()), int(lengths.max().max())
    length_range = None
    if lmax > lmin:
        picked_len = f3.slider("Response length (tokens, both sides)", lmin, lmax, (lmin, lmax), key="browse_len")
        length_range = None if picked_len == (lmin, lmax) else picked_len
    g1, g2, g3, g4 = st.columns(4)
    present = sorted({f for cell in table["flags"].unique() for f in str(cell).split(",") if f})
    flags = g1.multiselect("Flags (any of)", present, key="browse_flags",
                           format_func=lambda f: f"{f} ({int(has_any_flag(table['flags'], [f]).sum())})",
                           help="\n\n".join(f"**{f}**: {FLAGS.get(f, '')}" for f in present) or None)
    status = g2.multiselect("My decision", STATUSES, key="browse_status",
                            help="Your own decision on the pair (undecided: you have not decided it)." +
                            ("" if me else " Give your name in the sidebar: until then every pair is undecided."))
    team_options = [*TEAM_STATUSES, HIDDEN] if assignment.blind else list(TEAM_STATUSES)
    if not set(st.session_state.get("browse_team") or ()) <= set(team_options):     # blind was turned off
        st.session_state["browse_team"] = [t for t in st.session_state["browse_team"] if t in team_options]
    team_filter = g3.multiselect("Team status", team_options, key="browse_team",
                                 help="undecided: nobody decided it · single: one annotator · agreed: two or more, "
                                 "the same · conflict: two or more, not the same · settled: an adjudicator decided "
                                 "(on the Team page)." + (f" Blind review: {HIDDEN} until you decide the pair."
                                                          if assignment.blind else ""))
    query = g4.text_input("Search prompt and responses", key="browse_query",
                          placeholder="case-insensitive substring")

rows_filter = None
if focus:
    rows_filter = {int(r) for r in focus}
if query.strip():
    hits = loaders.search(run, query)
    rows_filter = hits if rows_filter is None else rows_filter & hits

ranked = filter_pairs(table, metric=metric, percentile=band, score_range=score_range, flags=flags, status=status,
                      decisions=mine, rows=rows_filter, length_range=length_range, team=team_col,
                      team_filter=team_filter)

queue = assignment.queue(me) if me else ()
in_my_queue = False
if mode == "review" and queue:
    # my queue in the run's assignment, in its order (the riskiest first), with the filters still applied
    if st.session_state.get(QUEUE) != st.session_state.get(state.MY_QUEUE, True):
        st.session_state[QUEUE] = st.session_state.get(state.MY_QUEUE, True)
    in_my_queue = st.toggle("My queue", key=QUEUE,
                            on_change=lambda: st.session_state.update({state.MY_QUEUE: st.session_state[QUEUE]}),
                            help=f"The {len(queue):,} pairs assigned to you on the Team page, in their order; off: "
                            "the whole ranking.")
    if in_my_queue:
        ranked = in_queue(ranked, queue)
elif queue:
    st.caption(f"{len(queue):,} pairs are assigned to you: the Review layout takes you through them in order.")
ranked_rows = ranked["row"].tolist()

if assignment_error:
    st.warning(f"The run's review plan cannot be read ({assignment_error}); review is treated as blind and nothing is "
               "assigned until it is written again on the Team page.", icon=":material/warning:")
if not me:
    st.caption("Give your name in the sidebar: until then *My decision* is undecided on every pair.")
n_flagged = int((table["flags"] != "").sum())
if mode == "table":
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Pairs in run", f"{len(table):,}")
    m2.metric("Shown by filters", f"{len(ranked):,}")
    m3.metric("With data flags", f"{n_flagged:,}", help="Pairs with at least one load-time or scoring flag.")
    m4.metric("Decided by me", f"{sum(loaders.my_counts(run).values()):,}",
              help="Pairs of this run with a keep / drop / flag decision of yours (the team's: the Team status "
              "filter, the sidebar and the Team page).")

# -------------------------------------------------------------------------------- current pair
current = pair_to_open(ranked_rows, st.session_state.get(state.PAIR_ROW), Undecided(loaders.pair_of(run), mine),
                       review=mode == "review")
if current is not None:
    state.open_row(current)            # the same pair on Pair / tokens, on the Map, and in the address

if mode == "table":
    h1, h2 = st.columns(2)
    marker = float(table.loc[table["row"] == current, metric].iloc[0]) if current is not None else None
    h1.plotly_chart(score_histogram(values, metric=metric, marker=marker), width="stretch", key="browse_hist")
    h1.caption(f"{METRICS[metric].label} over all {len(table):,} pairs (1st-99th percentile axis; pairs beyond "
               "it are counted in the edge bars)." + (f" Red: row {current}." if current is not None else ""))
    h2.plotly_chart(score_vs_length(table, metric, current=current), width="stretch", key="browse_length")
    h2.caption("Score against the chosen response's length: very short responses dominate LN-CHES.")

if not ranked_rows:
    with st.sidebar:
        sidebar.counts()        # drawn by the pair panel otherwise
    st.info("No pair matches these filters.", icon=":material/search_off:")
    st.stop()

# -------------------------------------------------------------------------------- ranked table
if mode == "table":
    n_pages = page_count(len(ranked))
    p1, p2 = st.columns([1, 5])
    page = p1.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key="browse_page")
    p2.caption(f"{PAGE_SIZE} pairs per page; select a row to open it below. Only this page's texts are read.")
    view = page_of(ranked, page).copy()
    view.insert(0, "rank", range((int(page) - 1) * PAGE_SIZE + 1, (int(page) - 1) * PAGE_SIZE + 1 + len(view)))
    txt = loaders.texts(run, view["row"].tolist()).set_index("row")

    view["prompt"] = view["row"].map(txt["prompt"]).map(render.prompt_preview)
    view["chosen"] = view["row"].map(txt["chosen"]).map(render.preview)
    view["rejected"] = view["row"].map(txt["rejected"]).map(render.preview)
    view = view.reset_index(drop=True)
    st.session_state["_browse_page_rows"] = view["row"].tolist()
    # a decision or an undo gives the table a new key: the old row tick must not reopen its pair
    table_key = f"{TABLE}_{st.session_state.get(loaders.DECISIONS_VERSION, 0)}"

    def _open_selected() -> None:
        sel = st.session_state[table_key].selection.rows
        rows = st.session_state.get("_browse_page_rows", [])
        if sel and sel[0] < len(rows):
            st.session_state[state.PAIR_ROW] = int(rows[sel[0]])

    shown = ["rank", "row", metric, "percentile", "decision", "team", "flags", "prompt", "chosen", "rejected",
             "len_chosen", "len_rejected"]
    st.dataframe(view, key=table_key, on_select=_open_selected, selection_mode="single-row", hide_index=True,
                 width="stretch", height=min(38 + 35 * len(view), 420), column_order=shown,
                 column_config={
                     metric: st.column_config.NumberColumn(METRICS[metric].label, format="%.4g"),
                     "percentile": st.column_config.ProgressColumn("pctl", min_value=0, max_value=100, format="%.0f"),
                     "rank": st.column_config.NumberColumn("#", width="small"),
                     "decision": st.column_config.TextColumn("my decision", help="Your own decision"),
                     "team": st.column_config.TextColumn("team", help="The team status" + (
                         f" ({HIDDEN} until you decide the pair: blind review)" if assignment.blind else "")),
                     "row": st.column_config.NumberColumn("row", width="small", format="%d"),
                     "len_chosen": st.column_config.NumberColumn("|y+|", width="small"),
                     "len_rejected": st.column_config.NumberColumn("|y-|", width="small"),
                 })
    st.divider()


# ---------------------------------------------------------------------------------- the pair
@st.fragment
def pair_panel(ranked_rows: list[int], ranked_pids: list[str], review: bool, queue: tuple[str, ...]) -> None:
    """The open pair with its decision bar, and the sidebar's counts. A fragment: in Review a press (or Skip) reruns
    this panel alone, one script run, not the page; the ranking is the one the page computed, the decisions are
    read fresh. In Table a press reruns the page (the table and charts show the decision too)."""
    decisionbar.take_pending()
    mine = loaders.mine()
    undecided = Undecided(loaders.pair_of(run), mine)
    row = pair_to_open(ranked_rows, st.session_state.get(state.PAIR_ROW), undecided, review)
    state.open_row(row)
    rec = table.loc[table["row"] == row].iloc[0]
    pair_text = loaders.texts(run, [row]).iloc[0]
    position = ranked_rows.index(row) + 1
    following = next_undecided(ranked_rows, row, undecided)
    whole_page = not review      # Review: a press reruns this fragment; Table: the page (its table and charts)
    if review:
        todo = len(ranked_pids) - sum(1 for p in ranked_pids if p in mine)
        done = f"My queue: {sum(1 for p in queue if p in mine):,} of {len(queue):,} done · " if queue else ""
        st.caption(f"{done}{len(table):,} pairs in the run · {len(ranked_rows):,} shown · {todo:,} of them undecided "
                   f"by me · {sum(loaders.my_counts(run).values()):,} decided by me in the "
                   f"run · {n_flagged:,} with data flags")

    title = f"Row {row} · rank {position:,} of {len(ranked_rows):,}"
    head, nav = st.columns([3, 2])
    head.caption(f"LN-CHES {rec['ln_ches']:.4g} · CHES {rec['ches']:.4g} · edit similarity {rec['edit_sim']:.3f} · "
                 f"last-hidden IP {rec['last_hidden_ip']:.4g} · percentile of {METRICS[metric].label} "
                 f"{percentile_of(values, rec[metric]):.1f}")
    n1, n2 = nav.columns(2)
    n1.button("Skip", key="skip", icon=":material/skip_next:", width="stretch", disabled=following is None,
              on_click=decisionbar.open_row, args=(following if following is not None else row, whole_page),
              help="Open the next undecided pair without deciding (S)", shortcut="s")
    if n2.button("Tokens", key="tokens", icon=":material/compare_arrows:", width="stretch",
                 help="Open this pair in the token view"):
        st.switch_page("pages/pair.py")
    decisionbar.show(rec["pair_id"], row, following, heading=title, whole_page=whole_page)
    row_flags = [f for f in str(rec["flags"]).split(",") if f]
    if row_flags:
        st.warning("  \n".join(f"**{render.escape_md(f)}**: {render.escape_md(FLAGS.get(f, ''))}" for f in row_flags),
                   icon=":material/flag:")

    prompt = render.parse_messages(pair_text["prompt"])
    if len(prompt) > 1:
        with st.expander(f"Earlier turns ({len(prompt) - 1})", icon=":material/forum:"):
            render.conversation(prompt[:-1])
    render.conversation(prompt[-1:])
    # only where the flag is set: a missing value in the column reads back as NaN, never a prompt
    rejected_prompt = render.parse_messages(pair_text["rejected_prompt"]) if "prompt_mismatch" in row_flags else []
    if rejected_prompt:
        with st.expander("The rejected side's prompt differs (prompt_mismatch)"):
            render.conversation(rejected_prompt)
    render.responses(pair_text["chosen"], pair_text["rejected"],
                     (f" · {int(rec['len_chosen'])} positions", f" · {int(rec['len_rejected'])} positions"))
    with st.sidebar:
        sidebar.counts()


state.show_flash()
pair_panel(ranked_rows, ranked["pair_id"].tolist(), mode == "review", queue if in_my_queue else ())
