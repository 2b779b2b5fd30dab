"""In a real headless Chromium: sign-in through a real OpenID Connect provider (oidc-provider-mock, started on
localhost by the test; no faked session), and the Map's selection (a click selects a point; a view switch
leaves nothing selected that the chart does not show; Open in Browse keeps the annotator and the layout).

Needs Debian's Chromium at /usr/bin/chromium (`make browser`), like tests/test_browser.py.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from browsers import PAGE_S, browser, idle, new_page, streamlit_server
from conftest import TEAM
from test_browser import _stored_run

pytestmark = pytest.mark.browser


# ------------------------------------------------------------------------------------------------ the Map

class _FakeUMAP:
    """The first two coordinates: a map without numba's minutes-long first compile."""

    def __init__(self, **kwargs):
        pass

    def fit_transform(self, x):
        return np.asarray(x)[:, :2].copy()


_CHART = "[data-testid=stPlotlyChart] .js-plotly-plot"
_CHART_STATE = """() => {
    const gd = document.querySelector('%s');
    if (!gd || !gd._fullLayout) return null;
    const picked = gd.data.reduce((n, t) => n + (Array.isArray(t.selectedpoints) ? t.selectedpoints.length : 0), 0);
    return {picked: picked, areas: (gd.layout.selections || []).length, dragmode: gd._fullLayout.dragmode,
            clickmode: gd._fullLayout.clickmode};
}""" % _CHART
_TO_PIXELS = """([x, y]) => {
    const gd = document.querySelector('%s');
    const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    return [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(y)];
}""" % _CHART


