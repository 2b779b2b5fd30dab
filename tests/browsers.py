"""What the real-browser tests share: a Streamlit server of the app on a free port, Debian's headless Chromium,
a page per person, and "the run is over". tests/test_browser.py and tests/test_signin.py use it; so does
bench/team_bench.py's idea of a server (it keeps its own async one).

Needs Debian's Chromium at /usr/bin/chromium (`make browser`); Playwright's own browser downloads are not used.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, kill_running_jobs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 90
PAGE_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server's whole process group (streamlit and anything it started)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def streamlit_server(tmp_path: Path, workspace: Path, *, secrets: str = "",
                     env: dict[str, str] | None = None) -> Iterator[SimpleNamespace]:
    """`streamlit run app.py` on a free port (url on localhost: the origin a sign-in redirect comes back to),
    with `secrets` as its only secrets file (empty: no sign-in) and `env` added to the environment."""
    port = free_port()
    url = f"http://localhost:{port}"
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(secrets.replace("{url}", url), encoding="utf-8")
    log_path = tmp_path / "streamlit.log"
    env = {**os.environ, "CHES_WORKSPACE": str(workspace), "CHES_DATA_ROOT": str(ROOT / "data"),
           "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--browser.gatherUsageStats", "false", "--secrets.files", str(secrets_file)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.perf_counter()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - started > SERVER_START_S:
                pytest.fail(f"streamlit not healthy after {SERVER_START_S} s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
        print(f"\n[browser] server healthy on port {port} after {time.perf_counter() - started:.1f} s")
        yield SimpleNamespace(url=url, workspace=workspace, log=log_path, proc=proc)
    finally:
        stop(proc)
        kill_running_jobs(workspace / "jobs")


@contextlib.contextmanager
def browser() -> Iterator:
    """Debian's headless Chromium (closed afterwards)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make browser` to install Debian's Chromium "
                    "(Playwright's own browser downloads are not used).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(b, height: int = 900):
    """A page 1400 px wide in its own browser context (its own cookies: one person), and its JS errors."""
    page = b.new_context(viewport={"width": 1400, "height": height}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def idle(page, timeout_s: float = PAGE_S) -> None:
    """Wait until the script run is over (Streamlit's "Running…" status widget gone)."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)       # let a just-triggered rerun show its status widget
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout_s * 1000)
