"""A damaged run says how to mend it (ches.engine.store, ches.engine.repair, `ches runs --repair`, ui/loaders.py).

A cut-short plan.json names itself and `ches runs --repair`, which removes the unfinished run's state; a
cut-short file of a complete run is noticed by `ches score`, which scores the run again, and by the app,
which says which file and how to mend it; a killed tidy-up's leftovers go when the runs are next listed.
"""
from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest

import ches.cli as cli
import ches.engine.models as models
from ches.engine import chunks, repair, store
from ches.engine.runs import RunProgress, list_runs, list_unfinished
from ches.engine.records import load_records
from ches.engine.pipeline import score_dataset
from conftest import make_fake_run, open_app
from test_runs import rows

RUN_FILES = ["S_minus.npy", "S_plus.npy", "manifest.json", "scores.parquet", "texts.parquet"]


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    return models.load_model(str(tiny_model_dir))


@pytest.fixture
def cli_lm(tiny_lm, monkeypatch):
    """`ches score` loads the tiny model, whatever --model says."""
    monkeypatch.setattr(models, "load_model", lambda *a, **k: tiny_lm)
    return tiny_lm


def cut_short(path: Path, keep: float = 0.5) -> None:
    """`path` cut to `keep` of its bytes, as a full disk or a copy that stopped leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def unfinished(ds, lm, root: Path, monkeypatch) -> Path:
    """Every chunk of `ds` committed (chunks of 8), not finalised: as a kill before finalise leaves it."""
    with monkeypatch.context() as m:
        m.setattr(chunks, "finalise", lambda run_dir: run_dir)
        return score_dataset(ds, lm, runs_root=root, max_length=64, chunk_size=8)


def score_cli(data: Path, runs: Path, capsys) -> tuple[int, str, str]:
    code = cli.main(["score", str(data), "--max-length", "64", "--chunk-size", "8", "--out", str(runs), "--top", "1"])
    out, err = capsys.readouterr()
    return code, out, err


def data_file(tmp_path: Path) -> tuple[Path, Path]:
    """A .jsonl of 16 pairs, and the runs folder to score it into."""
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows(16)))
    return data, tmp_path / "runs"


def killed_before_finalise(data: Path, runs: Path, capsys, monkeypatch) -> Path:
    """`ches score` of `data` with every chunk committed, killed before finalise: the run folder."""
    with monkeypatch.context() as m:
        m.setattr(chunks, "finalise", lambda run_dir: run_dir)
        score_cli(data, runs, capsys)
    (run,) = runs.iterdir()
    return run


# ----------------------------------------------------------------------------------- 1. a cut-short plan
def test_a_cut_short_plan_names_itself_and_the_repair_which_starts_the_run_afresh(cli_lm, tmp_path, monkeypatch,
                                                                                 capsys):
    data, runs = data_file(tmp_path)
    run = killed_before_finalise(data, runs, capsys, monkeypatch)
    (run / "plan.json").write_text('{\n  "key": {"dataset_')           # cut short
    code, _, err = score_cli(data, runs, capsys)
    assert code == 2
    assert f"ches: error: {run / 'plan.json'} cannot be read: cut short or garbled (Unterminated string" in err
    assert f"mend the run with: ches runs --repair {run}" in err
    assert "Traceback" not in err

    assert cli.main(["runs", "--out", str(runs)]) == 0
    listed = capsys.readouterr().out
    assert f"{run.name}  broken: its plan.json cannot be read: cut short or garbled (" in listed
    assert f"mend it with: ches runs --repair {run}" in listed

    assert cli.main(["runs", "--repair", str(run)]) == 0
    said = capsys.readouterr().out
    assert f"{run}:" in said
    assert "  plan.json: cut short or garbled (Unterminated string" in said and "removed" in said
    assert "  chunks/: its 2 finished chunks removed: without the plan their pairs cannot be checked" in said
    assert "the next `ches score` of its data starts it afresh" in said
    assert not run.exists()

    code, _, err = score_cli(data, runs, capsys)
    assert code == 0, err
    assert store.read_scores(run)["row"].tolist() == list(range(1, 17))


# ------------------------------------------------------------------------ 2. a cut-short file of a complete run
@pytest.mark.parametrize("name", ["scores.parquet", "texts.parquet", "S_plus.npy", "manifest.json"])
def test_a_cut_short_file_of_a_complete_run_is_noticed_and_scored_again(tiny_lm, tmp_path, caplog, name):
    ds = load_records(rows(16))
    run = score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    before = store.read_scores(run)
    (run / "review.json").write_text("{}")                             # the team's review plan: not the run's to drop
    cut_short(run / name)
    with pytest.raises(store.DamagedRun) as e:
        repair.check_run(run)                                          # footers and headers only
    assert e.value.path == run / name
    with caplog.at_level(logging.WARNING):
        assert score_dataset(ds, tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8) == run
    assert f"{run / name} " in caplog.text and "it is scored again" in caplog.text
    repair.check_run(run)
    assert store.read_scores(run)[["row", "pair_id"]].equals(before[["row", "pair_id"]])
    assert sorted(p.name for p in run.iterdir()) == sorted([*RUN_FILES, "review.json"])


def test_a_damaged_file_is_named_with_the_command_that_mends_it_when_it_is_read(tiny_lm, tmp_path):
    run = score_dataset(load_records(rows(16)), tiny_lm, runs_root=tmp_path, max_length=64, chunk_size=8)
    cut_short(run / "scores.parquet")
    with pytest.raises(store.DamagedRun) as e:
        store.read_scores(run)
    assert str(e.value).startswith(f"{run / 'scores.parquet'} cannot be read: cut short or garbled (")
    assert str(e.value).endswith(f"mend the run with: ches runs --repair {run}")


def test_the_cli_scores_a_damaged_run_again_and_the_repair_reopens_one(cli_lm, tmp_path, capsys, caplog):
    data, runs = data_file(tmp_path)
    assert score_cli(data, runs, capsys)[0] == 0
    (run,) = runs.iterdir()
    cut_short(run / "scores.parquet")
    assert cli.main(["runs", "--out", str(runs)]) == 0
    listed = capsys.readouterr().out
    assert f"{run.name}  broken: its scores.parquet cannot be read: cut short or garbled (" in listed
    assert f"mend it with: ches runs --repair {run}" in listed

    with caplog.at_level(logging.WARNING):
        code, out, err = score_cli(data, runs, capsys)
    assert code == 0, err
    assert f"{run / 'scores.parquet'} cannot be read: cut short or garbled (" in caplog.text
    assert "it is scored again" in caplog.text
    assert "pairs scored: 16" in out

    cut_short(run / "S_minus.npy")
    assert cli.main(["runs", "--repair", run.name, "--out", str(runs)]) == 0
    said = capsys.readouterr().out
    assert "  S_minus.npy: cut short or garbled (mmap length is greater than file size): removed" in said
    for line in ("  manifest.json: removed: the run is no longer complete",
                 "  scores.parquet: removed (written again with the rest)",
                 f"the next `ches score` of its data ({data}) scores it again"):
        assert line in said, said
    assert not store.is_complete(run)
    assert score_cli(data, runs, capsys)[0] == 0
    repair.check_run(run)


@pytest.mark.parametrize("name, page", [("scores.parquet", "pages/browse.py"), ("scores.parquet", "pages/map.py"),
                                        ("texts.parquet", "pages/browse.py")])
def test_the_app_says_which_file_is_damaged_and_how_to_mend_it(workspace_env, name, page):
    run = make_fake_run(workspace_env.workspace / "runs" / "0123456789abcdef",
                        load_records(rows(12), source="twelve.jsonl"))
    cut_short(run / name)
    at = open_app(page, run, annotator="ann")                         # no exception: ok() in open_app
    errors = [e.value.replace("\\", "") for e in at.error]          # without escape_md's backslashes
    assert any(f"{run / name} cannot be read: cut short or garbled (" in e and f"ches runs --repair {run}" in e
               for e in errors), errors


def test_a_damaged_texts_file_met_by_the_search_box_is_named_with_the_command(workspace_env):
    """Browse's search reads every text: a cut-short texts.parquet raises DamagedRun there too (not Arrow's own
    error), and the page names the file and the command that mends the run."""
    from ches.review.browse import search_rows

    run = make_fake_run(workspace_env.workspace / "runs" / "0123456789abcdef",
                        load_records(rows(12), source="twelve.jsonl"))
    cut_short(run / "texts.parquet")
    with pytest.raises(store.DamagedRun) as e:
        search_rows(run, "answer")
    assert e.value.path == run / "texts.parquet"
    at = open_app("pages/browse.py", run, annotator="ann", browse_query="answer")    # no exception: ok()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any(f"{run / 'texts.parquet'} cannot be read: cut short or garbled (" in e
               and f"ches runs --repair {run}" in e for e in errors), errors


def test_a_reopened_run_that_keeps_its_review_plan_is_listed_with_the_command_and_can_be_deleted(cli_lm, tmp_path,
                                                                                                capsys):
    """`ches runs --repair` makes a complete run with a damaged file unfinished: with no manifest, plan or chunks
    left but its review plan and probes kept, it is still a run: `ches runs` lists it as unfinished with the
    command that scores it again (which does, keeping the review plan), and delete_run removes it."""
    data, runs = data_file(tmp_path)
    assert score_cli(data, runs, capsys)[0] == 0
    (run,) = runs.iterdir()
    (run / "review.json").write_text('{"blind": true}')
    (run / "probes" / "0123").mkdir(parents=True)
    cut_short(run / "texts.parquet")
    assert cli.main(["runs", "--repair", str(run)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in run.iterdir()) == ["probes", store.REOPENED, "review.json"]

    assert list_runs(runs) == []
    ((listed, said, progress),) = list_unfinished(runs)
    assert listed == run and progress == RunProgress(0, 16, False)
    assert said["why"].startswith("texts.parquet: cut short or garbled (")
    command = said["command"]
    assert command == (f"ches score {data} --model {cli_lm.model_id} --max-length 64 --dtype float32 "
                       f"--out {runs}")
    assert cli.main(["runs", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"{run.name}  " in out and "unfinished: 0 of 16 pairs" in out and f"resume: {command}" in out, out
    assert cli.main(["runs", "--repair", str(run)]) == 0
    assert f"nothing to mend: it was made unfinished (texts.parquet: cut short or garbled (" in capsys.readouterr().out

    assert cli.main(shlex.split(command)[1:]) == 0                         # the command, as listed, scores it again
    repair.check_run(run)
    assert sorted(p.name for p in run.iterdir()) == sorted([*RUN_FILES, "probes", "review.json"])

    cut_short(run / "scores.parquet")                                 # reopened again, then deleted
    repair.repair(run)
    store.delete_run(run)
    assert not run.exists() and list_unfinished(runs) == []


def test_a_restarted_run_that_keeps_its_review_plan_stays_a_run(cli_lm, tmp_path, monkeypatch, capsys):
    """An unfinished run whose plan.json cannot be read is restarted by the repair (plan and chunks removed); a
    review plan left in the folder keeps it a run: listed (broken) and deletable."""
    data, runs = data_file(tmp_path)
    run = killed_before_finalise(data, runs, capsys, monkeypatch)
    (run / "review.json").write_text("{}")
    (run / "plan.json").write_text('{"key": ')
    repair.repair(run)
    assert sorted(p.name for p in run.iterdir()) == [store.REOPENED, "review.json"]
    assert [d for d, _, progress in list_unfinished(runs) if progress is None] == [run]
    store.delete_run(run)
    assert not run.exists()


# ----------------------------------------------------------------------------------- 3. a killed tidy-up
def test_a_killed_tidy_up_is_finished_when_the_runs_are_listed_or_repaired(tiny_lm, tmp_path, monkeypatch, capsys):
    ds = load_records(rows(16))
    run = unfinished(ds, tiny_lm, tmp_path, monkeypatch)
    assert list_runs(tmp_path) == []                           # being finalised: not touched
    assert {"chunks", "plan.json"} <= {p.name for p in run.iterdir()}
    with monkeypatch.context() as m:                                  # killed after the manifest, before the tidy
        m.setattr(chunks, "tidy", lambda run_dir: [])
        chunks.finalise(run)
    assert [d for d, _ in list_runs(tmp_path)] == [run]
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES

    other = tmp_path / "other"
    with monkeypatch.context() as m:
        m.setattr(chunks, "tidy", lambda run_dir: [])
        score_dataset(load_records(rows(10)), tiny_lm, runs_root=other, max_length=64, chunk_size=8)
    (run2,) = other.iterdir()
    (run2 / ".scores.parquet.0123456789ab.tmp").write_bytes(b"half")  # a finaliser killed mid-write
    assert cli.main(["runs", "--repair", str(run2)]) == 0
    said = capsys.readouterr().out
    for name in ("plan.json", "chunks/", ".scores.parquet.0123456789ab.tmp"):
        assert f"  {name}: left by a tidy-up that was cut short: removed" in said, said
    assert "the run is complete and readable" in said
    assert sorted(p.name for p in run2.iterdir()) == RUN_FILES
    assert cli.main(["runs", "--repair", str(run2)]) == 0
    assert "nothing to mend" in capsys.readouterr().out


def test_the_repair_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["runs", "--repair", str(tmp_path)]) == 2
    assert f"ches: error: {tmp_path} is not a run folder" in capsys.readouterr().err
