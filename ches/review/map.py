"""The Map view's data: the frame of plotted points, the riskiest pairs, a selection turned into source rows.

Views (ches.review.projection): 'pairs' = one point per pair, at its centred preference direction m- - m+;
'responses' = the centred chosen and rejected means, 2n points. The figure drawn from a frame is
`ches.review.charts.map_figure`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ches.review.browse import decision_status
from ches.review.projection import VIEWS

COLOR_BY = ("metric", "decision", "flag")
NO_FLAG = "no flag"
RISKIEST_SHARE, RISKIEST_MAX = 0.01, 200


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
