"""Probe: check CHES's prediction on the run's own model (a few DPO steps on a subset, log-probs before/after).

A probe runs as a job (`ches probe`, ches/engine/jobs.py), one per run and settings: Run (or Repeat) starts
it, or follows the one already running with those settings; its progress and Cancel show under the button
and in the sidebar, a reload or another tab finds it again, and the probe opens here once it is stored. A
probe folder appears only when complete, so a cancelled probe stores nothing.
"""
from pathlib import Path

import streamlit as st

from ui import auth, frame, jobspanel, loaders, render, state
from ches.cli.probe import probe_args
from ches.engine import jobs
from ches.engine.metrics import METRICS
from ches.review import charts
from ches.review.probe.analysis import band_means, band_points, probe_table, significant, spearman
from ches.review.probe.settings import (MIN_PAIRS, ONE_EPOCH, ProbeSettings, default_band, defaults, one_epoch,
                                        probe_fit, select_rows)
from ches.review.probe.storage import is_complete, list_probes, probe_path, read_probe

frame.page("Probe")      # first: page config, sign-in gate, the URL's state, the sidebar

FOLLOW = {"run": "_probe_job", "repeat": "_probe_repeat_job"}   # each button's job this session follows: opened
OPEN = "probe_open"                 # the probe folder shown below (this page's own state)
SOURCES = ("Percentile band", "Map / Browse selection")
RAN = "Probe finished and stored with the run."

run = state.require_run()
table = loaders.scores(run)
key = loaders.manifest(run)["key"]
for follow in FOLLOW.values():
    done = jobspanel.finished(follow)          # (probe folder, what to say) of a job followed here that is over
    if done and is_complete(Path(done[0])):
        st.session_state[OPEN] = done[0]
        state.flash("success", done[1])
st.title("Probe")
state.show_flash()
st.caption("Does CHES predict likelihood displacement on *your* model? The probe trains a fresh copy of the run's "
           "model with DPO (TRL's sigmoid loss, RMSprop) on a subset of the pairs and measures log π(y⁺|x) and "
           "log π(y⁻|x) before and after, summed over the response tokens and EOS: the positions CHES uses. "
           "In the paper (Sec. 5) the chosen likelihood drops most on the highest-CHES pairs. The run's scores "
           "are never changed; each probe is stored with the run.")


def _job_args(todo: list[ProbeSettings], said: str) -> tuple[list[str], tuple[str, str]]:
    """The `ches probe` arguments that train `todo` (one settings, one probe per seed) and what their job opens
    when it is done: the last seed's probe folder, and `said`."""
    argv = probe_args(run, todo[0], [s.seed for s in todo], rows_dir=state.ws().jobs)
    return argv, (str(probe_path(run, select_rows(table, todo[-1]), todo[-1])), said)


def _start(todo: list[ProbeSettings], button: str, said: str) -> None:
    """Start the probe job for `todo`, followed by `button`'s session key, or reopen the probes when every one
    is stored. It trains model copies on the server: the role is checked when pressed (an admin's, with
    sign-in on)."""
    if not state.allowed("score"):
        return
    with state.errors_flashed():
        argv, opens = _job_args(todo, said)
        if all(is_complete(probe_path(run, select_rows(table, s), s)) for s in todo):
            st.session_state[OPEN] = opens[0]
            state.flash("success", "Reopened the stored probe." if len(todo) == 1 else "Reopened the stored probes.")
            return
        jobspanel.start("probe", run, argv, label=f"{todo[0].describe()} · seeds "
                        f"{', '.join(str(s.seed) for s in todo)} · run {run.name[:8]}", follow=FOLLOW[button],
                        opens=opens)


# ------------------------------------------------------------------------------------ 1. the pairs
st.subheader("1 · Pairs")
preset = defaults(key["model_id"])
source = st.radio("Pairs", SOURCES, horizontal=True, key="probe_source", label_visibility="collapsed")
focus = [int(r) for r in st.session_state.get(state.FOCUS_ROWS) or []]
c1, c2, c3 = st.columns([1, 2, 1])
metric = c1.selectbox("Rank by", list(METRICS), format_func=lambda m: METRICS[m].label, key="probe_metric",
                      help="The paper's percentile study (Sec. 5) ranks by raw CHES.")
if source == SOURCES[0]:
    band = c2.slider("Percentile band", 0, 100, default_band(preset, table), key="probe_band",
                     help="Percentile of the metric over the whole run (100 = highest score = riskiest).")
    n = c3.number_input("Pairs (n)", min_value=1, max_value=len(table), value=None, placeholder="fitted to the band",
                        key="probe_n", help=f"The n pairs centred in the band: at least {MIN_PAIRS} and at least the "
                        f"batch size. Empty: {preset['n']}, or all the band's pairs if it holds fewer.")
    subset = dict(subset="band", band=(float(band[0]), float(band[1])), n=None if n is None else int(n))
