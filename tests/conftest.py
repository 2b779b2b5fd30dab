"""Shared fixtures: the real default model, a tiny random model, small scored runs (sample and hostile
texts), a temp workspace.

The model keeps the user's default CHES_CACHE, so the GGUF conversion happens once per machine.
Runs are scored once per test session into a session temp folder; tests must not modify them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "data" / "sample.jsonl"

# Every string a page must show literally: HTML that would run, Markdown that would format.
HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "**bold** [link](http://evil.example)",
    "# heading",
)


def _hostile_rows() -> list[dict]:
    """6 distinct pairs; every hostile string appears in a prompt, a chosen and a rejected text."""
    rows = []
    for i in range(6):
        a, b, c = HOSTILE[i % 4], HOSTILE[(i + 1) % 4], HOSTILE[(i + 2) % 4]
        rows.append({"prompt": f"{a} question {i}", "chosen": f"{b} fine answer {i}",
                     "rejected": f"{c} other answer {i}"})
    return rows


@pytest.fixture(scope="session")
def real_lm():
    """The default model (SmolLM2-135M-Instruct), loaded once per session."""
    from ches.engine.models import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight Llama (hidden 32, 2 layers) with the default model's tokenizer, saved as a folder.

    For tests whose numbers need a real forward pass but not a trained model: `load_model(folder)` in
    well under a second, ~50k tokens/s on one CPU core.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ches.engine.models import default_model_dir

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, runs_root, real_lm) -> Path:
    """Run folder of the first 24 sample pairs, scored at max_length=512."""
    from ches.engine.files import load_dataset
    from ches.engine.pipeline import score_dataset

    src = tmp_path_factory.mktemp("sample24") / "sample24.jsonl"
    src.write_text("".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:24]), encoding="utf-8")
    return score_dataset(load_dataset(src), real_lm, runs_root=runs_root, max_length=512)


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory, runs_root, real_lm) -> Path:
    """Run folder of 6 pairs whose prompts and responses hold HTML / Markdown payloads (see HOSTILE)."""
    from ches.engine.files import load_dataset
    from ches.engine.pipeline import score_dataset

    src = tmp_path_factory.mktemp("hostile") / "hostile.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _hostile_rows()), encoding="utf-8")
    return score_dataset(load_dataset(src), real_lm, runs_root=runs_root, max_length=256)


def make_fake_run(run_dir: Path, dataset, *, seed: int = 0, d: int = 8) -> Path:
    """A complete run folder for `dataset` with random sums and scores (no model; for UI tests)."""
    import numpy as np
    import pandas as pd

    from ches.engine.chunks import write_run

    pairs = dataset.pairs
    n = len(pairs)
    r = np.random.default_rng(seed)
    scores = pd.DataFrame({
        "row": [p.row for p in pairs], "pair_id": [p.pair_id for p in pairs],
        "ln_ches": r.normal(size=n), "ches": r.normal(size=n) * 100, "edit_sim": -r.random(n),
        "last_hidden_ip": r.normal(size=n), "len_chosen": r.integers(1, 60, n), "len_rejected": r.integers(1, 60, n),
        "truncated": np.zeros(n, bool), "flags": [",".join(p.flags) for p in pairs],
    })
    arrays = {"S_plus": r.normal(size=(n, d)), "S_minus": r.normal(size=(n, d))}
    from ches import __version__

    manifest = {"key": {"dataset_hash": dataset.content_hash, "model_id": "test/model", "fingerprint": "fp123",
                        "template": "tmpl", "max_length": 512, "dtype": "float32", "engine_version": 1},
                "run": Path(run_dir).name, "created_at": "2025-01-01T00:00:00+00:00", "app_version": __version__,
                "source": dataset.source, "format": dataset.format, "pairs": n, "rows_skipped": [], "flag_counts": {}}
    return write_run(Path(run_dir), manifest=manifest, scores=scores, pairs=pairs, arrays=arrays)


@pytest.fixture(scope="session")
def flagged_run(tmp_path_factory) -> Path:
    """A fake-scored run (no model) of 130 pairs, some flagged: identical (row 3), duplicate (row 5),
    empty_rejected (row 8). Enough rows for three table pages."""
    from ches.engine.records import load_records

    records = [{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": f"other {i}"} for i in range(130)]
    records[2]["rejected"] = records[2]["chosen"]
    records[4] = dict(records[0])
    records[7]["rejected"] = ""
    dataset = load_records(records, source="flagged.jsonl")
    return make_fake_run(tmp_path_factory.mktemp("flagged") / "run", dataset, seed=1)


@pytest.fixture
def workspace_env(monkeypatch, tmp_path) -> SimpleNamespace:
    """CHES_WORKSPACE and CHES_DATA_ROOT pointed at fresh temp folders: .workspace, .data_root."""
    ws, data = tmp_path / "workspace", tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("CHES_WORKSPACE", str(ws))
    monkeypatch.setenv("CHES_DATA_ROOT", str(data))
    return SimpleNamespace(workspace=ws, data_root=data)


# Loaded by a scoring job's interpreter at start-up (through PYTHONPATH): each chunk's embedding first
# sleeps, so that a test's Cancel always lands while the job is still scoring, however fast the machine.
SLOW_SITE = """
import sys
if sys.orig_argv[1:4] == ["-m", "ches", "score"]:          # the job only, not a server that starts it
    import time
    import ches.engine.pipeline as pipeline
    _embed = pipeline.embed_pairs
    def embed_pairs(*args, **kwargs):
        time.sleep({pause})
        return _embed(*args, **kwargs)
    pipeline.embed_pairs = embed_pairs
