"""The plotly figures of the app but the Map's (ches.review.map), as pure functions (no Streamlit here): the
pages only place them.

Score figures (Browse, Curate & export): every score axis is robust (`ches.review.browse.robust_range`):
a handful of outliers (a 2-token answer with LN-CHES -1494) no longer squash the other pairs into one
bar; they are counted at the edges, and the figure says how many. Everything is binned here, so a
figure costs the same at 100 and at 1M pairs.

Compare runs (`compare_scatter`: percentile in run A vs run B, a 2-D histogram above SCATTER_MAX pairs)
follows score vs length; Pair / tokens (`token_contributions`) and Probe (`probe_scatter`) figures close
the module, with the probes' band-versus-change figure (`probe_bands`, the paper's Figure 2) and the
curation check's arms (`check_arms`).
"""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ches.engine.metrics import METRICS
from ches.review.browse import histogram, robust_range

SCATTER_MAX = 5000           # score vs length: points up to this many pairs, a 2-D histogram above
CURRENT = "#dc2626"
_LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), bargap=0.05, showlegend=False)
UP, DOWN = "#dc2626", "#2563eb"   # a token pushing the score up (towards displacement) / pulling it down


def _outlier_note(fig: go.Figure, below: int, above: int) -> None:
    for count, x, side, arrow in ((below, 0, "left", "◀ "), (above, 1, "right", " ▶")):
        if count:
            text = f"{arrow}{count:,} beyond" if side == "left" else f"{count:,} beyond{arrow}"
            fig.add_annotation(x=x, xref="paper", y=1.0, yref="paper", yanchor="bottom", xanchor=side,
                               text=text, showarrow=False, font=dict(size=11, color="#64748b"))


def score_histogram(values: pd.Series | np.ndarray, *, metric: str, marker: float | None = None,
                    height: int = 220) -> go.Figure:
    """Bars of the metric over the run on a robust axis; a red line at `marker` (the open pair),
    drawn at the edge when it lies beyond the axis."""
    counts, edges, below, above = histogram(values)
    label = METRICS[metric].label
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1:] - edges[:-1],
                           marker_color="#94a3b8", hovertemplate="%{x:.4g}: %{y} pairs<extra></extra>"))
    if marker is not None and np.isfinite(marker) and len(edges) > 1:
        fig.add_vline(x=float(np.clip(marker, edges[0], edges[-1])), line_color=CURRENT, line_width=2)
    _outlier_note(fig, below, above)
    fig.update_layout(height=height, xaxis_title=label, yaxis_title="pairs", **_LAYOUT)
    return fig


