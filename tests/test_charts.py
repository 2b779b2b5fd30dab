"""ches.review.charts: the Pair / tokens and Probe figures, and the shape rule that pages only place figures.

(The Map figure is tested with the Map page in test_pages_map_export.py; the score histograms in
test_browse.py and test_export.py.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ches.review import charts

ROOT = Path(__file__).resolve().parent.parent


def test_token_contributions_colour_by_sign_and_escape_the_tokens():
    fig = charts.token_contributions([0.5, -0.25, 0.0], ["Hel", "<b>lo", "'"])
    (bars,) = fig.data
    assert list(bars.x) == [0, 1, 2] and list(bars.y) == [0.5, -0.25, 0.0]
    # a token is data: shown as its repr, HTML-escaped, never as markup
    assert list(bars.customdata) == ["&#x27;Hel&#x27;", "&#x27;&lt;b&gt;lo&#x27;", "&quot;&#x27;&quot;"]
    assert list(bars.marker.color) == [charts.UP, charts.DOWN, charts.UP]     # zero counts as "up"
    assert fig.layout.xaxis.title.text == "chosen position k"


def test_probe_scatter_plots_the_score_against_the_change_of_the_chosen_logp():
    t = pd.DataFrame({"row": [4, 9], "ches": [1.5, -2.0], "ln_ches": [0.1, 0.2],
                      "delta_chosen": [-0.3, 0.1], "delta_rejected": [-0.5, 0.2]})
    fig = charts.probe_scatter(t, "ches")
    (points,) = fig.data
    assert list(points.x) == [1.5, -2.0] and list(points.y) == [-0.3, 0.1]
    assert np.asarray(points.customdata).tolist() == [[4, -0.5], [9, 0.2]]
    assert list(points.marker.color) == [-0.5, 0.2]
    assert fig.layout.xaxis.title.text == "CHES" and fig.layout.shapes[0].y0 == 0     # the no-change line


def test_pages_build_no_figure_themselves():
    """Every figure comes from ches.review.charts: no page imports plotly."""
    for page in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(page.read_text(encoding="utf-8"))
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m.split(".")[0] == "plotly"], page.name
