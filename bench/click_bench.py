"""Are clicks lost, and by whom? Streamlit alone (no ches code), each of the ways our pages rerun, under load.

    python bench/click_bench.py [--clicks 40] [--sessions 8] [--patterns all]

Each pattern is a tiny Streamlit app (written to a temp folder, served by `streamlit run`) with one button
that adds 1 to a count the page shows. One Chromium page clicks it once, waits up to --wait s for the count
to show the new value, and does it again after a random pause (0-1 s), --clicks times; --sessions - 1 other
pages keep the same app open meanwhile (their own reruns and timers load the server, as a team does). A
click whose count never shows is lost. The patterns are what our pages do (see the module's PATTERNS):

- callback_keyed:  the button's callback records the click and reruns two keyed fragments
                   (st.rerun(scope=[...])), a sidebar fragment polls every second (run_every), the page's
                   own body costs 0.3 s: the decision bar, the counts and the jobs panel today.
- value_full:      `if st.button(...)`: the click is seen in the body of a whole-page rerun that costs 0.3 s;
                   a polling fragment calls st.rerun() (the whole app) every other poll: a job starting or
                   ending elsewhere, as the jobs panel does.
- in_fragment:     the button is inside a polling fragment (run_every 0.5 s) and its callback records the
                   click: Cancel and Dismiss in the jobs panel.
- beside_fragment: the same, with the button drawn beside the polling fragment (by the page run), not in it:
                   what the jobs panel does now (Cancel and Dismiss outside the fragment that polls).
- body_rerun:      the page's body calls st.rerun() once per page view before the button is drawn (a
                   pending message, a URL sync), and the button's effect is its return value.

Prints, per pattern: clicks, lost, and the time from click to count shown (median, p95). Not a test.

Measured 2026-12-07 (this 2-core machine, other work running, load 3-7; Streamlit 1.67.0, 8 sessions):
callback_keyed 0 of 30 lost (p50 0.34 s); value_full 29 of 30; body_rerun 30 of 30 (a st.rerun() in the run
that carries a click drops it: Streamlit resets triggers on st.rerun); in_fragment 8 of 10 and beside_fragment
7 of 10 lost even with 15 s to show (a 0.5 s poll under load loses clicks wherever the button is), while
beside_fragment polling every 1.0 s (the jobs panel's POLL_S) lost 0 of 10 (p50 0.50 s).
"""
from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browsers import browser, free_port, stop  # noqa: E402

HEAD = """
import time
import streamlit as st
st.session_state.setdefault("n", 0)
def add():
    st.session_state.n += 1
"""
PATTERNS = {
    "callback_keyed": HEAD + """
def add_and_rerun():
    add()
    st.rerun(scope=["panel", "counts"])
@st.fragment(run_every=1.0)
def jobs():
    st.caption(f"polled {time.time():.1f}")
with st.sidebar:
    jobs()
    @st.fragment(key="counts")
    def counts():
        st.caption(f"counts {st.session_state.n}")
    counts()
time.sleep(0.3)
@st.fragment(key="panel")
def panel():
    st.markdown(f"count={st.session_state.n}")
    st.button("Add", on_click=add_and_rerun)
panel()
""",
    "value_full": HEAD + """
st.session_state.setdefault("polls", 0)
@st.fragment(run_every=1.0)
def jobs():
    st.session_state.polls += 1
    st.caption(f"polled {st.session_state.polls}")
    if st.session_state.polls % 2 == 0:
        st.rerun()
with st.sidebar:
    jobs()
time.sleep(0.3)
if st.button("Add"):
    add()
st.markdown(f"count={st.session_state.n}")
""",
    "in_fragment": HEAD + """
time.sleep(0.3)
@st.fragment(run_every=0.5)
def panel():
    st.markdown(f"count={st.session_state.n}")
    st.button("Add", on_click=add)
panel()
""",
    "beside_fragment": HEAD + """
time.sleep(0.3)
@st.fragment(run_every=0.5)
def progress():
    st.markdown(f"count={st.session_state.n}")
progress()
st.button("Add", on_click=add)
""",
    "body_rerun": HEAD + """
st.session_state.setdefault("view", 0)
st.session_state.view += 1
if st.session_state.view % 2 == 1:
    time.sleep(0.1)
    st.rerun()
time.sleep(0.3)
if st.button("Add"):
    add()
st.markdown(f"count={st.session_state.n}")
""",
}


def serve(app: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=app.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://localhost:{port}"
    import urllib.request

    for _ in range(120):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError("streamlit did not start")


def count_on(page) -> int:
    text = page.get_by_text("count=").first.inner_text(timeout=60_000)
    return int(text.split("=")[1])


def run_pattern(name: str, clicks: int, sessions: int, wait_s: float, rng: random.Random) -> dict:
    """Serve PATTERNS[name], open `sessions` pages, click once per try in the first; clicks lost and times."""
    folder = Path(tempfile.mkdtemp(prefix=f"click-{name}-"))
    app = folder / "app.py"
    app.write_text(textwrap.dedent(PATTERNS[name]), encoding="utf-8")
    proc, url = serve(app)
    lost, times = 0, []
    try:
        with browser() as b:
            pages = [b.new_context(viewport={"width": 1200, "height": 800}).new_page() for _ in range(sessions)]
            for page in pages:
                page.goto(url, timeout=120000)
            page = pages[0]
            page.get_by_role("button", name="Add").wait_for(timeout=60_000)
            expected = count_on(page)
            for _ in range(clicks):
                page.wait_for_timeout(rng.uniform(0, 1000))
                started = time.perf_counter()
                page.get_by_role("button", name="Add").click()
                expected += 1
                deadline = started + wait_s
                while time.perf_counter() < deadline:
                    try:
                        shown = count_on(page)
                    except Exception:          # between renders: the element is being replaced
                        shown = -1
                    if shown >= expected:
                        times.append(time.perf_counter() - started)
                        break
                    page.wait_for_timeout(20)
                else:
                    lost += 1
                    page.wait_for_timeout(1000)
                    expected = count_on(page)  # go on from what the page shows
    finally:
        stop(proc)
    return {"pattern": name, "clicks": clicks, "lost": lost,
            "p50": statistics.median(times) if times else float("nan"),
            "p95": sorted(times)[int(0.95 * (len(times) - 1))] if times else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=40)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--wait", type=float, default=10.0, help="seconds a click may take to show (default 10)")
    ap.add_argument("--patterns", default="all", help="comma-separated names of PATTERNS, or all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = list(PATTERNS) if args.patterns == "all" else args.patterns.split(",")
    rng = random.Random(args.seed)
    import streamlit

    print(f"streamlit {streamlit.__version__}; {args.sessions} sessions; {args.clicks} single clicks each")
    print(f"{'pattern':<16} {'clicks':>6} {'lost':>5} {'p50 s':>7} {'p95 s':>7}")
    for name in names:
        r = run_pattern(name, args.clicks, args.sessions, args.wait, rng)
        print(f"{r['pattern']:<16} {r['clicks']:>6} {r['lost']:>5} {r['p50']:>7.2f} {r['p95']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