def before_after_histogram(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray, *, title: str,
                           xlabel: str, ylabel: str = "pairs", bins: int = 40) -> go.Figure:
    """Overlaid bars of the same quantity before and after curation: shared bins on the robust range of
    `before`, values beyond it counted in the edge bins."""
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    counts, edges, below, above = histogram(before, bins=bins)
    fig = go.Figure()
    if len(counts):
        clip = lambda v: np.clip(v[np.isfinite(v)], edges[0], edges[-1])  # noqa: E731
        centres, widths = (edges[:-1] + edges[1:]) / 2, edges[1:] - edges[:-1]
        for name, v, colour, opacity in (("before", before, "#888", 0.5), ("after", after, "#1f77b4", 0.75)):
            fig.add_trace(go.Bar(x=centres, y=np.histogram(clip(v), bins=edges)[0], width=widths, name=name,
                                 marker_color=colour, opacity=opacity,
                                 hovertemplate=f"{name}: %{{y}} at %{{x:.4g}}<extra></extra>"))
    _outlier_note(fig, below, above)
    fig.update_layout(barmode="overlay", title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=320,
                      margin=dict(l=10, r=10, t=40, b=10), bargap=0,
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    return fig


def score_vs_length(table: pd.DataFrame, metric: str, *, current: int | None = None, height: int = 220) -> go.Figure:
    """The metric against the chosen response's length |y+| (log axis): very short responses dominate
    LN-CHES. Points up to SCATTER_MAX pairs, else a 2-D histogram (log-shaded counts); the open pair
    is a red star. Scores beyond the robust axis are drawn at its edge."""
    label = METRICS[metric].label
    score = table[metric].to_numpy(dtype=np.float64)
    length = table["len_chosen"].to_numpy(dtype=np.float64)
    ok = np.isfinite(score)
    lo, hi = robust_range(score)
    y = np.clip(score, lo, hi)
    fig = go.Figure()
    if len(table) <= SCATTER_MAX:
        fig.add_trace(go.Scattergl(x=length[ok], y=y[ok], mode="markers", customdata=table["row"].to_numpy()[ok],
                                   marker=dict(size=5, color="#64748b", opacity=0.6),
                                   hovertemplate=f"row %{{customdata}}<br>|y+| %{{x}}<br>{label} %{{y:.4g}}<extra></extra>"))
    elif ok.any():
        xe = np.geomspace(1, max(2.0, length.max()) * 1.01, 41)
        ye = np.linspace(lo, hi, 41) if hi > lo else np.array([lo - 0.5, lo + 0.5])
        counts, _, _ = np.histogram2d(length[ok], y[ok], bins=(xe, ye))
        z = np.log10(counts, out=np.full_like(counts, np.nan), where=counts > 0).T  # (y bins, x bins)
        fig.add_trace(go.Heatmap(x=np.sqrt(xe[:-1] * xe[1:]), y=(ye[:-1] + ye[1:]) / 2, z=z, showscale=False,
                                 colorscale="Greys", customdata=counts.T,
                                 hovertemplate="|y+| ≈ %{x:.0f}, " + label + " ≈ %{y:.4g}: %{customdata:.0f} pairs<extra></extra>"))
    here = table["row"].to_numpy() == current
    if current is not None and here.any():
        fig.add_trace(go.Scatter(x=length[here], y=y[here], mode="markers", hoverinfo="skip",
                                 marker=dict(symbol="star", size=14, color=CURRENT, line=dict(width=1, color="#111"))))
    fig.update_layout(height=height, xaxis=dict(title="|y+| (tokens, log)", type="log"), yaxis_title=label, **_LAYOUT)
    return fig


def compare_scatter(pct_a: np.ndarray, pct_b: np.ndarray, rows_a: np.ndarray, *, label: str, name_a: str = "run A",
                    name_b: str = "run B", height: int = 420) -> go.Figure:
    """Compare runs: each shared pair's percentile of one metric in run A (x) against run B (y), the
    diagonal where the two agree. Points up to SCATTER_MAX pairs, else a 2-D histogram of all of them
    (50 x 50 bins, log-shaded counts)."""
    x, y = np.asarray(pct_a, dtype=np.float64), np.asarray(pct_b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    fig = go.Figure()
    if ok.sum() <= SCATTER_MAX:
        fig.add_trace(go.Scattergl(x=x[ok], y=y[ok], mode="markers", customdata=np.asarray(rows_a)[ok],
                                   marker=dict(size=5, color="#64748b", opacity=0.6),
                                   hovertemplate=f"row %{{customdata}} in {html.escape(name_a)}<br>"
                                   "percentile %{x:.1f} → %{y:.1f}<extra></extra>"))
    else:
        edges = np.linspace(0, 100, 51)
        counts, _, _ = np.histogram2d(x[ok], y[ok], bins=(edges, edges))
        z = np.log10(counts, out=np.full_like(counts, np.nan), where=counts > 0).T   # (B bins, A bins)
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Heatmap(x=centres, y=centres, z=z, showscale=False, colorscale="Greys", customdata=counts.T,
                                 hovertemplate="percentile ≈ %{x:.0f} → %{y:.0f}: %{customdata:.0f} pairs<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", hoverinfo="skip",
                             line=dict(color=CURRENT, width=1, dash="dot")))
    fig.update_layout(height=height, xaxis=dict(title=f"{label} percentile, {name_a}", range=[-1, 101]),
                      yaxis=dict(title=f"{label} percentile, {name_b}", range=[-1, 101]), **_LAYOUT)
    return fig


# ------------------------------------------------------------------------------- Pair / tokens, Probe

def token_contributions(contributions: Sequence[float] | np.ndarray, tokens: Sequence[str], *,
                        height: int = 260) -> go.Figure:
    """One bar per chosen position k: its contribution to the score (red up, blue down); hover shows the
    token (repr, HTML-escaped: token text is data)."""
    contrib = np.asarray(contributions, dtype=np.float64)
    labels = [html.escape(repr(t), quote=True) for t in tokens]
    fig = go.Figure(go.Bar(x=list(range(len(contrib))), y=contrib, customdata=labels,
                           marker_color=np.where(contrib >= 0, UP, DOWN),
                           hovertemplate="#%{x} %{customdata}<br>%{y:.4g}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="chosen position k",
                      yaxis_title="contribution")
    return fig


def probe_scatter(table: pd.DataFrame, metric: str, *, height: int = 360) -> go.Figure:
    """A probe's pairs (`ches.review.probe.analysis.probe_table`): the score against delta_chosen =
    change of log pi(y+|x), coloured by delta_rejected; a dotted line at no change."""
    fig = go.Figure(go.Scatter(
        x=table[metric], y=table["delta_chosen"], mode="markers", customdata=table[["row", "delta_rejected"]],
        marker=dict(color=table["delta_rejected"], colorscale="RdBu", colorbar=dict(title="Δ y⁻"),
                    size=9, line=dict(width=0.5, color="#334155")),
        hovertemplate="row %{customdata[0]}<br>score %{x:.4g}<br>Δ log π(y+) %{y:.4f}"
                      "<br>Δ log π(y-) %{customdata[1]:.4f}<extra></extra>"))
    fig.add_hline(y=0, line_color="#94a3b8", line_dash="dot")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title=METRICS[metric].label, yaxis_title="Δ log π(y⁺|x)")
    return fig


def probe_bands(points: pd.DataFrame, metric: str, *, height: int = 340) -> go.Figure:
    """The paper's Figure 2 over a run's stored probes (`ches.review.probe.analysis.band_points`): the
    percentile of the probe's pairs under `metric` on x (horizontal bar: lowest to highest pair), the mean
    change of log pi(y+|x) on y, one point per group of probes that differ only in their seed, vertical
    error bars = the standard deviation over those seeds; a dotted line at no change."""
    sd = points["sd"].fillna(0).to_numpy()
    fig = go.Figure(go.Scatter(
        x=points["percentile"], y=points["mean_delta_chosen"], mode="markers",
        error_y=dict(type="data", array=sd, visible=True, color="#334155"),
        error_x=dict(type="data", symmetric=False, array=points["hi"] - points["percentile"],
                     arrayminus=points["percentile"] - points["lo"], visible=True, color="#cbd5e1", thickness=1),
        customdata=np.column_stack([points["seeds"], points["pairs"], points["sd"].fillna(np.nan)]),
        text=[html.escape(str(d)) for d in points["describe"]],
        marker=dict(size=10, color="#1f77b4", line=dict(width=0.5, color="#111827")),
        hovertemplate="%{text}<br>percentile %{x:.1f}<br>mean Δ log π(y+) %{y:.4f}"
                      "<br>seeds %{customdata[0]} · sd %{customdata[2]:.4f} · %{customdata[1]} pairs<extra></extra>"))
    fig.add_hline(y=0, line_color="#94a3b8", line_dash="dot")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title=f"{METRICS[metric].label} percentile of the probe's pairs (over the run)",
                                 range=[-3, 103]),
                      yaxis_title="mean Δ log π(y⁺|x)")
    return fig