def test_map_click_selects_a_point_a_view_switch_clears_it_and_browse_keeps_annotator_and_layout(tmp_path,
                                                                                               monkeypatch):
    from playwright.sync_api import expect

    import umap

    from ches.engine import store
    from ches.review.projection import map_coordinates

    ws = tmp_path / "ws"
    run = _stored_run(ws)
    monkeypatch.setattr(umap, "UMAP", _FakeUMAP)
    coords = {v: map_coordinates(run, v, n_neighbors=15, min_dist=0.1) for v in ("pairs", "responses")}
    rows = store.read_scores(run)["row"].to_numpy()
    xy = coords["pairs"].astype(np.float64)
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    lonely = int(gaps.min(axis=1).argmax())                  # the point farthest from any other: one click, one pair

    with streamlit_server(tmp_path, ws) as server, browser() as b:
        page, errors = new_page(b)
        main = page.get_by_test_id("stMain")
        page.goto(f"{server.url}/map?run={run.name}&annotator=ann-a&layout=review")
        expect(main.get_by_text("Nothing selected.")).to_be_visible(timeout=PAGE_S * 1000)
        idle(page)
        page.wait_for_function(f"() => document.querySelector('{_CHART}')?._fullLayout?.xaxis?._offset !== undefined")
        state = page.evaluate(_CHART_STATE)
        assert state["clickmode"] == "event+select", state            # else a click only zooms or does nothing

        def click_point(i: int) -> None:
            px, py = page.evaluate(_TO_PIXELS, [float(xy[i, 0]), float(xy[i, 1])])
            page.mouse.click(px, py)

        def chosen() -> None:
            """One click on the lonely point, on a chart that is drawn and idle: the page says it is selected."""
            idle(page)
            page.wait_for_function(f"() => document.querySelector('{_CHART}')?._fullLayout?.xaxis?._offset "
                                   "!== undefined")
            click_point(lonely)
            expect(main.get_by_text("1 pair(s) selected")).to_be_visible(timeout=PAGE_S * 1000)
            expect(main.get_by_text(re.compile(rf"^Row {rows[lonely]} · "))).to_be_visible()
            idle(page)

        chosen()
        assert page.evaluate(_CHART_STATE)["picked"] == 1                 # and the chart shows it

        def nothing_selected_and_none_shown() -> None:
            idle(page)
            expect(main.get_by_text("Nothing selected.")).to_be_visible(timeout=PAGE_S * 1000)
            expect(main.get_by_text(re.compile(r"pair\(s\) selected"))).to_have_count(0, timeout=PAGE_S * 1000)
            expect(main.get_by_role("button", name="Keep all")).to_have_count(0)
            page.wait_for_timeout(1000)                                # a stale selection event would come now
            idle(page)
            expect(main.get_by_text("Nothing selected.")).to_be_visible()
            s = page.evaluate(_CHART_STATE)
            assert (s["picked"], s["areas"]) == (0, 0), s

        def one_chart() -> None:
            """Hover the chart once the rerun has replaced the old one (a new key draws a new element)."""
            expect(page.get_by_test_id("stPlotlyChart")).to_have_count(1, timeout=PAGE_S * 1000)
            page.get_by_test_id("stPlotlyChart").hover()

        def agree() -> None:
            """What the page counts as selected is what the chart highlights (or nothing at all)."""
            idle(page)
            page.wait_for_timeout(1000)                                # a stale selection event would come now
            idle(page)
            s = page.evaluate(_CHART_STATE)
            said = main.get_by_text(re.compile(r"pair\(s\) selected")).count()
            assert (said > 0) == (s["picked"] > 0 or s["areas"] > 0), (said, s)

        main.get_by_text("Chosen and rejected means").click()           # another view: the points moved
        nothing_selected_and_none_shown()
        main.get_by_text("One point per pair").click()
        nothing_selected_and_none_shown()                                # not "1 pair(s) selected", unshown

        # a box over the left half, then another colouring: the count and the highlight still agree
        one_chart()
        page.locator("[data-title='Box Select']").click()
        (x0, y0), (x1, y1) = (page.evaluate(_TO_PIXELS, [float(xy[:, 0].min()), float(xy[:, 1].max())]),
                              page.evaluate(_TO_PIXELS, [float(np.median(xy[:, 0])), float(xy[:, 1].min())]))
        page.mouse.move(x0 + 1, y0 + 1)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
        page.mouse.move(x1, y1 - 1, steps=5)
        page.mouse.up()
        expect(main.get_by_text(re.compile(r"^\d+ pair\(s\) selected"))).to_be_visible(timeout=PAGE_S * 1000)
        idle(page)
        assert page.evaluate(_CHART_STATE)["areas"] == 1
        page.get_by_test_id("stRadio").filter(has_text="Colour by").get_by_text("Decision").click()
        agree()

        # Open in Browse: the same annotator and layout, the pair open, deciding possible
        page.get_by_test_id("stRadio").filter(has_text="Colour by").get_by_text("Score").click()
        idle(page)
        one_chart()
        page.locator("[data-title='Pan']").click()                       # back from box select: clicks select
        chosen()
        main.get_by_role("button", name="Open in Browse").click()
        expect(main.get_by_role("heading", name="Browse")).to_be_visible(timeout=PAGE_S * 1000)
        idle(page)
        assert "annotator=ann-a" in page.url and "layout=review" in page.url, page.url
        expect(main.get_by_test_id("stDataFrame")).to_have_count(0)       # Review layout, not the table
        expect(main.get_by_role("button", name="Keep")).to_be_enabled()
        page.get_by_test_id("stSidebar").get_by_role("link", name="Map").click()     # and back to the Map
        expect(main.get_by_role("heading", name="Map")).to_be_visible(timeout=PAGE_S * 1000)
        agree()
        assert not main.get_by_test_id("stException").count()
        assert not errors, errors


# ------------------------------------------------------------------------------------------------ sign-in

SECRETS = """
[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "a-test-cookie-secret-of-forty-characters"
client_id = "ches-studio"
client_secret = "a-test-client-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"
"""


