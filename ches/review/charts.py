"""Plotly figures of a run's scores (the Browse and Curate & export charts; no Streamlit here).

Every score axis is robust (`ches.review.browse.robust_range`): a handful of outliers (a 2-token answer with
LN-CHES -1494) no longer squash the other pairs into one bar; they are counted at the edges, and the
figure says how many. Everything is binned here, so a figure costs the same at 100 and at 1M pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ches.review.browse import METRIC_LABELS, histogram, robust_range

SCATTER_MAX = 5000           # score vs length: points up to this many pairs, a 2-D histogram above
CURRENT = "#dc2626"
_LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10), bargap=0.05, showlegend=False)


def _outlier_note(fig, below: int, above: int) -> None:
    for count, x, side, arrow in ((below, 0, "left", "◀ "), (above, 1, "right", " ▶")):
        if count:
            text = f"{arrow}{count:,} beyond" if side == "left" else f"{count:,} beyond{arrow}"
            fig.add_annotation(x=x, xref="paper", y=1.0, yref="paper", yanchor="bottom", xanchor=side,
                               text=text, showarrow=False, font=dict(size=11, color="#64748b"))


def score_histogram(values: pd.Series | np.ndarray, *, metric: str, marker: float | None = None,
                    height: int = 220):
    """Bars of the metric over the run on a robust axis; a red line at `marker` (the open pair),
    drawn at the edge when it lies beyond the axis."""
    import plotly.graph_objects as go

    counts, edges, below, above = histogram(values)
    label = METRIC_LABELS.get(metric, metric)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1:] - edges[:-1],
                           marker_color="#94a3b8", hovertemplate="%{x:.4g}: %{y} pairs<extra></extra>"))
    if marker is not None and np.isfinite(marker) and len(edges) > 1:
        fig.add_vline(x=float(np.clip(marker, edges[0], edges[-1])), line_color=CURRENT, line_width=2)
    _outlier_note(fig, below, above)
    fig.update_layout(height=height, xaxis_title=label, yaxis_title="pairs", **_LAYOUT)
    return fig


def before_after_histogram(before, after, *, title: str, xlabel: str, ylabel: str = "pairs", bins: int = 40):
    """Overlaid bars of the same quantity before and after curation: shared bins on the robust range of
    `before`, values beyond it counted in the edge bins."""
    import plotly.graph_objects as go

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


def score_vs_length(table: pd.DataFrame, metric: str, *, current: int | None = None, height: int = 220):
    """The metric against the chosen response's length |y+| (log axis): very short responses dominate
    LN-CHES. Points up to SCATTER_MAX pairs, else a 2-D histogram (log-shaded counts); the open pair
    is a red star. Scores beyond the robust axis are drawn at its edge."""
    import plotly.graph_objects as go

    label = METRIC_LABELS.get(metric, metric)
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
