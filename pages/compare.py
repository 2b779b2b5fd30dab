"""Compare runs: the same pairs (matched by pair id) scored by two models or settings (ches.review.compare)."""
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from ui import frame, loaders, render, state
from ches.engine import runs
from ches.engine.metrics import METRICS
from ches.review.charts import compare_scatter
from ches.review.compare import MIN_SHARED, TOP_PERCENT, compare, movers
from ches.review.export import Rule

frame.page("Compare runs")      # first: page config, sign-in gate, the URL's state, the sidebar

MOVERS = 20

run = state.require_run()
st.title("Compare runs")
st.caption("Would the model you will train rank the pairs like the one you scored with? CHES is defined by the "
           "trained model's hidden states; a cheaper model is often used to score. Pick a second run of the same "
           "data (another model, max length or dtype): pairs are matched by pair id, and only the scores tables "
           "are read.")

same_data = loaders.manifest(run).get("key", {}).get("dataset_hash")
others = {str(p): m for p, m in sorted(runs.list_runs(state.ws().runs),          # runs of the same data first
                                       key=lambda r: r[1].get("key", {}).get("dataset_hash") != same_data)
          if p.resolve() != run.resolve()}
if not others:
    st.info("Comparing needs a second run: score the same data with another model on **Data & score**.",
            icon=":material/info:")
    st.page_link("pages/score.py", label="Go to Data & score", icon=":material/database:")
    st.stop()

c1, c2 = st.columns(2)
c1.caption("Run A: the active run (change it in the sidebar)")
c1.text(loaders.run_label(run))                                 # a dataset's name is shown literally
run_b = c2.selectbox("Run B", list(others), key="compare_b", format_func=lambda p: loaders.run_label(p, others[p]))
s1, s2, s3 = st.columns(3)
metric = s1.selectbox("Metric", list(METRICS), format_func=lambda m: METRICS[m].label, key="compare_metric",
                      help="The metric of the scatter, the movers and the export rule.")
top = s2.number_input("Riskiest share (%)", min_value=0.5, max_value=100.0, value=TOP_PERCENT, step=0.5,
                      key="compare_top", help="Overlap of the riskiest share of the shared pairs, in each run.")
keep = s3.slider("Export rule: keep the lowest … %", 0.0, 100.0, 95.0, 0.5, key="compare_keep",
                 help="What the export would drop (flags too, decisions left out), compared between the runs.")

comparison = None
with render.user_errors():
    comparison = compare(loaders.scores(run), loaders.scores(run_b), top_percent=float(top),
                         rule=Rule(metric=metric, keep_lowest_percent=float(keep)), min_shared=MIN_SHARED)
if comparison is None:
    st.stop()
c = comparison

m1, m2, m3, m4 = st.columns(4)
m1.metric("Shared pairs", f"{c.shared:,}")
m2.metric("Only in A", f"{c.only_a:,}")
m3.metric("Only in B", f"{c.only_b:,}")
row = c.correlations.set_index("metric").loc[metric]
m4.metric(f"Spearman, {METRICS[metric].label}", f"{row['spearman']:.3f}")

st.subheader("Rank agreement")
agree = pd.DataFrame({
    "metric": c.correlations["label"], "pairs": c.correlations["n"], "Spearman": c.correlations["spearman"],
    "Kendall": c.correlations["kendall"],
    f"riskiest {c.top_percent:g}%: in both": [c.riskiest[m].both for m in c.correlations["metric"]],
    "of": [c.riskiest[m].size_a for m in c.correlations["metric"]],
    "Jaccard": [c.riskiest[m].jaccard for m in c.correlations["metric"]],
    "share of A's in B's": [c.riskiest[m].share_of_a for m in c.correlations["metric"]]})
st.dataframe(agree, hide_index=True, key="compare_table",
             column_config={k: st.column_config.NumberColumn(format="%.3f")
                            for k in ("Spearman", "Kendall", "Jaccard", "share of A's in B's")})
d = c.drops
st.caption(f"Export rule ({c.rule.describe()}), over the shared pairs: A drops {d.size_a:,}, B drops {d.size_b:,}, "
           f"both {d.both:,}; Jaccard {d.jaccard:.2f}; share of A's drops that B drops too {d.share_of_a:.0%}.")

left, right = st.columns([3, 2])
moved = movers(c.joined, metric, len(c.joined))         # every shared pair, largest shift first
with left:
    st.markdown(f"**{METRICS[metric].label} percentile, A vs B**")
    st.plotly_chart(compare_scatter(moved["pct_a"].to_numpy(), moved["pct_b"].to_numpy(), moved["row_a"].to_numpy(),
                                    label=METRICS[metric].label), key="compare_scatter")
with right:
    st.markdown("**Pairs that move most**")
    st.caption("Percentile among the shared pairs (100 = riskiest); each link opens the pair in Pair / tokens of "
               "that run, in a new tab.")
    head = moved.head(MOVERS)
    link = lambda run_id, r: "pair?" + urlencode({"run": run_id, "row": int(r)})  # noqa: E731   (state.sync_url)
    st.dataframe(pd.DataFrame({"A": [link(run.name, r) for r in head["row_a"]],
                               "B": [link(Path(run_b).name, r) for r in head["row_b"]],
                               "pct A": head["pct_a"], "pct B": head["pct_b"], "shift": head["shift"]}),
                 hide_index=True, key="compare_movers",
                 column_config={"A": st.column_config.LinkColumn("row in A", display_text=r"row=(\d+)$"),
                                "B": st.column_config.LinkColumn("row in B", display_text=r"row=(\d+)$"),
                                "pct A": st.column_config.NumberColumn(format="%.1f"),
                                "pct B": st.column_config.NumberColumn(format="%.1f"),
                                "shift": st.column_config.NumberColumn(format="%+.1f")})