def sign_in(page, app_url: str, provider_url: str, email: str, path: str = "") -> None:
    """Through the provider's real authorization form: the app's Sign in button, type the subject (the mock
    provider makes it the `email` claim too), Authorize, and back to the app with its auth cookie."""
    from playwright.sync_api import expect

    page.goto(f"{app_url}/{path}")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("sign in to review pairs")).to_be_visible(timeout=PAGE_S * 1000)
    expect(page.get_by_test_id("stSidebar").get_by_role("link")).to_have_count(0)    # no page before sign-in
    main.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{provider_url}/oauth2/authorize?**", timeout=PAGE_S * 1000)
    page.get_by_placeholder("sub").fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app_url}/**", timeout=PAGE_S * 1000)
    idle(page)


def test_sign_in_names_the_annotator_and_roles_are_enforced(tmp_path):
    """Three people sign in through a real OpenID Connect provider on localhost, each in their own browser
    context: Bob (annotator) decides as "Bob" whatever the link says, and cannot score, estimate, delete a run
    or export; Ada (admin) can export and delete the run, and Bob's open page then says the run was deleted;
    Eve, not on the team, is told so and sees no page."""
    from oidc_provider_mock import run_server_in_thread
    from playwright.sync_api import expect

    from ches.engine import store
    from ches.review import decisions

    ws = tmp_path / "ws"
    run = _stored_run(ws)
    (ws / "team.toml").write_text(TEAM, encoding="utf-8")
    table = store.read_scores(run)
    row = int(table["row"].iloc[7])
    with run_server_in_thread() as provider_server:
        provider = f"http://localhost:{provider_server.server_port}"
        with streamlit_server(tmp_path, ws, secrets=SECRETS.replace("{provider}", provider)) as server, browser() as b:
            bob, bob_errors = new_page(b)
            sign_in(bob, server.url, provider, "bob@example.org", f"browse?run={run.name}")
            main, sidebar = bob.get_by_test_id("stMain"), bob.get_by_test_id("stSidebar")
            expect(sidebar).to_contain_text("Bob · annotator", timeout=PAGE_S * 1000)
            # a link naming another annotator does not make Bob someone else; there is no name box to type in
            bob.goto(f"{server.url}/browse?run={run.name}&row={row}&annotator=mallory")
            heading = main.get_by_role("heading", name=re.compile(rf"^Row {row} · rank"))
            expect(heading).to_be_visible(timeout=PAGE_S * 1000)
            idle(bob)
            expect(sidebar).to_contain_text("Bob · annotator")
            assert not sidebar.get_by_role("textbox", name="Annotator").count()
            assert not main.get_by_role("textbox").filter(has_text="name").count()
            heading.scroll_into_view_if_needed()
            main.get_by_role("button", name="Keep", exact=True).click()
            expect(main.get_by_text(f"Row {row}: keep")).to_be_visible(timeout=PAGE_S * 1000)
            idle(bob)
            assert "annotator=mallory" not in bob.url
            # what an annotator may not do: score, delete a run (the page says why), export: all disabled
            sidebar.get_by_role("link", name="Data & score").click()
            expect(main.get_by_role("button", name="Score", exact=True)).to_be_disabled(timeout=PAGE_S * 1000)
            expect(main.get_by_role("button", name="Estimate", exact=True)).to_be_disabled()   # a job: an admin's
            main.get_by_text("Delete a run").click()
            expect(main.get_by_role("button", name="Delete …")).to_be_disabled()
            expect(main.get_by_text("Only an admin may do this (Bob is annotator")).to_be_visible()
            sidebar.get_by_role("link", name="Curate & export").click()
            expect(main.get_by_role("button", name="Export", exact=True)).to_be_disabled(timeout=PAGE_S * 1000)
            sidebar.get_by_role("link", name="Browse").click()               # Bob keeps a pair open
            expect(main.get_by_role("heading", name=re.compile(r"^Row \d+ · rank"))).to_be_visible(
                timeout=PAGE_S * 1000)
            idle(bob)

            ada, ada_errors = new_page(b)
            sign_in(ada, server.url, provider, "Ada@Example.org", f"?run={run.name}")
            main = ada.get_by_test_id("stMain")
            expect(ada.get_by_test_id("stSidebar")).to_contain_text("Ada · admin", timeout=PAGE_S * 1000)
            ada.get_by_test_id("stSidebar").get_by_role("combobox", name="Active run").click()
            ada.get_by_role("option").first.click()
            idle(ada)
            ada.get_by_test_id("stSidebar").get_by_role("link", name="Curate & export").click()
            export = main.get_by_role("button", name="Export", exact=True)
            expect(export).to_be_enabled(timeout=PAGE_S * 1000)
            export.click()
            expect(main.get_by_text(re.compile(r"^Wrote \d+ of 165 pairs"))).to_be_visible(timeout=PAGE_S * 1000)
            assert list((ws / "exports").iterdir())
            ada.get_by_test_id("stSidebar").get_by_role("link", name="Data & score").click()
            expect(main.get_by_text("Delete a run")).to_be_visible(timeout=PAGE_S * 1000)
            idle(ada)
            main.get_by_text("Delete a run").click()
            pick = main.get_by_role("combobox", name="Run", exact=True)
            expect(pick).to_be_visible(timeout=PAGE_S * 1000)
            idle(ada)
            option = ada.get_by_role("option", name=re.compile("sample.jsonl")).first    # the list is outside main
            delete = main.get_by_role("button", name="Delete …")
            pick.click()                                                    # one click opens the list
            expect(option).to_be_visible(timeout=PAGE_S * 1000)
            option.click(force=True)        # it animates into place: the click must not wait for "stable"
            expect(delete).to_be_enabled(timeout=PAGE_S * 1000)
            delete.click()
            expect(main.get_by_text("0 stored probe(s) and 0 curation check(s)")).to_be_visible(timeout=PAGE_S * 1000)
            main.get_by_role("button", name="Delete the run").click()
            expect(main.get_by_text("Deleted the run")).to_be_visible(timeout=PAGE_S * 1000)
            assert not run.exists()

            bob.get_by_test_id("stSidebar").get_by_role("link", name="Map").click()   # Bob's next click
            expect(bob.get_by_test_id("stMain").get_by_text(f"The run {run.name} was deleted")).to_be_visible(
                timeout=PAGE_S * 1000)

            eve, eve_errors = new_page(b)
            sign_in(eve, server.url, provider, "eve@example.org")
            main = eve.get_by_test_id("stMain")
            expect(main.get_by_text("You are signed in as eve@example.org, who is not on this workspace's team")
                   ).to_be_visible(timeout=PAGE_S * 1000)
            expect(eve.get_by_test_id("stSidebar").get_by_role("link")).to_have_count(0)
            for page in (bob, ada, eve):
                assert not page.get_by_test_id("stException").count()
            assert not (bob_errors or ada_errors or eve_errors), (bob_errors, ada_errors, eve_errors)
    decided = decisions.current(ws / "decisions.sqlite")
    assert [(d.decision, d.annotator) for d in decided.values()] == [("keep", "Bob")]
    assert list(decided) == [table.set_index("row").loc[row, "pair_id"]]


def test_an_annotator_sees_nothing_blind_hides_and_cannot_cancel_a_job_or_start_a_probe_or_check(tmp_path):
    """Bob (annotator) signs in while a blind review runs and a scoring job (started by Ada, the admin) is live:
    Data & score and the sidebar show that job's Cancel disabled; on Browse the riskiest pair (Ada: keep,
    Cat: drop) and the next one (nobody decided it) both say that others' decisions are hidden, and neither
    name shows; Curate & export's conflicts say who decided what is for admins only (no table), and its
    curation check is disabled; so is the Probe page's Run probe."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from oidc_provider_mock import run_server_in_thread
    from playwright.sync_api import expect

    from ches.engine import jobs, store
    from ches.review import assignment, decisions
    from test_app import _live_job

    ws = tmp_path / "ws"
    run = _stored_run(ws)
    (ws / "team.toml").write_text(TEAM, encoding="utf-8")
    ranked = store.read_scores(run).sort_values(["ln_ches", "row"], ascending=[False, True])
    (first, second), (pid, _) = ranked["row"].tolist()[:2], ranked["pair_id"].tolist()[:2]
    decisions.record(ws / "decisions.sqlite", pid, "keep", annotator="Ada")
    decisions.record(ws / "decisions.sqlite", pid, "drop", annotator="Cat")
    assignment.write_assignment(run, assignment.Assignment(blind=True))
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        _live_job(SimpleNamespace(workspace=ws), job.pid, [], [{"event": "step", "what": "scoring"}],
                  label="sample.jsonl · 165 pairs · smollm2")
        hidden = "Others' decisions are hidden until you decide (blind review)."
        with run_server_in_thread() as provider_server:
            provider = f"http://localhost:{provider_server.server_port}"
            with streamlit_server(tmp_path, ws, secrets=SECRETS.replace("{provider}", provider)) as server, \
                    browser() as b:
                bob, errors = new_page(b)
                main, sidebar = bob.get_by_test_id("stMain"), bob.get_by_test_id("stSidebar")
                sign_in(bob, server.url, provider, "bob@example.org")
                expect(sidebar).to_contain_text("Bob · annotator", timeout=PAGE_S * 1000)
                # (c) the admin's job: its Cancel is there, disabled, on Data & score (and in the sidebar, below)
                expect(main.get_by_role("button", name="Cancel", exact=True)).to_be_disabled(timeout=PAGE_S * 1000)

                # (b) Browse, blind: the pair Ada and Cat decided, then (Skip, one click) one nobody decided
                bob.goto(f"{server.url}/browse?run={run.name}&layout=review")
                for row, rank in ((first, 1), (second, 2)):
                    heading = main.get_by_role("heading", name=re.compile(rf"^Row {row} · rank {rank} of"))
                    expect(heading).to_be_visible(timeout=PAGE_S * 1000)
                    expect(main.get_by_text(hidden)).to_be_visible(timeout=PAGE_S * 1000)
                    expect(main.get_by_text(re.compile(r"\b(Ada|Cat): (keep|drop)"))).to_have_count(0)
                    if rank == 1:
                        expect(sidebar.get_by_role("button", name="Cancel scoring")).to_be_disabled()
                        main.get_by_role("button", name="Skip").click()

                # (a) Curate & export, blind: the conflict is counted, who decided what is not shown
                sidebar.get_by_role("link", name="Curate & export").click()
                conflicts_said = "1 conflict(s) among annotators"
                conflicts = main.get_by_text(conflicts_said)
                expect(conflicts).to_be_visible(timeout=PAGE_S * 1000)
                conflicts.click()
                expect(main.get_by_text("which annotator decided what is shown to admins only")).to_be_visible(
                    timeout=PAGE_S * 1000)
                panel = main.get_by_role("group").filter(has_text=conflicts_said)   # the expander (a <details>)
                expect(panel).to_have_count(1)
                expect(panel.get_by_test_id("stDataFrame")).to_have_count(0)    # no table (its grid is a canvas:
                expect(main.get_by_text(re.compile(r"\b(Ada|Cat)\b"))).to_have_count(0)   # no text to look for)
                check = main.get_by_role("button", name="Check these rules on the model")
                check.scroll_into_view_if_needed()
                expect(check).to_be_disabled()

                # (c) the probe: an admin's to start
                sidebar.get_by_role("link", name="Probe").click()
                expect(main.get_by_role("button", name="Run probe")).to_be_disabled(timeout=PAGE_S * 1000)
                expect(sidebar.get_by_role("button", name="Cancel scoring")).to_be_disabled()
                assert not main.get_by_test_id("stException").count()
                assert not errors, errors
    finally:
        job.kill()
        job.wait()
    (left,) = jobs.list_jobs(ws / "jobs")
    assert not left.cancelled                                          # Bob cancelled nothing, decided nothing
    assert sorted(decisions.current_by_annotator(ws / "decisions.sqlite")) == ["Ada", "Cat"]
