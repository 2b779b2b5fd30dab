"""The command line: every option documented, a real run end to end, and hostile input that never
shows a traceback (a clear line naming the row, the good rows kept)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import ches.cli as cli
import ches.engine.models as models
from test_data_hostile import CORPUS, MANIFEST

# rows the loader accepts but SmolLM2's chat template refuses: skipped at scoring time, with the reason
TEMPLATE_REJECTS = {"empty_messages.jsonl": {1: "empty conversation"}}


@pytest.fixture(scope="module")
def cached_lm():
    return models.load_model()


@pytest.fixture
def fast_model(monkeypatch, cached_lm):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: cached_lm)


def test_help_documents_every_score_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    out = capsys.readouterr().out
    for option in ("--model", "--format", "--max-length", "--dtype", "--batch-tokens", "--out", "--device",
                   "--trust-remote-code", "--split", "--config", "--limit", "--chunk-size", "--column"):
        assert option in out


@pytest.mark.real_model
def test_score_prints_summary_and_reuses_the_run(tmp_path, capsys, fast_model):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "I won't help with that."},
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
        {"prompt": "bad row"},
    ]))
    assert cli.main(["score", str(data), "--max-length", "64", "--out", str(tmp_path / "runs"), "--top", "2"]) == 0
    out, err = capsys.readouterr()
    assert "pairs scored: 2" in out and "rows skipped: 1 (rows 3)" in out
    assert "row 3: missing keys 'chosen', 'rejected'" in err
    assert "top 2 by LN-CHES" in out and "Traceback" not in out + err
    run = next((tmp_path / "runs").iterdir())
    assert cli.main(["score", str(data), "--max-length", "64", "--out", str(tmp_path / "runs")]) == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    assert cli.main(["runs", "--out", str(tmp_path / "runs")]) == 0
    assert run.name in capsys.readouterr().out


@pytest.mark.real_model
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_hostile_corpus_through_the_cli(name, tmp_path, capsys, fast_model):
    code = cli.main(["score", str(CORPUS / name), "--max-length", "32", "--out", str(tmp_path), "--top", "1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    expected = MANIFEST[name]
    if isinstance(expected, str):                      # the whole file is unreadable: one clear line
        assert code == 2 and err.startswith("ches: error:") and expected in err
        return
    good, bad = expected
    good, bad = good - len(TEMPLATE_REJECTS.get(name, {})), {**bad, **TEMPLATE_REJECTS.get(name, {})}
    if good == 0:
        assert code == 2 and ("no usable pairs" in err or "no pair could be tokenized" in err)
    else:
        assert code == 0 and f"pairs scored: {good}" in out
    for row, reason in bad.items():
        assert f"row {row}: " in err and reason in err


@pytest.mark.parametrize("argv,message", [
    (["score", "no/such/file.jsonl"], "no/such/file.jsonl"),
    (["score", "data/sample.jsonl", "--max-length", "1"], "--max-length must be at least 2"),
    (["score", "data/sample.jsonl", "--model", "/nonexistent/model"], "could not load model"),
    (["score", "data/sample.jsonl", "--dtype", "float8"], "unknown dtype"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("CHES_WORKSPACE", str(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_score_reads_columns_in_no_known_format_through_column(tmp_path, capsys, tiny_model_dir):
    """--column maps three columns (the app's column mapping, passed to its scoring job); a bad one is a
    one-line error."""
    from ches.engine.runs import list_runs
    from ches.engine.store import read_texts

    data = tmp_path / "mine.csv"
    data.write_text("question,better,worse\nWhat is 2+2?,4,5\nSay hi,hi,go away\n", encoding="utf-8")
    out = tmp_path / "runs"
    mapped = ["--column", "prompt=question", "--column", "chosen=better", "--column", "rejected=worse"]
    assert cli.main(["score", str(data), "--model", str(tiny_model_dir), "--max-length", "64", "--out", str(out),
                     *mapped]) == 0
    ((run, manifest),) = list_runs(out)
    assert manifest["pairs"] == 2
    assert read_texts(run)["chosen"].tolist() == ["4", "hi"]
    assert cli.main(["score", str(data), "--out", str(out), "--column", "prompt"]) == 2
    assert "--column takes OURS=THEIRS" in capsys.readouterr().err


def test_estimate_says_how_long_score_would_take_and_keeps_it_beside_the_run(tmp_path, capsys, tiny_model_dir,
                                                                             monkeypatch):
    """`ches estimate` takes the arguments of `ches score` and scores nothing: the pairs left, their tokens (at
    least the responses' words; the count `pipeline.estimate` gives in-process) and the time, printed and kept
    beside the run folder `ches score` then writes; a partly scored run: the pairs kept; a complete run: already
    scored; a damaged one: said, and left as it is. Run as a job: a step before each long step, then complete."""
    from conftest import write_pairs
    from ches.engine import estimates, jobs
    from ches.engine.files import load_dataset
    from ches.engine.pipeline import Interrupted, estimate, pending_pairs, run_key, score_dataset
    from ches.engine.runs import run_progress
    from ches.engine.store import is_complete, run_path

    monkeypatch.setenv("CHES_WORKSPACE", str(tmp_path / "ws"))
    data, out = write_pairs(tmp_path / "pairs.jsonl", 30), tmp_path / "runs"
    argv = [str(data), "--model", str(tiny_model_dir), "--max-length", "128", "--limit", "20", "--out", str(out)]
    status = tmp_path / "estimate.status.jsonl"
    monkeypatch.setenv(jobs.STATUS_ENV, str(status))
    assert cli.main(["estimate", *argv]) == 0
    said = capsys.readouterr().out.strip()
    ds, lm = load_dataset(data, limit=20), models.load_model(str(tiny_model_dir))
    run_dir = run_path(out, run_key(ds, lm, 128))
    assert not run_dir.exists() and estimates.read(run_dir).text == said           # kept; nothing scored
    mine = estimate(pending_pairs(ds, run_dir), lm, max_length=128)
    assert said.startswith(f"20 pairs to score, {mine.tokens:,} tokens; estimated ")
    assert said.endswith(" (measured on a short warm-up).")
    words = sum(len(json.loads(line)[k].split()) for line in data.read_text().splitlines()[:20]
                for k in ("chosen", "rejected"))
    assert mine.tokens > words                  # every word of both responses is a token at least, prompts on top
    events = [json.loads(line) for line in status.read_text().splitlines()]
    assert [e["event"] for e in events] == ["step", "step", "step", "complete"]
    assert events[-1]["result"] == str(estimates.file_of(run_dir))

    monkeypatch.delenv(jobs.STATUS_ENV)
    seen: list[int] = []                        # a run stopped after its first chunk of 8: those 8 are kept
    with pytest.raises(Interrupted):
        score_dataset(ds, lm, runs_root=out, max_length=128, chunk_size=8,
                      progress=lambda done, total: seen.append(done), should_stop=lambda: max(seen, default=0) >= 16)
    kept = run_progress(run_dir).done
    assert kept == 8
    assert cli.main(["estimate", *argv]) == 0
    assert capsys.readouterr().out.strip().endswith(f"(measured on a short warm-up). The {kept} pairs already "
                                                    "scored are kept.")
    assert estimates.read(run_dir).text.startswith(f"{20 - kept} pairs to score, ")

    assert cli.main(["score", *argv]) == 0 and is_complete(run_dir)
    capsys.readouterr()
    assert cli.main(["estimate", *argv]) == 0
    assert capsys.readouterr().out.strip() == "Already scored with these settings: Score reopens the stored run."
    scores = run_dir / "scores.parquet"
    scores.write_bytes(scores.read_bytes()[: scores.stat().st_size // 2])          # cut short
    assert cli.main(["estimate", *argv]) == 0
    assert capsys.readouterr().out.strip() == ("The stored run for these settings cannot be used (scores.parquet "
                                                "cannot be read): Score scores it again.")
    assert is_complete(run_dir)                                                    # only read, never reopened


@pytest.mark.parametrize("argv", [["app", "--server.port", "8600"], ["app", "--", "--server.port", "8600"]])
def test_app_hands_its_options_to_streamlit_with_or_without_a_leading_double_dash(argv, monkeypatch):
    """`ches app --server.port 8600` and `ches app -- --server.port 8600` both start streamlit on 8600: no
    `--` reaches `streamlit run` (after one, Streamlit gives the options to the script and serves 8501)."""
    import subprocess

    called = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: called.append(cmd) or 0)
    assert cli.main(argv) == 0
    (cmd,) = called
    assert cmd[1:4] == ["-m", "streamlit", "run"] and "--" not in cmd
    assert cmd[-2:] == ["--server.port", "8600"]


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: these mistakes must be caught before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(models, "load_model", refuse)


@pytest.mark.real_data
def test_a_wrong_format_or_column_fails_before_the_model_loads_and_names_what_fits(tmp_path, capsys, no_model):
    out = ["--out", str(tmp_path / "runs")]
    assert cli.main(["score", str(REAL / "ultrafeedback-binarized-train-500.jsonl"), "--format", "trl_standard", *out]) == 2
    err = capsys.readouterr().err
    assert "no row could be read as 'trl_standard'" in err and "formats that fit them: implicit_messages" in err
    assert "estimated" not in err and "Traceback" not in err
    persona = str(REAL / "persona-ends-justify-means.jsonl")
    assert cli.main(["score", persona, "--column", "prompt=questoin", "--column", "chosen=answer_matching_behavior",
                     "--column", "rejected=answer_not_matching_behavior", *out]) == 2
    err = capsys.readouterr().err
    assert "no column 'questoin'" in err and "'question', 'statement', 'label_confidence'" in err
    bad = tmp_path / "bad.jsonl"                           # the format is right, no row is usable
    bad.write_text('{"prompt": "p", "chosen": 1, "rejected": "r"}\n')
    assert cli.main(["score", str(bad), *out]) == 2
    assert "no usable pair in" in capsys.readouterr().err


def test_ties_are_reported_as_ties_and_the_run_and_export_record_the_subset(tmp_path, capsys, tiny_model_dir):
    """The first 20 pairs of 100 AlpacaEval records, 3 ties among the first 23: the ties are reported apart,
    the run's manifest and the export's manifest say which part was scored and which rows were left out."""
    from ches.engine.runs import list_runs

    records = [{"instruction": f"task {i}", "input": "", "output_1": f"one {i}", "output_2": f"two {i}",
                "preference": 0 if i in (2, 5, 9) else 1 + i % 2} for i in range(100)]
    data = tmp_path / "alpaca_eval.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "runs"
    assert cli.main(["score", str(data), "--model", str(tiny_model_dir), "--max-length", "64", "--limit", "20",
                     "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "tie: skipped 3 row(s) that prefer neither response (rows 3, 6, 10)" in err
    assert "could not be" not in err and "(23 of 100 records read)" in err
    ((run, manifest),) = list_runs(out)
    assert manifest["subset"] == {"limit": 20, "records_read": 23, "source_records": 100}
    assert [(e["row"], e["reason"][:12]) for e in manifest["rows_skipped"]] == [(r, "tie: skipped") for r in (3, 6, 10)]
    exported = tmp_path / "kept.jsonl"
    assert cli.main(["export", str(run), "--out", str(exported), "--keep-lowest-percent", "50"]) == 0
    sidecar = json.loads((tmp_path / "kept.manifest.json").read_text())
    assert sidecar["source_subset"] == manifest["subset"] and sidecar["rows_skipped"] == manifest["rows_skipped"]


# ---------------------------------------------------------------------- decisions export: run, row, prompt

LONG = "Second question, asked in full: " + "why? " * 40      # longer than Browse's 90-character preview


def _runs_for_decisions(runs, make_fake_run):
    """Two runs: 'old' (created 2025-01-01) holds A, B; 'new' (2025-06-01) holds X, C, B (B at row 3)."""
    from ches.engine.records import load_records
    a = {"prompt": "question A", "chosen": "a1", "rejected": "a2"}
    b = {"prompt": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": LONG}], "chosen": "b1", "rejected": "b2"}
    c = {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "question C"}],
         "chosen": "c1", "rejected": "c2"}
    x = {"prompt": "question X", "chosen": "x1", "rejected": "x2"}
    old = make_fake_run(runs / "old", load_records([a, b], source="old.jsonl"))
    new = make_fake_run(runs / "new", load_records([x, c, b], source="new.jsonl"))
    m = json.loads((new / "manifest.json").read_text())
    (new / "manifest.json").write_text(json.dumps({**m, "created_at": "2025-06-01T00:00:00+00:00"}))
    ids = {k: load_records([r], source="m").pairs[0].pair_id for k, r in zip("ABCX", (a, b, c, x))}
    return old, new, ids


def test_decisions_export_carries_run_row_and_prompt_and_imports_back(tmp_path, monkeypatch, capsys):
    from conftest import make_fake_run
    from ches.review import decisions
    ws = tmp_path / "ws"
    monkeypatch.setenv("CHES_WORKSPACE", str(ws))
    _, _, ids = _runs_for_decisions(ws / "runs", make_fake_run)
    db = ws / "decisions.sqlite"
    decisions.record(db, ids["A"], "keep", annotator="ann-a")
    decisions.record(db, ids["B"], "drop", annotator="ann-a", note="line one\u2028line two")
    decisions.record(db, ids["C"], "flag", annotator="ann-b")
    decisions.record(db, "gone-pair", "drop", annotator="ann-b")
    decisions.record(db, ids["B"], "keep", annotator="boss", adjudicate=True)

    out = tmp_path / "all.jsonl"
    assert cli.main(["decisions", "export", str(out)]) == 0
    assert f"exported 5 decision event(s) from {db} to {out}; 3 of 4 pair(s) found in the runs in" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").split("\n") if x]
    got = [(e["pair_id"], e["run"], e["row"], e["prompt"]) for e in lines]
    assert got == [(ids["A"], "old", 1, "question A"),            # only the old run holds A
                   (ids["B"], "new", 3, LONG),                    # the most recent run holding B; full text
                   (ids["C"], "new", 2, "question C"),            # the last user turn, not the system prompt
                   ("gone-pair", None, None, None),               # in no run
                   (ids["B"], "new", 3, LONG)]
    assert lines[1]["note"] == "line one\u2028line two" and lines[4]["adjudicated"] is True

    only_old = tmp_path / "old.jsonl"
    assert cli.main(["decisions", "export", str(only_old), "--run", "ol"]) == 0       # a run id prefix
    assert "2 of 4 pair(s) found in run old" in capsys.readouterr().out
    got = [(e["run"], e["row"]) for e in map(json.loads, only_old.read_text(encoding="utf-8").split("\n")[:-1])]
    assert got == [("old", 1), ("old", 2), (None, None), (None, None), ("old", 2)]
    from ches.review.decision_context import jsonl_with_context                    # the app's download
    assert jsonl_with_context(db, ws / "runs" / "old") == only_old.read_bytes()

    other = tmp_path / "other.sqlite"                         # the extra keys are ignored by an import
    assert cli.main(["decisions", "import", str(out), "--db", str(other)]) == 0
    assert "imported 5, skipped 0 duplicate(s), 0 error(s)" in capsys.readouterr().out
    assert {k: (v.decision, v.annotator) for k, v in decisions.current(other).items()} == \
        {k: (v.decision, v.annotator) for k, v in decisions.current(db).items()}
    assert decisions.adjudications(other)[ids["B"]].annotator == "boss"
    assert cli.main(["decisions", "export", str(out), "--run", "nope"]) == 2


def test_export_help_lists_every_team_rule(capsys):
    from ches.review.team_rules import TEAM_RULES
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name, text in TEAM_RULES.items():
        assert f"{name} ({text})" in out
    with pytest.raises(SystemExit):
        cli.main(["decisions", "export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--run RUN" in out and "most recent complete run in the workspace that holds the pair" in out
