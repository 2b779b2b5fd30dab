"""Team: the active run's review plan (blind review; the riskiest N pairs assigned to named annotators with an
overlap k, as one queue each) and how the team agrees (Krippendorff's alpha, Cohen's kappa per pair of
annotators, the team statuses, the conflicts and who settled them).

With sign-in on, only an admin (`ui.auth.can("adjudicate")`, checked again when a button is pressed:
`state.allowed`) changes the assignment or settles a conflict, and while review is blind an annotator sees the
statistics but not the conflicts (they name everyone's decisions).
Without sign-in everyone may do everything, as on every page.
"""
from dataclasses import replace

import streamlit as st

from ches.engine.metrics import METRICS
from ches.review import allowlist, team_rules
from ches.review import decisions as decision_log
from ches.review.charts import kappa_heatmap
from ches.review.assignment import Assignment, AssignmentError, assign, progress, riskiest, write_assignment
from ui import auth, frame, loaders, render, state

frame.page("Team")      # first: page config, sign-in gate, the URL's state, the sidebar

BLIND = "team_blind"
PER_PAGE = 20

run = state.require_run()
table = loaders.scores(run)
view = loaders.team()
me = state.annotator()
assignment, assignment_error = state.assignment(run)
admin, why_not = auth.can("adjudicate"), auth.refuse("adjudicate")

st.title("Team")
state.show_flash()
if assignment_error:
    st.warning(f"The run's review plan cannot be read ({assignment_error}). Assign the pairs again to rewrite it.",
               icon=":material/warning:")


def _bump() -> None:
    st.session_state[loaders.DECISIONS_VERSION] = st.session_state.get(loaders.DECISIONS_VERSION, 0) + 1


# ---------------------------------------------------------------------------------------- the assignment

st.subheader("Review plan")


def _set_blind() -> None:
    if not state.allowed("adjudicate"):
        return
    now, _ = state.assignment(run)                  # read again: keep the queues someone else wrote meanwhile
    write_assignment(run, replace(now, blind=bool(st.session_state[BLIND])))
    state.flash("success", "Review is blind: nobody sees the others' decisions on a pair before deciding it."
                if st.session_state[BLIND] else "Review is open: everyone sees the others' decisions.")


if st.session_state.get(BLIND) != assignment.blind:
    st.session_state[BLIND] = assignment.blind
st.toggle("Blind review", key=BLIND, on_change=_set_blind, disabled=not admin,
          help=why_not or "Each annotator sees the others' decisions on a pair (in the decision bar, Browse's team "
          "column and this page's conflicts) only after deciding it. Stored with the run (review.json).")

if auth.enabled():
    try:
        members = [m.name for m in allowlist.load_team(state.ws().root / allowlist.TEAM_FILE).members]
    except allowlist.TeamError as e:
        members = []
        st.error(f"The team list cannot be read: {e}", icon=":material/error:")
else:
    members = None



def _assign() -> None:
    """Assign's callback: it runs before the page is drawn, so the page shows the new queues without a
    rerun (a rerun in a run would drop another click that run carries: bench/click_bench.py)."""
    if not state.allowed("adjudicate"):
        return
    ss = st.session_state
    picked = ss["team_names"] if members is not None else [a.strip() for a in ss["team_names"].split(",") if a.strip()]
    metric, n, overlap = ss["team_metric"], int(ss["team_n"]), int(ss["team_k"])
    try:
        queues = assign(riskiest(table, metric), picked, n, overlap)
    except AssignmentError as e:
        state.flash("error", str(e))
        return
    now, _ = state.assignment(run)
    write_assignment(run, Assignment(blind=now.blind, metric=metric, n=n, overlap=overlap, queues=queues))
    state.flash("success", f"Assigned the {n:,} riskiest pairs by {METRICS[metric].label} to {len(queues)} "
                           f"annotators, {overlap} per pair.")