def check_arms(stats: dict, *, height: int = 300) -> go.Figure:
    """A curation check's arms (`ches.review.probe.check.arm_stats`): mean change of log pi(y+|x) and of
    log pi(y-|x) per arm, error bars = the standard deviation over seeds."""
    fig = go.Figure()
    arms = list(stats["arms"])
    for side, colour, name in (("chosen", "#16a34a", "Δ log π(y⁺|x)"), ("rejected", "#ea580c", "Δ log π(y⁻|x)")):
        fig.add_trace(go.Bar(x=arms, y=[stats["arms"][a][f"mean_delta_{side}"] for a in arms], name=name,
                             marker_color=colour,
                             error_y=dict(type="data", array=[stats["arms"][a][f"sd_delta_{side}"] for a in arms]),
                             hovertemplate=f"%{{x}}: {name} %{{y:.3g}} nats<extra></extra>"))
    fig.add_hline(y=0, line_color="#94a3b8", line_dash="dot")
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      yaxis_title="change, nats summed over the response (± sd over seeds)",
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    return fig


def kappa_heatmap(kappas: pd.DataFrame, *, height: int = 320) -> go.Figure:
    """Cohen's kappa per pair of annotators (`ches.review.agreement.kappa_table`: columns a, b, shared, kappa)
    as a symmetric annotator x annotator grid, -1 (red) .. 0 (white) .. 1 (blue); each cell says kappa and
    the number of pairs both decided (blank: no kappa, e.g. fewer than 2 shared pairs)."""
    names = sorted(set(kappas["a"]) | set(kappas["b"]))
    at = {n: i for i, n in enumerate(names)}
    z = np.full((len(names), len(names)), np.nan)
    text = [["" for _ in names] for _ in names]
    for r in kappas.itertuples():
        i, j = at[r.a], at[r.b]
        z[i, j] = z[j, i] = r.kappa
        text[i][j] = text[j][i] = ("κ —" if np.isnan(r.kappa) else f"κ {r.kappa:.2f}") + f"<br>n={int(r.shared)}"
    # names are the annotators' own: html-escaped, as plotly renders a little HTML in labels
    labels = [html.escape(n) for n in names]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}", zmin=-1, zmax=1,
                               colorscale="RdBu", hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
                               colorbar=dict(title="κ")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(autorange="reversed"))
    return fig
