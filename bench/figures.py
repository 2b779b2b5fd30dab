"""A Plotly figure as a PNG for the README, drawn by Debian's headless Chromium (the browser tests' own).

Plotly's static export needs Kaleido, which is not a dependency; the figure's HTML (plotly.js inline, no
network) is opened in Chromium through Playwright and the chart element is screenshotted.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

CHROMIUM = "/usr/bin/chromium"


def save_png(fig: go.Figure, path: str | Path, *, width: int = 900, height: int = 500) -> Path:
    """Write `fig` at `width` x `height` CSS pixels to `path`; returns the path."""
    from playwright.sync_api import sync_playwright

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = go.Figure(fig).update_layout(width=width, height=height)
    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width + 40, "height": height + 40}, device_scale_factor=1)
            page.set_content(html)
            page.wait_for_selector(".js-plotly-plot .main-svg")
            page.locator(".js-plotly-plot").first.screenshot(path=str(out))
        finally:
            browser.close()
    return out
