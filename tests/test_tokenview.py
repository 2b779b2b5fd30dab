"""ches.review.tokenview and `ches tokens`: Pair / tokens' views, computed by a job and stored with the run.

The tiny random Llama scores a few pairs in a run; each stored view's per-token contributions must sum to
the score the batched run stored (an independent computation: the run's batched, padded forward pass
against this pair alone), for every metric the view decomposes."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ches.cli import main
from ches.engine.metrics import TOKEN_METRICS
from ches.engine.models import load_model
from ches.engine.pipeline import score_dataset
from ches.engine.records import load_records
from ches.engine.store import read_scores
from ches.review import tokenview

ROWS = [{"prompt": f"Question {i}: is water wet?", "chosen": "Water makes things wet; whether it is itself wet is "
         f"a matter of definition ({i}).", "rejected": "Yes." if i % 2 else "No, never."} for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory) -> SimpleNamespace:
    lm = load_model(str(tiny_model_dir))
    run = score_dataset(load_records(ROWS, source="water.jsonl"), lm, runs_root=tmp_path_factory.mktemp("runs"),
                        max_length=64)
    return SimpleNamespace(lm=lm, run=run, scores=read_scores(run).set_index("row"))


def test_stored_views_sum_to_the_run_scores_and_are_not_computed_twice(tiny):
    assert tokenview.stored_view(tiny.run, 3) is None
    seen = []
    assert tokenview.store_views(tiny.run, [3, 1], tiny.lm, progress=seen.append) == 2
    assert seen == [1, 2]
    for row in (3, 1):
        view = tokenview.stored_view(tiny.run, row)
        assert view["row"] == row and view["fingerprint"] == tiny.lm.fingerprint
        for metric in TOKEN_METRICS:
            contrib = view["contributions"][metric]
            assert len(contrib) == len(view["chosen_tokens"]) == tiny.scores.loc[row, "len_chosen"]
            assert sum(contrib) == pytest.approx(tiny.scores.loc[row, metric], rel=1e-4, abs=1e-6)
        assert len(view["rejected_alignment"]) == len(view["rejected_tokens"])
    file = Path(tiny.run) / tokenview.FOLDER / "3.json"
    before = file.stat().st_mtime_ns
    assert tokenview.store_views(tiny.run, [3, 1], tiny.lm) == 0                # stored ones are kept
    assert file.stat().st_mtime_ns == before
    with pytest.raises(KeyError, match="no source row 99"):
        tokenview.store_views(tiny.run, [99], tiny.lm)


def test_an_unreadable_view_is_a_miss_and_the_rows_to_compute_follow_the_ranking(tiny):
    ranked = [5, 2, 6, 4, 1, 3]
    tokenview.store_views(tiny.run, [6, 1, 3], tiny.lm)
    assert tokenview.rows_to_compute(tiny.run, ranked, 2, ahead=3) == [2, 4]     # the opened row first; 6, 1 stored
    assert tokenview.rows_to_compute(tiny.run, ranked, 4, ahead=4) == [4]        # nothing after 3 (the last)
    assert tokenview.rows_to_compute(tiny.run, ranked, 3) == []
    (Path(tiny.run) / tokenview.FOLDER / "6.json").write_text('{"contributions": {"ches": []}}')   # garbled
    assert tokenview.stored_view(tiny.run, 6) is None
    assert 6 in tokenview.rows_to_compute(tiny.run, ranked, 2, ahead=3)


def test_the_jobs_of_a_run_and_of_a_row_are_found_by_their_rows():
    job = lambda kind, run, rows: SimpleNamespace(kind=kind, run_dir=Path(run),   # noqa: E731
                                                  args=tuple(tokenview.tokens_args(run, rows)))
    jobs = [job("tokens", "/w/runs/aaa", [7, 3]), job("project", "/w/runs/bbb", []), job("tokens", "/w/runs/bbb", [3]),
            job("tokens", "/w/runs/aaa", [5])]
    assert tokenview.tokens_jobs(jobs, "/w/runs/aaa") == [jobs[3], jobs[0]]          # the latest first
    assert tokenview.tokens_jobs(jobs, "/w/runs/aaa", 3) == [jobs[0]]
    assert tokenview.tokens_jobs(jobs, "/w/runs/bbb", 3) == [jobs[2]]
    assert tokenview.tokens_jobs(jobs, "/w/runs/aaa", 37) == []          # "--row 3" is not row 37
    assert tokenview.tokens_jobs(jobs, "/w/runs/ccc", 3) == []


@pytest.mark.slow
def test_the_page_waits_for_the_runs_token_job_then_starts_its_own(tiny, workspace_env, task_jobs):
    """One token job per run at a time (each loads the model): Pair / tokens on a row that the run's running
    job does not compute starts nothing and says it waits; when that job ends, its own starts and the view shows."""
    from ches.engine import jobs
    from test_app import _until, app, open_page

    ws_jobs = workspace_env.workspace / "jobs"
    other, _ = jobs.start(ws_jobs, tiny.run, tokenview.tokens_args(tiny.run, [2]), kind="tokens", label="row 2")
    at = open_page(app(tiny.run, pair_row=4), "pages/pair.py")               # held at the gate: running
    assert any("Another token view of this run is being computed" in i.value for i in at.info)
    assert [j.name for j in jobs.list_jobs(ws_jobs)] == [other.name]          # nothing started beside it
    task_jobs.release()
    assert task_jobs.over(other).state == "complete" and tokenview.stored_view(tiny.run, 2) is not None
    _until(at, lambda at: any("per-token contributions sum to" in c.value for c in at.caption), "row 4's view",
           timeout=120)
    assert tokenview.stored_view(tiny.run, 4)["fingerprint"] == tiny.lm.fingerprint    # its own job computed it


def test_ches_tokens_stores_the_rows_and_names_a_row_the_run_lacks(tiny, capsys):
    assert main(["tokens", str(tiny.run), "--row", "5", "--row", "5"]) == 0
    out = capsys.readouterr()
    assert f"token views of 1 row(s) of {Path(tiny.run).name}" in out.out and "loading" in out.err
    view = json.loads((Path(tiny.run) / tokenview.FOLDER / "5.json").read_text())
    assert sum(view["contributions"]["ln_ches"]) == pytest.approx(tiny.scores.loc[5, "ln_ches"], rel=1e-4, abs=1e-6)
    assert main(["tokens", str(tiny.run), "--row", "40"]) == 2
    assert f"ches: error: the run {Path(tiny.run).name} has no source row 40" in capsys.readouterr().err