"""


@pytest.fixture
def slow_jobs(monkeypatch, tmp_path):
    """Scoring jobs started while this fixture is active pause `pause` seconds per chunk (set via the
    returned function, 0.5 s by default); `fast()` undoes it for jobs started afterwards."""
    import os

    site = tmp_path / "slow-site"
    site.mkdir()

    def slow(pause: float = 0.5) -> None:
        (site / "sitecustomize.py").write_text(SLOW_SITE.format(pause=pause))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    def fast() -> None:
        (site / "sitecustomize.py").unlink(missing_ok=True)

    slow()
    return SimpleNamespace(slow=slow, fast=fast)


# Loaded by a map job's interpreter at start-up (through PYTHONPATH): its UMAP is a stand-in, the first two input
# columns (no numba compile, which takes 10-15 s per process here; tests/test_projection.py runs the real one).
STANDIN_UMAP = """
import sys, types
if sys.orig_argv[1:4] == ["-m", "ches", "project"]:
    class UMAP:
        def __init__(self, **kwargs):
            pass
        def fit_transform(self, X):
            return X[:, :2].copy()
    sys.modules["umap"] = types.ModuleType("umap")
    sys.modules["umap"].UMAP = UMAP
"""
# ... and a probe, curation check or map job waits while the gate file exists, so that a test sees it running and
# its Cancel lands however fast the machine is.
TASK_SITE = STANDIN_UMAP + """
import os, time
if sys.orig_argv[1:3] == ["-m", "ches"] and sys.orig_argv[3:4] != ["score"]:
    while os.path.exists({gate!r}):
        time.sleep(0.05)
"""


@pytest.fixture
def task_jobs(monkeypatch, tmp_path):
    """Probe, check and map jobs started while this fixture is active wait at start-up while the gate is closed
    (closed at first; `release()` opens it, `hold()` closes it) and lay maps out with a stand-in UMAP. `over(job)`
    waits until a job has stopped running and gives its status. Jobs of the workspace still running at the end
    (a failed test) are killed."""
    import os
    import time

    from ches.engine import jobs
    from ches.workspace import workspace

    site, gate = tmp_path / "task-site", tmp_path / "gate"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TASK_SITE.format(gate=str(gate)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    def over(job: jobs.Job, timeout: float = 300) -> jobs.JobStatus:
        started = time.monotonic()
        while (s := jobs.status(job)).running:
            if time.monotonic() - started > timeout:
                pytest.fail(f"job still {s} after {timeout} s; log:\n{job.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        return s

    gate.touch()
    yield SimpleNamespace(hold=gate.touch, release=lambda: gate.unlink(missing_ok=True), over=over)
    kill_running_jobs(workspace().jobs)


def kill_running_jobs(jobs_dir: Path) -> None:
    """Kill the process group of every job of `jobs_dir` still running (a failed test's, or one a page started
    that outlives its test, such as a token view's look-ahead): it would slow the tests after it."""
    import contextlib
    import os
    import signal

    from ches.engine import jobs

    for job in jobs.list_jobs(jobs_dir):
        if job.pid is not None and job.pid != os.getpid() and jobs.status(job).running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)


def load_bench(name: str):
    """The benchmark script bench/<name>.py as a module (bench/ is not a package: scripts run from a checkout)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def write_pairs(path: Path, n: int) -> Path:
    """n distinct pairs of about 100 tokens each (random words) as JSON Lines at `path`."""
    import numpy as np

    words = "the a model answer question because then however river stone light quickly".split()
    rng = np.random.default_rng(0)
    text = lambda k: " ".join(rng.choice(words, k))  # noqa: E731
    path.write_text("".join(json.dumps({"prompt": f"question {i}: {text(20)}", "chosen": text(40),
                                        "rejected": text(40)}) + "\n" for i in range(n)), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- the app in AppTest

def ok(at):
    """`at`, asserting that its last run raised nothing."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_app(page: str, run_dir: Path | None = None, *, timeout: float = 120, **session):
    """app.py in AppTest opened on `page` ("pages/probe.py"), with `run_dir` the active run and `session` in its
    session state; asserts that neither run raised."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    if run_dir is not None:
        at.session_state["run_dir"] = str(run_dir)
    for key, value in session.items():
        at.session_state[key] = value
    ok(at.run())
    return ok(at.switch_page(page).run())


def my_counts(at) -> str:
    """The sidebar's line of my Keep / Drop / Flag counts (Markdown)."""
    found = [m.value for m in at.sidebar.markdown if m.value.startswith("Keep **")]
    assert len(found) == 1, [m.value for m in at.sidebar.markdown]
    return found[0]


def metric(at, label: str) -> str:
    """The value of the page's st.metric labelled `label`."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def heading(at) -> str:
    """The open pair's heading ("Row N · rank ..."), which the decision bar draws above its buttons."""
    import json

    found = at.get("bidi_component")
    assert len(found) == 1, found
    return json.loads(found[0].proto.json)["heading"] or ""


def said(at) -> str:
    """What the decision bar says about the last press ("Row N: keep. Next undecided: ...", a refusal), or ""."""
    import json

    found = at.get("bidi_component")
    assert len(found) == 1, found
    return (json.loads(found[0].proto.json)["said"] or {}).get("text", "")


TEAM = """
[[member]]
email = "ada@example.org"
name = "Ada"
role = "admin"

[[member]]
email = "bob@example.org"
name = "Bob"
role = "annotator"
"""     # a team.toml for sign-in tests: Ada the admin, Bob an annotator