elif focus:
    c2.info(f"The {len(focus)} pairs selected on the Map (shown on Browse).", icon=":material/filter_alt:")
    subset = dict(subset="ids", ids=tuple(focus))
else:
    c2.info("Nothing selected: select pairs on the Map (box or lasso), or pick a percentile band.",
            icon=":material/info:")
    subset = None

# ---------------------------------------------------------------------------------- 2. settings
st.subheader("2 · Training")
s1, s2, s3, s4, s5 = st.columns(5)
batch = s2.number_input("Batch (pairs)", min_value=1, value=None, placeholder="fitted to n", key="probe_batch",
                        help=f"Pairs per step. Empty: {preset['batch_size']}, or n if it is smaller.")
lr = s3.number_input("Learning rate", min_value=0.0, value=preset["lr"], format="%.1e", step=1e-7, key="probe_lr",
                     help="RMSprop. The paper: 1e-7 for 1B-8B models; the bundled 135M model needs more to move.")
beta = s4.number_input("β", min_value=0.0, value=preset["beta"], format="%.2f", step=0.05, key="probe_beta",
                       help="DPO's KL coefficient (the paper: 0.1).")
seed = s5.number_input("Seed", min_value=0, value=0, key="probe_seed", help="Order of the pairs across steps.")

fit = settings = stored = job = None
with render.user_errors():
    if subset is not None:
        fit = probe_fit(preset, table, metric=metric, batch_size=None if batch is None else int(batch), **subset)
steps = s1.number_input("Steps", min_value=1, value=None, key="probe_steps",
                        placeholder=one_epoch(fit.n, fit.batch_size) if fit else "one epoch",
                        help=f"Optimizer steps. Empty: {ONE_EPOCH} (as `ches probe` without --steps).")
with render.user_errors():
    if fit is not None:
        settings = ProbeSettings(metric=metric, steps=None if steps is None else int(steps),
                                 batch_size=fit.batch_size, lr=float(lr), beta=float(beta), seed=int(seed),
                                 **{**subset, "n": fit.n})
        stored = is_complete(probe_path(run, select_rows(table, settings), settings))
        st.caption(render.escape_md(settings.describe() + (f" ({fit.note})" if fit.note else ""))
                   + (" · **stored**: running reopens it." if stored else ""))
        argv, opens = _job_args([settings], RAN)
        job = jobspanel.page_job("probe", run, argv, follow=FOLLOW["run"], opens=opens)

busy = job is not None and jobs.status(job).running
st.button("Run probe", type="primary", icon=":material/play_arrow:", key="probe_go", on_click=_start,
          args=([settings], "run", RAN), disabled=settings is None or not auth.can("score") or busy,
          help=auth.refuse("score") or ("Running: its progress is below." if busy else "Trains in the background: "
                                        "you can leave this page, reload it or cancel; the probe opens when stored."))
jobspanel.in_place(job, FOLLOW["run"])

# ------------------------------------------------------------------------------ 3. stored probes
st.subheader("3 · Probes of this run")
probes = list_probes(run)
if not probes:
    st.caption("No probe yet.")
    st.stop()
paths = [str(p) for p, _ in probes]
if st.session_state.get(OPEN) not in paths:
    st.session_state[OPEN] = paths[0]


def _open_selected() -> None:
    rows = st.session_state["probe_table"].selection.rows
    if rows:
        st.session_state[OPEN] = paths[rows[0]]


st.dataframe([{"open": p == st.session_state[OPEN], "created": m["created_at"][:16].replace("T", " "),
               "subset": m["describe"], "pairs": m["pairs"],
               "mean |y+|": significant(m["summary"].get("mean_len_chosen", float("nan"))),
               "mean change log π(y+) (nats)": significant(m["summary"]["mean_delta_chosen"], signed=True),
               "per token": significant(m["summary"].get("mean_delta_chosen_per_token", float("nan")), signed=True),
               "mean change log π(y-) (nats)": significant(m["summary"]["mean_delta_rejected"], signed=True),
               "lost y+": m["summary"]["lost_chosen"], "seconds": m["seconds"]} for p, m in probes],
             hide_index=True, width="stretch", key="probe_table", on_select=_open_selected,
             selection_mode="single-row",
             column_config={"open": st.column_config.CheckboxColumn("open", width="small")})
st.caption("Select a row to open that probe. change = after − before, in nats summed over the response "
           "(|y⁺| tokens, EOS included); per token = the mean over the pairs of change / |y⁺|; n/a: a probe stored "
           "before these were recorded.")
opened = next(m for p, m in probes if str(p) == st.session_state[OPEN])
axis_default = opened["settings"]["metric"]
axis = st.selectbox("Score axis", list(METRICS), index=list(METRICS).index(axis_default),
                    format_func=lambda m: METRICS[m].label, key=f"probe_axis_{opened['key']}",
                    help="Opens on the metric the open probe selected its pairs by.")
