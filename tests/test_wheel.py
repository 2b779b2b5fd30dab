"""`pip install .` gives a working `ches` from any folder: build the wheel, install it into a fresh venv that
sees the already installed dependencies (not the editable checkout), and run it from an unrelated folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel

# Not part of what a build reads: the test copies the checkout without them (a build writes build/ and
# *.egg-info into its source folder, which must not happen in a checkout others are editing).
NOT_SOURCE = (".git", ".venv", "workspace", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".hypothesis", "tests", "bench", "artifacts", "runs")


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed; its python, its ches, and a clean environment for it."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
         cwd=tmp, env=os.environ.copy())
    wheel, = (tmp / "dist").glob("ches_studio-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=os.environ.copy())
    python = venv / "bin" / "python"
    # The dependencies come from this interpreter's site-packages, added as plain paths: a path line in a
    # .pth file does not run that folder's own .pth files, so the checkout's editable finder stays out.
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=tmp, env=os.environ.copy()).stdout.strip())
    outer = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (purelib / "outer_site_packages.pth").write_text("".join(f"{p}\n" for p in outer))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=tmp, env=os.environ.copy())

    elsewhere = tmp / "elsewhere"                # an unrelated folder: no app.py, no data/, no .streamlit/
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHES_DATA_ROOT", "VIRTUAL_ENV")}
    env["CHES_WORKSPACE"] = str(tmp / "workspace")
    return {"venv": venv, "python": python, "ches": venv / "bin" / "ches", "cwd": elsewhere, "env": env}


def test_the_wheel_ships_the_app_and_not_the_checkout(installed):
    venv = installed["venv"].resolve()
    out = _run([installed["python"], "-c", "import ches, ui, ches.workspace as w\n"
                "for p in (ches.__file__, ui.__file__, w.bundled('app.py'), w.bundled('pages/score.py'),\n"
                "          w.bundled('.streamlit/config.toml'), w.SAMPLE): print(p)"],
               cwd=installed["cwd"], env=installed["env"]).stdout.split()
    paths = [Path(p).resolve() for p in out]
    assert len(paths) == 6
    for p in paths:
        assert venv in p.parents, f"{p} is not from the fresh venv {venv}"
        assert ROOT not in p.parents
        assert p.is_file(), p
    assert paths[-1].read_bytes() == (ROOT / "data" / "sample.jsonl").read_bytes()


def _start(installed: dict, *args, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:         # a file, not a pipe: nothing blocks on a full pipe
        return subprocess.Popen([str(a) for a in args], cwd=installed["cwd"], env=installed["env"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)   # ches app: stop its group


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _output(proc: subprocess.Popen, log: Path) -> str:
    text = log.read_text()
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{text[-3000:]}"
    return text


def test_ches_works_from_any_folder(installed):
    """`ches --help`, `ches score --help`, `ches runs`, `ches app` serving, and app.py rendering its first page,
    all from the fresh venv in an unrelated folder, started together (each imports torch: seconds apiece)."""
    ches, logs, port = installed["ches"], installed["cwd"] / "logs", _free_port()
    logs.mkdir()
    render = ("from streamlit.testing.v1 import AppTest\n"
              "from ches.workspace import bundled\n"
              "at = AppTest.from_file(str(bundled('app.py')), default_timeout=90).run()\n"
              "assert not at.exception, [e.value for e in at.exception]\n"
              "print('\\n'.join(c.value for c in at.caption))\n")
    app = _start(installed, ches, "app", "--server.headless", "true", "--server.port", port, log=logs / "app")
    jobs = {name: _start(installed, *cmd, log=logs / name) for name, cmd in {
        "help": [ches, "--help"], "score": [ches, "score", "--help"], "runs": [ches, "runs"],
        "render": [installed["python"], "-c", render]}.items()}
    try:
        url, deadline, health = f"http://127.0.0.1:{port}", time.monotonic() + 120, None
        while time.monotonic() < deadline and app.poll() is None:
            try:
                health = _get(f"{url}/_stcore/health")
                break
            except OSError:
                time.sleep(0.3)
        assert health == (200, "ok"), f"no health answer (exit {app.poll()}):\n{(logs / 'app').read_text()[-3000:]}"
        status, page = _get(url)
        assert status == 200 and "<title>" in page and "streamlit" in page.lower()
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
        for proc in jobs.values():
            _finish(proc)
        _finish(app, timeout=15)
    out = {name: _output(proc, logs / name) for name, proc in jobs.items()}
    # .streamlit/config.toml (browser.gatherUsageStats = false) reached the server: no statistics notice
    assert "Collecting usage statistics" not in (logs / "app").read_text()

    for command in ("score", "runs", "export", "decisions", "probe", "app"):
        assert command in out["help"]
    assert "--max-length" in out["score"]
    assert "no runs yet" in out["runs"]
    assert (Path(installed["env"]["CHES_WORKSPACE"]) / "runs").is_dir()
    assert "sample.jsonl" in out["render"]        # app.py ran its first page, which found the bundled sample


def test_streamlit_flags_spell_a_config_file_as_flags(tmp_path):
    from ches.workspace import streamlit_flags

    config = tmp_path / "config.toml"
    config.write_text('[server]\nport = 8600\nrunOnSave = false\n\n[theme.sidebar]\nbase = "dark"\n')
    assert streamlit_flags(config) == ["--server.port", "8600", "--server.runOnSave", "false",
                                       "--theme.sidebar.base", "dark"]


def test_a_checkout_uses_its_own_files():
    from ches.workspace import SAMPLE, bundled

    assert bundled("app.py") == ROOT / "app.py"
    assert bundled(".streamlit/config.toml") == ROOT / ".streamlit" / "config.toml"
    assert SAMPLE == ROOT / "data" / "sample.jsonl"