with st.form("team_assign", border=True):
    st.markdown("**Assign the riskiest pairs** — each annotator gets a queue (Browse, Review layout: *My queue*).")
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Riskiest by", list(METRICS), format_func=lambda m: METRICS[m].label,
                          index=list(METRICS).index(assignment.metric) if assignment.metric in METRICS else 0,
                          key="team_metric")
    c2.number_input("Pairs (the riskiest N)", min_value=0, max_value=len(table), step=1, key="team_n",
                        value=min(assignment.n, len(table)) if assignment.queues else min(100, len(table)))
    c3.number_input("Overlap k (annotators per pair)", min_value=1, max_value=50, step=1, key="team_k",
                              value=assignment.overlap if assignment.queues else 2,
                              help="Each of the N pairs goes to k different annotators: their agreement is measured "
                              "on those pairs.")
    if members is not None:
        st.multiselect("Annotators", members, default=[a for a in assignment.queues if a in members],
                       key="team_names", help=f"The members listed in {allowlist.TEAM_FILE}.")
    else:
        st.text_input("Annotators (comma-separated names, as they type them in the sidebar)",
                      value=", ".join(assignment.queues), key="team_names", placeholder="ann-a, ann-b")
    st.form_submit_button("Assign", icon=":material/assignment_ind:", type="primary", disabled=not admin,
                          on_click=_assign, help=why_not or "Replaces the run's queues (decisions are kept).")

if assignment.queues:
    by = METRICS[assignment.metric].label if assignment.metric in METRICS else assignment.metric
    st.caption(f"The {assignment.n:,} riskiest pairs by {by}, each to {assignment.overlap} annotator(s). Done: decided "
               "by that annotator.")
    st.dataframe(progress(assignment, view.by_annotator), hide_index=True, key="team_queues")

    def _clear_queues() -> None:
        if not state.allowed("adjudicate"):
            return
        now, _ = state.assignment(run)
        write_assignment(run, replace(now, n=0, queues={}))
        state.flash("info", "The queues are cleared (decisions are kept).")

    st.button("Clear the queues", key="team_clear", icon=":material/clear_all:", on_click=_clear_queues,
              disabled=not admin, help=why_not)
else:
    st.caption("Nothing assigned: everyone reviews the whole ranking.")

# ----------------------------------------------------------------------------------- agreement

st.subheader("Agreement")
status, stats = loaders.team_counts(run), loaders.team_agreement(run)
cols = st.columns(len(team_rules.TEAM_STATUSES) + 1)
for col, name in zip(cols, team_rules.TEAM_STATUSES):
    col.metric(name.capitalize(), f"{int(status.get(name, 0)):,}")
alpha = stats["alpha"]
cols[-1].metric("Krippendorff's alpha", "—" if alpha != alpha else f"{alpha:.3f}",
                help="Nominal, over this run's pairs decided by two or more annotators (1 = full agreement, "
                "0 = chance; — when undefined: no such pair, or one decision value only).")
kappas = stats["kappas"]
kappas = kappas[kappas["shared"] > 0].reset_index(drop=True)
if kappas.empty:
    st.caption("No pair of this run has been decided by two annotators yet: kappa needs shared pairs.")
else:
    k1, k2 = st.columns([3, 2]) if len(set(kappas["a"]) | set(kappas["b"])) >= 3 else (st.container(), None)
    k1.dataframe(kappas, hide_index=True, key="team_kappa", column_config={
        "a": "annotator", "b": "and",
        "shared": st.column_config.NumberColumn("pairs both decided"),
        "agree": st.column_config.NumberColumn("same decision", format="percent"),
        "kappa": st.column_config.NumberColumn("Cohen's kappa", format="%.3f")})
    k1.caption("Cohen's kappa per pair of annotators over the pairs both decided (blank: fewer than 2, or only "
               "one decision value).")
    if k2 is not None:
        k2.plotly_chart(kappa_heatmap(kappas), width="stretch", key="team_kappa_map")

# ----------------------------------------------------------------------------------- conflicts

st.subheader("Conflicts")
if assignment.blind and not admin:
    st.info("Review is blind: the conflicts (everyone's decisions) are shown to admins only.",
            icon=":material/visibility_off:")
    st.stop()
