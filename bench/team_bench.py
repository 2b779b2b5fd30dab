"""A team deciding at once: N browser sessions (headless Chromium) decide on ONE run for a while, on this commit
and, in the same sitting, on a reference commit (a git worktree), so the ratio is honest on a noisy machine.

    python bench/team_bench.py [--sessions 10] [--seconds 60] [--pairs 10000] [--decisions 0]
                               [--baseline REV] [--keep DIR]

A fresh `streamlit run app.py` on a temporary workspace holding one synthetic run (random scores, no model:
tests/conftest.py's make_fake_run) and `--decisions` decisions already made (keep, on random pairs, by the
annotators in turn). Each session opens Browse in Review layout as its own annotator (bench-0 .. bench-N-1)
and, until the time is up, reads the pair on screen, presses K, D or F, and waits for the next pair to appear
(a brisk annotator who reads nothing). Measured:
- arrival: presses sent vs decision events in the log, per annotator, and whether each event is on the pair
  that was on screen at its press (presses and events matched in order, per annotator);
- latency, two ways: press -> event committed in the log (the event's timestamp; same machine clock) and
  press -> next pair on screen (what the annotator waits for); median and p95;
- server CPU per press: the streamlit process's CPU seconds while deciding / decisions;
- memory: the server's RSS (the streamlit process and its children) with 1 session open and idle, then with
  N; per added session = (RSS_N - RSS_1) / (N - 1).
With --baseline REV the same bench runs first on REV (checked out with `git worktree`, served from there with
this Python), then on the working tree, and a last table gives the ratios (reference / this).
Needs Debian's Chromium at /usr/bin/chromium (`make browser`). Not a test: it asserts only that nothing is
lost or misplaced, and prints tables.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from ches.engine.records import load_records  # noqa: E402
from ches.review import decisions  # noqa: E402
from conftest import make_fake_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HEAD = re.compile(r"^Row (\d+) · rank")
# the pair's heading: an h3 on the page (older code), or drawn by the decision bar in its shadow root (this code;
# its host element is found once and kept: the bench polls this every frame in every session, on the same CPU)
READ_HEAD = """() => { const ok = (t) => /^Row \\d+ · rank/.test(t || '');
    for (const h of document.querySelectorAll('h3')) if (ok(h.innerText)) return h.innerText;
    let host = window.__barHost;
    if (!host || !host.isConnected) {
        host = [...document.querySelectorAll('*')].find((el) => el.shadowRoot
            && el.shadowRoot.querySelector('[data-testid=decisionBarHeading]')) || null;
        window.__barHost = host;
    }
    const h = host && host.shadowRoot.querySelector('[data-testid=decisionBarHeading]');
    return h && ok(h.textContent) ? h.textContent : null; }"""
PAGE_S = 180


def make_run(workspace: Path, n: int) -> Path:
    ds = load_records([{"prompt": f"Question {i}: how should the assistant answer this?",
                        "chosen": f"A careful answer number {i}.", "rejected": f"A careless answer {i}."}
                       for i in range(n)], source="team-bench.jsonl")
    return make_fake_run(workspace / "runs" / "0123456789abcdef", ds, seed=16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workspace: Path, log: Path, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` from `root` (this tree, or a reference commit's worktree: its own packages first)."""
    port = free_port()
    env = {**os.environ, "CHES_WORKSPACE": str(workspace), "CHES_DATA_ROOT": str(ROOT / "data"),
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 90:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"streamlit did not start:\n{log.read_text(errors='replace')}")


