"""The Map: the frame of plotted points, the riskiest pairs, its figure, a selection turned into source rows.

Views (ches.review.projection): 'pairs' = one point per pair, at its centred preference direction m- - m+;
'responses' = the centred chosen and rejected means, 2n points.

The figure (`map_figure`, over a `map_frame`), readable from 100 to 1M points, in layers from the bottom up:
1. density (above DENSITY_ABOVE points): a 2-D histogram of ALL points, log-shaded grey (WebGL points
   always draw above it, so it shows where the points thin out);
2. the points, smaller and more transparent as they grow in number, so that overlap builds up colour
   where they crowd (at most MAX_POINTS drawn: a fixed random sample above that), coloured by score,
   decision or flag;
3. the riskiest pairs (`riskiest_rows`) as rings, and the pair open in Browse / Pair
   as a star.
Selected points are drawn opaque and the others faded (plotly's selected / unselected styles).
Coordinates, rows and scores travel as typed arrays (float32 / int32, base64 in the JSON), and hover
text is assembled in the browser from them (hovertemplate), not one string per point. Dataset text
never enters a figure.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ches.engine.metrics import METRICS
from ches.review.browse import decision_status
from ches.review.decisions import DROP, FLAG, KEEP, UNDECIDED
from ches.review.projection import VIEWS

COLOR_BY = ("metric", "decision", "flag")
NO_FLAG = "no flag"
RISKIEST_SHARE, RISKIEST_MAX = 0.01, 200
DECISION_COLORS = {KEEP: "#2ca02c", DROP: "#d62728", FLAG: "#ff7f0e", UNDECIDED: "#9e9e9e"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DENSITY_ABOVE = 2000          # points: below this the points alone are readable
DENSITY_BINS = 160            # per axis
MAX_POINTS = 200_000          # drawn points; the density and a lasso still cover all of them
LINES_MAX = 2000              # responses view: join every pair up to this many, else only the riskiest
RISKIEST_COLOR = "#7f1d1d"


def map_frame(table: pd.DataFrame, coords: np.ndarray, view: str, *, metric: str = "ln_ches",
              color_by: str = "metric", decisions: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per plotted point: x, y (float32), row, side ('pair' | 'chosen' | 'rejected'), score (the
    metric), color (the score, or a category for decision / flag).

    `coords` is map_coordinates' output for `view` ((n, 2) or (2n, 2), chosen rows first).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown colour {color_by!r}; expected one of {COLOR_BY}")
    n = len(table)
    coords = np.asarray(coords, dtype=np.float32)
    sides = ("pair",) if view == "pairs" else ("chosen", "rejected")
    if coords.shape != (n * len(sides), 2):
        raise ValueError(f"coords must be ({n * len(sides)}, 2) for the {view!r} view of {n} pairs, got {coords.shape}")
    score = table[metric].to_numpy(dtype=np.float64)
    if color_by == "metric":
        color: Any = score
    elif color_by == "decision":
        color = decision_status(table["pair_id"], decisions).to_numpy()
    else:                                        # a pair's first flag
        color = table["flags"].fillna("").str.split(",").str[0].replace("", NO_FLAG).to_numpy()
    k = len(sides)
    return pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1], "row": np.tile(table["row"].to_numpy(dtype=np.int32), k),
        "side": np.repeat(sides, n), "score": np.tile(score, k), "color": np.tile(color, k)})


def riskiest_rows(table: pd.DataFrame, metric: str) -> np.ndarray:
    """Source rows of the top RISKIEST_SHARE of pairs by `metric` (at least 1, at most RISKIEST_MAX)."""
    k = int(min(RISKIEST_MAX, max(1, round(len(table) * RISKIEST_SHARE))))
    return table.nlargest(min(k, len(table)), metric)["row"].to_numpy(dtype=np.int32)


def _inside(x: np.ndarray, y: np.ndarray, px: Sequence[float], py: Sequence[float]) -> np.ndarray:
    """Even-odd rule: which points (x, y) lie inside the polygon with vertices (px, py)."""
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    inside = np.zeros(len(x), dtype=bool)
    if len(px) < 3:
        return inside
    box = (x >= px.min()) & (x <= px.max()) & (y >= py.min()) & (y <= py.max())
    xs, ys = x[box].astype(np.float64), y[box].astype(np.float64)
    hit = np.zeros(len(xs), dtype=bool)
    for x1, y1, x2, y2 in zip(px, py, np.roll(px, -1), np.roll(py, -1)):
        if y1 == y2:
            continue
        crosses = (y1 > ys) != (y2 > ys)
        hit ^= crosses & (xs < (x2 - x1) * (ys - y1) / (y2 - y1) + x1)
    inside[box] = hit
    return inside


def selection_rows(selection: Mapping[str, Any] | None, frame: pd.DataFrame) -> list[int]:
    """Source rows of a plotly selection (st.plotly_chart's event.selection, or the whole event), in
    dataset order: every point of `frame` inside a box or lasso (drawn or not), plus each clicked
    point's customdata (row, [row] or {"0": row}). Rows not in the frame are ignored."""
    if not selection:
        return []
    if "selection" in selection and "points" not in selection:
        selection = selection["selection"] or {}
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    inside = np.zeros(len(frame), dtype=bool)
    for area in selection.get("box") or []:
        xs, ys = area.get("x") or [], area.get("y") or []
        if len(xs) == 2 and len(ys) == 2:
            inside |= (x >= min(xs)) & (x <= max(xs)) & (y >= min(ys)) & (y <= max(ys))
    for area in selection.get("lasso") or []:
        inside |= _inside(x, y, area.get("x") or [], area.get("y") or [])
    picked = set(frame.loc[inside, "row"].astype(int))
    for p in selection.get("points") or []:
        custom = p.get("customdata")
        if isinstance(custom, dict):             # a typed array decoded by plotly.js: {"0": row}
            custom = list(custom.values())
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        try:
            picked.add(int(custom))
        except (TypeError, ValueError):
            continue
    rows = pd.unique(frame["row"].to_numpy())
    return [int(r) for r in rows if r in picked]


# ------------------------------------------------------------------------------------------ the figure

def color_range(values: Sequence[float] | np.ndarray, lo_pct: float = 2, hi_pct: float = 98) -> dict:
    """{cmin, cmax} at the 2nd-98th percentile of the finite values, so a few outliers do not wash out
    the colour scale; {} when there is no spread to clip."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {}
    lo, hi = np.percentile(v, [lo_pct, hi_pct])
    return {"cmin": float(lo), "cmax": float(hi)} if hi > lo else {}


def _marker_style(n: int) -> dict:
    """Smaller and more transparent as the points grow in number."""
    if n <= DENSITY_ABOVE:
        return {"size": 6, "opacity": 0.85}
    return {"size": 3.5 if n <= 20_000 else 2.5, "opacity": 0.55 if n <= 20_000 else 0.2}


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    """The points drawn: all of them up to MAX_POINTS, else a fixed random sample of MAX_POINTS."""
    if len(frame) <= MAX_POINTS:
        return frame
    keep = np.sort(np.random.default_rng(0).choice(len(frame), MAX_POINTS, replace=False))
    return frame.iloc[keep]


def map_figure(frame: pd.DataFrame, *, color_by: str = "metric", metric: str = "ln_ches",
               riskiest: Sequence[int] = (), current: int | None = None, height: int = 640) -> go.Figure:
    """The layered Scattergl figure of a map_frame (see the module docstring). Every point trace has
    customdata = row (int32), which the selection event echoes back per point."""
    label = METRICS[metric].label
    fig = go.Figure()
    n = len(frame)
    if n > DENSITY_ABOVE:
        counts, xe, ye = np.histogram2d(frame["x"], frame["y"], bins=DENSITY_BINS)
        z = np.log10(counts, out=np.full_like(counts, np.nan), where=counts > 0).T.astype(np.float32)  # (by, bx)
        centres = dict(x=((xe[:-1] + xe[1:]) / 2).astype(np.float32), y=((ye[:-1] + ye[1:]) / 2).astype(np.float32))
        fig.add_trace(go.Heatmap(**centres, z=z, showscale=False, hoverinfo="skip", name="density",
                                 colorscale=[[0, "rgba(203,213,225,0.35)"], [1, "rgba(51,65,85,0.9)"]]))
    riskiest = set(int(r) for r in riskiest)
    in_top = frame["row"].isin(riskiest).to_numpy()
    pairs_for_lines = frame[frame["side"] == "chosen"]
    if len(pairs_for_lines) > LINES_MAX:
        pairs_for_lines = pairs_for_lines[pairs_for_lines["row"].isin(riskiest)]
    if len(pairs_for_lines):                     # responses view: one None-separated trace of segments
        rejected = frame[frame["side"] == "rejected"].set_index("row").loc[pairs_for_lines["row"]]
        xs = np.column_stack([pairs_for_lines["x"], rejected["x"], np.full(len(rejected), np.nan)]).ravel()
        ys = np.column_stack([pairs_for_lines["y"], rejected["y"], np.full(len(rejected), np.nan)]).ravel()
        fig.add_trace(go.Scattergl(x=[None if np.isnan(v) else float(v) for v in xs],
                                   y=[None if np.isnan(v) else float(v) for v in ys],
                                   mode="lines", line=dict(color="rgba(100,100,100,0.45)", width=1),
                                   hoverinfo="skip", showlegend=False, name="pairs"))

    style = _marker_style(n)
    symbols = {"pair": "circle", "chosen": "circle", "rejected": "x"}
    fade = dict(unselected=dict(marker=dict(opacity=0.12)), selected=dict(marker=dict(opacity=1.0)))
    drawn = _sample(frame)
    if color_by == "metric":
        for side, part in drawn.groupby("side", sort=False):
            which = "" if side == "pair" else f" · {side}"
            fig.add_trace(go.Scattergl(
                x=part["x"].to_numpy(), y=part["y"].to_numpy(), mode="markers", name=side,
                customdata=part["row"].to_numpy(), showlegend=side != "pair",
                hovertemplate=f"row %{{customdata}}{which}<br>{label} %{{marker.color:.4g}}<extra></extra>",
                marker=dict(color=part["score"].to_numpy(dtype=np.float32), coloraxis="coloraxis",
                            symbol=symbols[side], **style), **fade))
        fig.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(title=label, thickness=14),
                                         **color_range(frame["score"])))
    else:
        grey = DECISION_COLORS[UNDECIDED]
        cats = sorted(frame["color"].astype(str).unique(), key=lambda c: (c in (UNDECIDED, NO_FLAG), c))
        colors = {c: (DECISION_COLORS.get(c, grey) if color_by == "decision" else
                      grey if c == NO_FLAG else _PALETTE[i % len(_PALETTE)]) for i, c in enumerate(cats)}
        order = {c: i for i, c in enumerate(cats)}
        groups = sorted(drawn.groupby(["side", drawn["color"].astype(str)], sort=False),
                        key=lambda g: (-order[g[0][1]], g[0][0]))   # undecided / no flag drawn first, below
        for (side, cat), part in groups:
            name = cat if side == "pair" else f"{cat} · {side}"
            fig.add_trace(go.Scattergl(
                x=part["x"].to_numpy(), y=part["y"].to_numpy(), mode="markers", name=name, legendgroup=cat,
                customdata=part["row"].to_numpy(), hovertemplate=f"row %{{customdata}}<br>{name}<extra></extra>",
                marker=dict(color=colors[cat], symbol=symbols[side], **style), **fade))
    top = frame[in_top]
    if len(top):
        fig.add_trace(go.Scattergl(
            x=top["x"].to_numpy(), y=top["y"].to_numpy(), mode="markers", customdata=top["row"].to_numpy(),
            name=f"riskiest {len(riskiest):,} by {label}", **fade,
            hovertemplate=f"row %{{customdata}} · among the riskiest<br>{label} %{{text}}<extra></extra>",
            text=[f"{s:.4g}" for s in top["score"]],
            marker=dict(symbol="circle-open", size=8, color=RISKIEST_COLOR, opacity=0.85, line=dict(width=1.2))))
    here = frame[frame["row"] == current] if current is not None else frame.iloc[:0]
    if len(here):
        fig.add_trace(go.Scattergl(
            x=here["x"].to_numpy(), y=here["y"].to_numpy(), mode="markers", customdata=here["row"].to_numpy(),
            name=f"row {int(current)} (open in Browse)", hovertemplate="row %{customdata} · open in Browse<extra></extra>",
            marker=dict(symbol="star", size=16, color="#facc15", line=dict(width=1.5, color="#111827"))))
    # a click selects the point under it (shift-click adds one); Streamlit turns clicks off in box / lasso
    # mode, so the chart opens in zoom mode and box / lasso are one toolbar click away
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), dragmode="zoom", clickmode="event+select",
                      xaxis=dict(showticklabels=False, ticks="", title=None, showgrid=False, zeroline=False),
                      yaxis=dict(showticklabels=False, ticks="", title=None, showgrid=False, zeroline=False),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), plot_bgcolor="white")
    return fig