row_of = dict(zip(table["pair_id"], table["row"]))
told = [f"row {row_of[p]}: you settled {mine.action}, {render.escape_md(now.annotator)} settled {now.decision}"
        for p, (mine, now) in loaders.overridden().items() if p in row_of]
if told:                                          # my settlements another adjudicator has since changed
    st.warning("Another adjudicator changed your settlement — " + "; ".join(sorted(told)) + ".",
               icon=":material/gavel:")
found = stats["conflicts"]
found["row"] = found["pair_id"].map(row_of)
risk = dict(zip(table["pair_id"], table[assignment.metric if assignment.metric in table.columns else "ln_ches"]))
found = found.assign(_risk=found["pair_id"].map(risk)).sort_values("_risk", ascending=False, kind="stable")
open_ = found[found["status"] == team_rules.CONFLICT]
settled = found[found["status"] == team_rules.SETTLED]
if assignment.blind:
    st.caption("Review is blind: annotators do not see this list; you do, to settle it." if auth.enabled() else
               "Review is blind, but without sign-in everyone can open this page: annotators still deciding "
               "should not read this list.")
if not me:
    st.caption("Give your name in the sidebar to settle a conflict: it is recorded with the settlement.")


def _settle(pair_id: str, row: int, value: str) -> None:
    if not state.allowed("adjudicate"):
        return
    decision_log.record(state.ws().decisions, pair_id, value, annotator=state.annotator(), adjudicate=True,
                        session=state.session_id())
    _bump()
    state.flash("success" if value != decision_log.CLEAR else "info",
                f"Row {row}: settled as {value}." if value != decision_log.CLEAR else f"Row {row}: reopened.")


def _open(row: int) -> None:
    state.open_row(row)
    st.session_state[state.MY_QUEUE] = False         # Browse's "My queue" off, so this pair shows whoever has it


if open_.empty:
    st.caption("No open conflict on this run's pairs." if found.empty else "Every conflict is settled.")
else:
    pages = -(-len(open_) // PER_PAGE)
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key="team_conflict_page"))
    shown = open_.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]
    st.caption(f"{len(open_):,} open conflict(s), riskiest first. Keep / Drop settles the pair for the team "
               "(the export's team rules use it); the annotators' own decisions stay as they are.")
    prompts = loaders.texts(run, shown["row"].astype(int).tolist()).set_index("row")["prompt"]
    for r in shown.itertuples():
        row = int(r.row)
        with st.container(border=True):
            left, right = st.columns([4, 2])
            left.markdown(f"**Row {row}** · {render.escape_md(r.decisions)}")
            left.caption(render.escape_md(render.prompt_preview(prompts.get(row), 160)))
            b1, b2, b3 = right.columns(3)
            for col, value, label in ((b1, decision_log.KEEP, "Keep"), (b2, decision_log.DROP, "Drop")):
                col.button(label, key=f"settle_{value}_{r.pair_id}", on_click=_settle, args=(r.pair_id, row, value),
                           disabled=not (admin and me), help=why_not or (None if me else "Give your name first."),
                           width="stretch")
            if b3.button("Open", key=f"team_open_{r.pair_id}", icon=":material/open_in_new:", width="stretch",
                         on_click=_open, args=(row,), help="Open this pair in Browse"):
                st.switch_page("pages/browse.py")

if not settled.empty:
    st.markdown("**Settled**")
    st.dataframe(settled[["row", "decisions", "settled", "by"]], hide_index=True, key="team_settled",
                 column_config={"settled": "settled as", "by": "settled by"})
    s1, s2 = st.columns([3, 1])
    pick = s1.selectbox("Reopen a settled pair", settled["pair_id"].tolist(), key="team_reopen_pick",
                        format_func=lambda p: f"row {int(settled.set_index('pair_id').at[p, 'row'])}")
    s2.button("Reopen", key="team_reopen", icon=":material/undo:", disabled=not (admin and me),
              on_click=_settle, args=(pick, int(settled.set_index("pair_id").at[pick, "row"]), decision_log.CLEAR),
              help=why_not or "Withdraw the settlement: the pair is a conflict again.")