def rss_mib(pid: int) -> float:
    """The server's resident memory: the process and its children."""
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the server and its children so far."""
    p = psutil.Process(pid)
    return sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)])


def others_cpu_s(server: int) -> dict[str, float]:
    """CPU seconds so far of what shares the machine with the server: the Chromium processes and the bench itself
    (this Python process and Playwright's driver), each summed over its processes."""
    mine = psutil.Process()
    skip = {server, *(q.pid for q in psutil.Process(server).children(recursive=True))}
    out = {"browsers": 0.0, "bench": sum(sum(q.cpu_times()[:2]) for q in [mine, *mine.children(recursive=True)]
                                         if "chrom" not in q.name())}
    for q in mine.children(recursive=True):
        if q.pid not in skip and "chrom" in q.name():
            with contextlib.suppress(psutil.Error):
                out["browsers"] += sum(q.cpu_times()[:2])
    return out


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def open_session(browser, url: str, run: str, i: int):
    from playwright.async_api import expect

    page = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
    page.set_default_timeout(PAGE_S * 1000)
    await page.goto(f"{url}/browse?run={run}&annotator=bench-{i}&layout=review")
    main = page.get_by_test_id("stMain")
    await main.get_by_role("heading", name=HEAD).wait_for()
    await expect(main.locator("[data-action=keep]")).to_be_enabled(timeout=PAGE_S * 1000)   # in a shadow root
    await main.get_by_role("heading", name="Browse").click()            # focus off the layout control
    return page


async def decide(page, i: int, deadline: float, rng: random.Random, presses: list) -> None:
    """Press, then wait for the next pair on screen; until the deadline."""
    while time.time() < deadline:
        head = await page.evaluate(READ_HEAD)
        key = rng.choice("kdf")
        t_press = time.time()
        await page.keyboard.press(key)
        try:
            # every 20 ms, not every animation frame: ten pages polling at 60 Hz would load the shared CPU
            await page.wait_for_function(f"(old) => ({READ_HEAD})() !== old", arg=head, timeout=60_000, polling=20)
            t_screen = time.time()
        except Exception:                      # no new pair within a minute: counted, never waited on forever
            t_screen = None
        presses.append({"annotator": f"bench-{i}", "row": int(HEAD.match(head).group(1)), "key": key,
                        "t_press": t_press, "t_screen": t_screen})


async def bench(args, url: str, run: Path, proc: subprocess.Popen) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = [await open_session(browser, url, run.name, 0)]
            await asyncio.sleep(5)
            out["rss_1"] = rss_mib(proc.pid)
            pages += await asyncio.gather(*(open_session(browser, url, run.name, i)
                                            for i in range(1, args.sessions)))
            await asyncio.sleep(5 if args.sessions > 1 else 0)
            out["rss_n"] = rss_mib(proc.pid)
            presses: list = []
            cpu0, others0 = cpu_s(proc.pid), others_cpu_s(proc.pid)
            deadline = time.time() + args.seconds
            t0 = time.perf_counter()
            await asyncio.gather(*(decide(p, i, deadline, random.Random(i), presses) for i, p in enumerate(pages)))
            out["wall_s"] = time.perf_counter() - t0
            for page in pages:                                   # the server finishes what it was sent
                await page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=PAGE_S * 1000)
            await asyncio.sleep(2)
            out["cpu_s"] = cpu_s(proc.pid) - cpu0
            out["others_cpu_s"] = {k: v - others0[k] for k, v in others_cpu_s(proc.pid).items()}
            out["rss_after"] = rss_mib(proc.pid)
            out["presses"] = presses
        finally:
            await browser.close()
    return out


def seed(workspace: Path, run: Path, n: int, annotators: int) -> None:
    """`n` keep decisions on random pairs of the run, made beforehand by the bench's annotators in turn."""
    from ches.engine.store import read_scores

    if n <= 0:
        return
    pids = random.Random(7).sample(read_scores(run)["pair_id"].tolist(), n)
    for i in range(annotators):
        decisions.record_many(workspace / "decisions.sqlite", pids[i::annotators], "keep", annotator=f"bench-{i}")


def measure(args, root: Path, where: Path) -> dict:
    """The bench on the app served from `root`, in a fresh workspace under `where`: the report's figures."""
    workspace = where / "ws"
    workspace.mkdir(parents=True, exist_ok=True)
    run = make_run(workspace, args.pairs)
    seed(workspace, run, args.decisions, args.sessions)
    before = len(decisions.history(workspace / "decisions.sqlite"))
    proc, url = start_server(workspace, where / "streamlit.log", root)
    try:
        res = asyncio.run(bench(args, url, run, proc))
    finally:
        stop(proc)
    return report(args, run, workspace, res, before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--decisions", type=int, default=0, help="decisions made before the bench starts")
    ap.add_argument("--baseline", metavar="REV", help="also measure this commit first (a git worktree)")
    ap.add_argument("--keep", type=Path, help="keep the workspaces here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="team-bench-") as tmp:
        where = args.keep or Path(tmp)
        figures = {}
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.baseline], cwd=ROOT, check=True)
            try:
                print(f"\n== reference: {args.baseline}")
                figures["reference"] = measure(args, tree, where / "reference")
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        print("\n== this tree")
        figures["this"] = measure(args, ROOT, where / "this")
        if args.baseline:
            ref, this = figures["reference"], figures["this"]
            print(f"\nreference / this ({args.sessions} sessions, {args.pairs:,} pairs, {args.decisions:,} decisions "
                  "before):")
            for k in ("screen_p50", "screen_p95", "commit_p50", "cpu_per_press"):
                print(f"  {k:<14} {ref[k]:.3f} / {this[k]:.3f} = {ref[k] / this[k]:.2f}x")
            print(f"  {'decisions/s':<14} {ref['rate']:.2f} / {this['rate']:.2f} = {this['rate'] / ref['rate']:.2f}x faster")