st.markdown(f"##### Mean change of log π(y⁺|x) by {METRICS[axis].label} percentile, over this run's probes")
st.plotly_chart(charts.probe_bands(band_points(run, probes, axis), axis), width="stretch", key="probe_bands")
st.caption("One point per probe; probes that differ only in their seed form one point, with the standard "
           "deviation over the seeds as its error bar (repeat a probe with seeds below). The paper's Figure 2: "
           "CHES predicts lower points to the right.")

# ------------------------------------------------------------------------------------ 4. results
manifest, results = read_probe(Path(st.session_state[OPEN]))
t = probe_table(run, results)
summary = manifest["summary"]
st.subheader("4 · Results")
st.caption(render.escape_md(manifest["describe"]) + f" · {manifest['steps']} step(s) · {manifest['device']} · "
           f"{manifest['seconds']:.0f} s")
shown = axis
r1, r2, _ = st.columns([1, 2, 2])
k = r1.number_input("Seeds", min_value=1, max_value=20, value=2, key="probe_repeat_k",
                    help="Run the open probe's settings again with seeds 1..k (stored ones are reopened).")
base = ProbeSettings.from_dict(manifest["settings"])
repeat = [ProbeSettings.from_dict({**base.as_dict(), "seed": seed}) for seed in range(1, int(k) + 1)]
again = f"Probes with seeds 1..{int(k)} stored with the run."
repeating = None
with render.user_errors():
    argv, opens = _job_args(repeat, again)
    repeating = jobspanel.page_job("probe", run, argv, follow=FOLLOW["repeat"], opens=opens)
r2.button(f"Repeat with seeds 1..{int(k)}", icon=":material/replay:", key="probe_repeat", on_click=_start,
          args=(repeat, "repeat", again), help=auth.refuse("score"),
          disabled=not auth.can("score") or (repeating is not None and jobs.status(repeating).running))
jobspanel.in_place(repeating, FOLLOW["repeat"])
m1, m5, m6, m2, m3, m4 = st.columns(6)
m1.metric("Mean change of log π(y⁺|x)", significant(summary["mean_delta_chosen"], signed=True),
          help="nats, summed over the response: after − before training, averaged over the pairs")
m5.metric("per response token", significant(t["delta_chosen_per_token"].mean(), signed=True),
          help="nats per token: the mean over the pairs of change / |y⁺| (content tokens + EOS)")
m6.metric("Mean |y⁺|", significant(t["len_chosen"].mean()), help="tokens of the chosen response, EOS included")
m2.metric("Mean change of log π(y⁻|x)", significant(summary["mean_delta_rejected"], signed=True),
          help="nats, summed over the response")
m3.metric("Lost chosen likelihood", f"{summary['lost_chosen']} of {summary['pairs']}")
m4.metric(f"Spearman({METRICS[shown].label}, Δ log π(y⁺|x))", f"{spearman(t[shown], t['delta_chosen']):.3f}",
          help="Negative = the higher the score, the larger the drop, as CHES predicts.")

st.plotly_chart(charts.probe_scatter(t, shown), width="stretch", key="probe_scatter")

st.markdown(f"##### Mean change per {METRICS[shown].label} percentile band (over the whole run)")
st.dataframe(band_means(t, shown), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3g")
                            for c in ("mean_delta_chosen", "mean_delta_rejected")})

worst = t.nsmallest(10, "delta_chosen")
if summary["lost_chosen"]:
    st.markdown("##### Pairs that lost the most chosen likelihood")
else:
    st.markdown("##### Pairs with the smallest gains of chosen likelihood")
    st.info(f"No displacement happened at these settings: log π(y⁺|x) rose for all {summary['pairs']} pairs. "
            "The smallest gains are listed instead.", icon=":material/trending_up:")
chosen_text = loaders.texts(run, worst["row"].tolist()).set_index("row")["chosen"]
for r in worst.itertuples():
    c1, c2, c3 = st.columns([1, 5, 1])
    c1.metric(f"row {r.row}", significant(r.delta_chosen, signed=True),
              help=f"change of log π(y+|x), nats; per token {significant(r.delta_chosen_per_token, signed=True)} "
              f"(|y+| {r.len_chosen}); change of log π(y-|x) {significant(r.delta_rejected, signed=True)}; "
              f"{METRICS[shown].label} {significant(getattr(r, shown))}", label_visibility="visible")
    with c2:
        render.text(" ".join(str(chosen_text.get(r.row, "")).split())[:300])
    if c3.button("Tokens", key=f"probe_tokens_{r.row}", icon=":material/compare_arrows:",
                 help="Open this pair in Pair / tokens"):
        st.session_state[state.PAIR_ROW] = int(r.row)
        st.switch_page("pages/pair.py")
