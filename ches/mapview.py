"""The Map view's data: figure frame, plotly figure, selection -> source rows, bulk decisions.

Views (ches.projection): 'pairs' = one point per pair, at its centred preference direction m- - m+;
'responses' = the centred chosen and rejected means, 2n points, each pair joined by a line.
The figure carries only coordinates, row ids (customdata) and scores, plus a short escaped hover
text; dataset text is never interpreted as HTML.
"""
from __future__ import annotations

import html
import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .browse import METRIC_LABELS
from .projection import VIEWS

COLOR_BY = ("metric", "decision", "flag")
HOVER_TEXT_MAX_PAIRS = 5000          # above this, hover shows only the row and the score
HOVER_CHARS = 80
DECISION_COLORS = {"keep": "#2ca02c", "drop": "#d62728", "flag": "#ff7f0e", "undecided": "#9e9e9e"}
NO_FLAG = "no flag"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def prompt_snippet(prompt_json: str | None, width: int = HOVER_CHARS) -> str:
    """The last user turn of a stored prompt (JSON message list), one line, cut to `width` chars."""
    try:
        messages = json.loads(prompt_json) if prompt_json else []
    except (TypeError, ValueError):
        messages = []
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = " ".join(str(users[-1] if users else (messages[-1].get("content", "") if messages else "")).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def map_frame(table: pd.DataFrame, coords: np.ndarray, view: str, *, metric: str = "ln_ches",
              color_by: str = "metric", decisions: Mapping[str, Any] | None = None,
              prompts: Mapping[int, str] | None = None) -> pd.DataFrame:
    """One row per plotted point: x, y, row, pair_id, side ('pair' | 'chosen' | 'rejected'),
    score (the metric), color (the metric's value, or a category for decision/flag), hover.

    `coords` is map_coordinates' output for `view` ((n, 2) or (2n, 2), chosen rows first);
    `prompts` maps source row -> stored prompt JSON (hover snippets; omit for row + score only).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown colour {color_by!r}; expected one of {COLOR_BY}")
    n = len(table)
    coords = np.asarray(coords)
    sides = ("pair",) if view == "pairs" else ("chosen", "rejected")
    if coords.shape != (n * len(sides), 2):
        raise ValueError(f"coords must be ({n * len(sides)}, 2) for the {view!r} view of {n} pairs, got {coords.shape}")
    rows = table["row"].astype(int).to_numpy()
    score = table[metric].to_numpy(dtype=np.float64)
    if color_by == "metric":
        color: Any = score
    elif color_by == "decision":
        chosen = {pid: getattr(d, "decision", d) for pid, d in (decisions or {}).items()}
        color = np.array([chosen.get(pid, "undecided") for pid in table["pair_id"]], dtype=object)
    else:                                        # a pair's first flag
        color = np.array([f.split(",")[0] or NO_FLAG for f in table["flags"].fillna("")], dtype=object)
    snippets = ([html.escape(prompt_snippet(prompts.get(int(r)))) for r in rows] if prompts is not None
                else [""] * n)
    base = [f"row {r} · {metric} {s:.4g}" for r, s in zip(rows, score)]
    frames = []
    for i, side in enumerate(sides):
        label = "" if side == "pair" else f" · {side}"
        frames.append(pd.DataFrame({
            "x": coords[i * n:(i + 1) * n, 0], "y": coords[i * n:(i + 1) * n, 1], "row": rows,
            "pair_id": table["pair_id"].to_numpy(), "side": side, "score": score, "color": color,
            "hover": [b + label + (f"<br>{t}" if t else "") for b, t in zip(base, snippets)],
        }))
    return pd.concat(frames, ignore_index=True)


def color_range(values, lo_pct: float = 2, hi_pct: float = 98) -> dict:
    """{cmin, cmax} at the 2nd-98th percentile of the finite values, so a few outliers do not wash out
    the colour scale; {} when there is no spread to clip."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {}
    lo, hi = np.percentile(v, [lo_pct, hi_pct])
    return {"cmin": float(lo), "cmax": float(hi)} if hi > lo else {}


def map_figure(frame: pd.DataFrame, *, color_by: str = "metric", metric: str = "ln_ches", height: int = 620):
    """Scattergl figure of a map_frame; customdata = row (a plain list: the selection event echoes it
    back per point); the responses view joins each pair by one None-separated line trace."""
    import plotly.graph_objects as go

    fig = go.Figure()
    chosen, rejected = frame[frame["side"] == "chosen"], frame[frame["side"] == "rejected"]
    if len(chosen):                              # one trace of segments, None-separated
        xs = np.column_stack([chosen["x"].to_numpy(), rejected["x"].to_numpy(), np.full(len(chosen), np.nan)])
        ys = np.column_stack([chosen["y"].to_numpy(), rejected["y"].to_numpy(), np.full(len(chosen), np.nan)])
        fig.add_trace(go.Scattergl(x=[None if np.isnan(v) else float(v) for v in xs.ravel()],
                                   y=[None if np.isnan(v) else float(v) for v in ys.ravel()],
                                   mode="lines", line=dict(color="rgba(120,120,120,0.35)", width=1),
                                   hoverinfo="skip", showlegend=False, name="pairs"))
    symbols = {"pair": "circle", "chosen": "circle", "rejected": "x"}
    if color_by == "metric":
        for side, part in frame.groupby("side", sort=False):
            fig.add_trace(go.Scattergl(
                x=part["x"], y=part["y"], mode="markers", name=side,
                customdata=part["row"].astype(int).tolist(), hovertext=part["hover"].tolist(),
                hovertemplate="%{hovertext}<extra></extra>",
                marker=dict(color=part["color"].astype(float), coloraxis="coloraxis", size=6,
                            symbol=symbols[side], opacity=0.8),
                showlegend=side != "pair"))
        fig.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(title=METRIC_LABELS.get(metric, metric)),
                                         **color_range(frame["color"])))
    else:
        grey = DECISION_COLORS["undecided"]
        cats = sorted(frame["color"].astype(str).unique(), key=lambda c: (c in ("undecided", NO_FLAG), c))
        colors = {c: (DECISION_COLORS.get(c, grey) if color_by == "decision" else
                      grey if c == NO_FLAG else _PALETTE[i % len(_PALETTE)]) for i, c in enumerate(cats)}
        order = {c: i for i, c in enumerate(cats)}
        groups = sorted(frame.groupby(["side", frame["color"].astype(str)], sort=False),
                        key=lambda g: (order[g[0][1]], g[0][0]))
        for (side, cat), part in groups:
            fig.add_trace(go.Scattergl(
                x=part["x"], y=part["y"], mode="markers",
                name=cat if side == "pair" else f"{cat} · {side}", legendgroup=cat,
                customdata=part["row"].astype(int).tolist(), hovertext=part["hover"].tolist(),
                hovertemplate="%{hovertext}<extra></extra>",
                marker=dict(color=colors[cat], size=6, symbol=symbols[side], opacity=0.8)))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), dragmode="lasso",
                      xaxis=dict(showticklabels=False, title=None), yaxis=dict(showticklabels=False, title=None),
                      legend=dict(orientation="h"))
    return fig


def selection_rows(selection: Mapping[str, Any] | None, rows: Sequence[int], view: str) -> list[int]:
    """Source rows of the selected points, deduplicated, in dataset order.

    `selection` is st.plotly_chart's event.selection (or the whole event). Each point's customdata
    (row, [row] or {"0": row}) names its row; a point without customdata falls back to its point_index into the plotted
    order (`rows` for 'pairs'; chosen then rejected, i.e. rows[i % n], for 'responses').
    Rows not in `rows` are ignored.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    if not selection:
        return []
    if "selection" in selection and "points" not in selection:
        selection = selection["selection"] or {}
    known = [int(r) for r in rows]
    n = len(known)
    picked: set[int] = set()
    for p in selection.get("points") or []:
        custom = p.get("customdata")
        if isinstance(custom, dict):             # a typed array decoded by plotly.js: {"0": row}
            custom = list(custom.values())
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            try:
                picked.add(int(custom))
            except (TypeError, ValueError):
                continue
        elif p.get("point_index") is not None and n:
            i = int(p["point_index"])
            if 0 <= i < (n if view == "pairs" else 2 * n):
                picked.add(known[i % n])
    order = {r: i for i, r in enumerate(known)}
    return sorted((r for r in picked if r in order), key=order.__getitem__)