def report(args, run: Path, workspace: Path, res: dict, before: int) -> dict:
    from ches.engine.store import read_scores

    pid = read_scores(run).set_index("row")["pair_id"]
    events = [e for e in decisions.history(workspace / "decisions.sqlite")[before:] if e.action != "undo"]
    by_ann: dict[str, list] = {}
    for e in events:
        by_ann.setdefault(e.annotator, []).append(e)
    presses = sorted(res["presses"], key=lambda p: p["t_press"])
    sent: dict[str, list] = {}
    for p in presses:
        sent.setdefault(p["annotator"], []).append(p)
    wrong, commit, screen = 0, [], []
    for ann, ps in sent.items():
        evs = by_ann.get(ann, [])
        for p, e in zip(ps, evs):
            action = {"k": "keep", "d": "drop", "f": "flag"}[p["key"]]
            if (e.pair_id, e.action) != (pid[p["row"]], action):
                wrong += 1
                seen_at = "never" if p["t_screen"] is None else f"{p['t_screen'] - p['t_press']:.1f} s later"
                print(f"misplaced: {ann} pressed {action} on row {p['row']} ({pid[p['row']]}), next pair {seen_at}; "
                      f"the event: {e.action} on {e.pair_id}, {datetime.fromisoformat(e.created_at).timestamp() - p['t_press']:.1f} s after")
            commit.append(datetime.fromisoformat(e.created_at).timestamp() - p["t_press"])
        screen += [p["t_screen"] - p["t_press"] for p in ps if p["t_screen"] is not None]
    n_sent, n_logged = len(presses), len(events)
    figures = {"screen_p50": statistics.median(screen) if screen else float("nan"), "screen_p95": pct(screen, 0.95),
               "commit_p50": statistics.median(commit) if commit else float("nan"),
               "cpu_per_press": res["cpu_s"] / max(n_logged, 1), "rate": n_logged / res["wall_s"],
               **{f"{k}_cpu_per_press": v / max(n_logged, 1) for k, v in res["others_cpu_s"].items()}}
    rows = [
        ("sessions", f"{args.sessions}"),
        ("run", f"{args.pairs:,} pairs, {before:,} decisions before"),
        ("time deciding", f"{res['wall_s']:.0f} s"),
        ("presses sent", f"{n_sent:,}"),
        ("decision events in the log", f"{n_logged:,}"),
        ("events on another pair than on screen", f"{wrong}"),
        ("presses with no next pair within 60 s", f"{sum(p['t_screen'] is None for p in presses)}"),
        ("decisions / s (all sessions)", f"{figures['rate']:.1f}"),
        ("press -> event committed: median / p95", f"{figures['commit_p50']:.2f} s / {pct(commit, 0.95):.2f} s"
         if commit else "-"),
        ("press -> next pair on screen: median / p95", f"{figures['screen_p50']:.2f} s / {figures['screen_p95']:.2f} s"
         if screen else "-"),
        ("server CPU per press", f"{figures['cpu_per_press']:.3f} s"),
        ("browsers' CPU per press (all Chromium processes)", f"{figures['browsers_cpu_per_press']:.3f} s"),
        ("the bench's own CPU per press (Python, Playwright)", f"{figures['bench_cpu_per_press']:.3f} s"),
        ("server RSS, 1 session", f"{res['rss_1']:.0f} MiB"),
        (f"server RSS, {args.sessions} sessions", f"{res['rss_n']:.0f} MiB"),
        ("per added session", f"{(res['rss_n'] - res['rss_1']) / (args.sessions - 1):.1f} MiB"
         if args.sessions > 1 else "-"),
        ("server RSS after deciding", f"{res['rss_after']:.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    assert n_logged == n_sent, f"{n_sent} presses sent, {n_logged} events in the log"
    assert wrong == 0, f"{wrong} events on another pair than the one on screen"
    return figures


if __name__ == "__main__":
    main()
