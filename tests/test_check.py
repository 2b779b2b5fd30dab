"""The curation check: its statistics against a hand computation, the arms' samples, a stored and
reopenable check on a tiny random model, the export manifest's citation, `ches check-curation`."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import ches.cli as cli
import ches.review.probe.check as check
from ches.engine import jobs
from ches.engine.records import load_records
from ches.engine.store import read_scores
from ches.review.export import Rule, export, select
from ches.review.probe.settings import ProbeError
from ches.workspace import workspace
from conftest import ok, open_app

RECORDS = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f"It is {2 * i}." + " Sure." * (i % 3),
            "rejected": f"Maybe {2 * i + 1}, I am not certain." + " Hm." * (i % 4)} for i in range(8)]


def results_frame(dc: dict, dr: float = -2.0) -> pd.DataFrame:
    """A check's results with the given changes of log pi(y+|x): dc[(seed, arm)] = per-pair changes."""
    rows = []
    for (seed, arm), changes in dc.items():
        for j, d in enumerate(changes):
            rows.append({"seed": seed, "arm": arm, "row": j, "pair_id": f"{arm}{j}", "logp_chosen_before": -10.0,
                         "logp_chosen_after": -10.0 + d, "logp_rejected_before": -5.0, "logp_rejected_after": -5.0 + dr})
    return pd.DataFrame(rows)


def test_arm_statistics_match_a_hand_computation():
    t = results_frame({(0, "curated"): [1, 3], (0, "random"): [-1, 1],
                       (1, "curated"): [2, 2], (1, "random"): [0, -2],
                       (2, "curated"): [-1, 3], (2, "random"): [1, 1]})
    st = check.arm_stats(t)
    # per-seed means: curated 2, 2, 1; random 0, -1, 1
    cur, rnd = st["arms"]["curated"], st["arms"]["random"]
    assert cur["mean_delta_chosen"] == pytest.approx(5 / 3)
    assert cur["sd_delta_chosen"] == pytest.approx(math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2))   # = sqrt(1/3)
    assert rnd["mean_delta_chosen"] == pytest.approx(0.0) and rnd["sd_delta_chosen"] == pytest.approx(1.0)
    assert cur["mean_delta_rejected"] == pytest.approx(-2.0) and cur["sd_delta_rejected"] == pytest.approx(0.0)
    # share of pairs whose chosen log-prob fell (a change of 0 did not fall): curated 0, 0, 1/2; random 1/2, 1/2, 0
    assert cur["share_lost"] == pytest.approx(1 / 6) and rnd["share_lost"] == pytest.approx(1 / 3)
    # per-seed differences 2, 3, 0: mean 5/3, sd sqrt(7/3), 2 SE = 2 sqrt(7/3) / sqrt(3) = 1.7638 > 5/3: within
    assert st["per_seed_difference"] == pytest.approx([2.0, 3.0, 0.0])
    assert st["difference"] == pytest.approx(5 / 3) and st["sd_difference"] == pytest.approx(math.sqrt(7 / 3))
    assert st["two_se"] == pytest.approx(2 * math.sqrt(7 / 3) / math.sqrt(3)) and st["beyond"] is False
    assert check.verdict(st).startswith("The curated arm kept 1.67 nats more chosen log-probability than the "
                                        "random arm, within the seed spread")


def test_a_steady_difference_is_beyond_the_spread_and_a_loss_says_less():
    # per-seed differences -2, -2.2, -1.8: mean -2, sd 0.2, 2 SE = 0.231 < 2: beyond
    st = check.arm_stats(results_frame({(0, "curated"): [-1, -1], (0, "random"): [1, 1],
                                        (1, "curated"): [-1.2, -1.2], (1, "random"): [1, 1],
                                        (2, "curated"): [-0.8, -0.8], (2, "random"): [1, 1]}))
    assert st["difference"] == pytest.approx(-2.0) and st["two_se"] == pytest.approx(2 * 0.2 / math.sqrt(3))
    assert st["beyond"] is True
    assert "kept 2.00 nats less chosen log-probability than the random arm, beyond the seed spread" in check.verdict(st)


def test_arms_draw_from_their_pools_reproducibly():
    sel = pd.DataFrame({"row": range(20), "kept": [r < 6 for r in range(20)]})
    a = check.samples(sel, 4, seed=0)
    assert a == check.samples(sel, 4, seed=0) and a != check.samples(sel, 4, seed=1)
    assert set(a["curated"]) <= set(range(6)) and len(set(a["curated"])) == 4
    assert len(set(a["random"])) == 4 and set(a["random"]) <= set(range(20))
    with pytest.raises(ProbeError, match="the rule keeps 6 pair"):
        check.samples(sel, 7, seed=0)
    with pytest.raises(ProbeError, match="at least 2 seeds"):
        check.CheckSettings(n=4, seeds=1)
    with pytest.raises(ProbeError, match="below the batch size"):
        check.CheckSettings(n=3, batch_size=4)


@pytest.fixture(scope="module")
def check_run(tmp_path_factory, tiny_model_dir):
    from ches.engine.models import load_model
    from ches.engine.pipeline import score_dataset

    ds = load_records(RECORDS, source="check.jsonl")
    return score_dataset(ds, load_model(str(tiny_model_dir)), runs_root=tmp_path_factory.mktemp("runs"), max_length=64)


def test_a_check_on_a_tiny_model_is_stored_reopened_and_cited_by_the_export(check_run, tmp_path, monkeypatch):
    rule = Rule(metric="ches", keep_lowest_percent=50, drop_flags=())
    cs = check.CheckSettings(n=3, seeds=2, steps=1, batch_size=3, lr=1e-3)
    path = check.run_check(check_run, rule, {}, cs)
    assert path.parent == check_run / "checks" and (path / "manifest.json").is_file()
    m, results = check.read_check(path)

    kept = set(select(read_scores(check_run), rule)["row"][lambda r: select(read_scores(check_run), rule)["kept"]])
    assert len(kept) == 4
    assert len(results) == 2 * 2 * 3 and sorted(results["seed"].unique()) == [0, 1]
    for seed in (0, 1):
        cur = set(results.query("seed == @seed and arm == 'curated'")["row"])
        rnd = set(results.query("seed == @seed and arm == 'random'")["row"])
        assert cur <= kept and len(cur) == 3 and len(rnd) == 3
    assert any(set(results.query("seed == @s and arm == 'curated'")["row"]) !=
               set(results.query("seed == @s and arm == 'random'")["row"]) for s in (0, 1))   # arms differ
    moved = (results["logp_chosen_after"] - results["logp_chosen_before"]).abs()
    assert moved.min() > 0                                                                      # it trained
    want = check.arm_stats(results)
    assert m["stats"]["difference"] == pytest.approx(want["difference"]) and m["verdict"] == check.verdict(m["stats"])
    for arm in check.ARMS:
        dc = [(g["logp_chosen_after"] - g["logp_chosen_before"]).mean()
              for _, g in results[results["arm"] == arm].groupby("seed")]
        assert m["stats"]["arms"][arm]["mean_delta_chosen"] == pytest.approx(np.mean(dc))
    assert m["rule"] == rule.as_dict() and m["pool"] == {"pairs": 8, "kept": 4}

    # the same check again reopens it, nothing is trained
    monkeypatch.setattr(check, "measure", lambda *a, **k: pytest.fail("a stored check was retrained"))
    assert check.run_check(check_run, rule, {}, cs) == path
    assert [p for p, _ in check.list_checks(check_run)] == [path]

    # the export of the same rule cites it; another rule does not
    cited = export(check_run, rule, {}, tmp_path / "out.jsonl")["curation_check"]
    assert cited["key"] == path.name and cited["verdict"] == m["verdict"] and cited["same_decisions"] is True
    assert cited["stats"]["difference"] == pytest.approx(m["stats"]["difference"])
    on_disk = json.loads((tmp_path / "out.manifest.json").read_text())
    assert on_disk["curation_check"]["key"] == path.name
    assert export(check_run, Rule(metric="ches", keep_lowest_percent=40, drop_flags=()), {},
                  tmp_path / "other.jsonl")["curation_check"] is None
    # decisions other than the check's: still cited, marked
    pid = read_scores(check_run)["pair_id"].iloc[0]
    assert export(check_run, rule, {pid: "drop"}, tmp_path / "dec.jsonl")["curation_check"]["same_decisions"] is False


def test_cli_check_curation_prints_the_arms_and_the_verdict(check_run, capsys, workspace_env):
    argv = ["check-curation", str(check_run), "--metric", "ches", "--keep-lowest-percent", "50", "--drop-flags", "",
            "--n", "3", "--seeds", "2", "--steps", "1", "--batch-size", "3", "--lr", "1e-3"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    (path, m), = check.list_checks(check_run)
    from ches.review.probe.analysis import significant
    assert m["verdict"] in out
    assert f"curated   {significant(m['stats']['arms']['curated']['mean_delta_chosen'], signed=True):>13}" in out
    assert "Traceback" not in out + err
    assert cli.main([*argv[:-2], "--lr", "0"]) == 2
    assert "learning rate must be a positive number" in capsys.readouterr().err
    assert cli.main(["check-curation", str(check_run), "--keep-lowest-percent", "10", "--n", "3",
                     "--batch-size", "3"]) == 2
    assert "too few pairs: the 0 kept pairs (a probe trains on at least 3)" in capsys.readouterr().err


def check_form(run):
    """Curate & export in a new session: keep the lowest 60% of LN-CHES, a check of 3 pairs per arm, 2 seeds."""
    at = open_app("pages/export.py", run, timeout=300)
    at.slider(key="export_percent").set_value(60.0)
    at.number_input(key="check_n").set_value(3)
    return ok(at.number_input(key="check_seeds").set_value(2).run())


@pytest.mark.usefixtures("workspace_env")
def test_the_check_is_a_job_a_second_tab_sees_it_cancel_stops_it_and_the_verdict_shows(check_run, task_jobs,
                                                                                         tmp_path):
    """The check starts `ches check-curation` as a job and the page returns at once; another session with the
    same rule and settings sees it and cannot start a second; Cancel stops it (nothing stored); started again,
    its verdict shows when it is stored."""
    import shutil

    run, folder = tmp_path / "run", workspace().jobs
    shutil.copytree(check_run, run, ignore=shutil.ignore_patterns("checks"))
    rule = Rule(metric="ln_ches", keep_lowest_percent=60.0)
    at = check_form(run)
    assert any("No check of this rule yet" in c.value for c in at.caption)
    at.button(key="check_go").click().run()               # the job waits at its gate: the page has returned
    ok(at)
    (job,) = jobs.list_jobs(folder)
    assert job.kind == "check-curation" and jobs.status(job).running and check.list_checks(run) == []
    assert at.button(key="check_go").disabled and at.button(key=f"main_cancel_{job.name}") is not None

    other = check_form(run)                               # another tab, the same rule and settings
    assert other.button(key="check_go").disabled and other.button(key=f"main_cancel_{job.name}") is not None
    assert [j.pid for j in jobs.list_jobs(folder)] == [job.pid]

    at.button(key=f"main_cancel_{job.name}").click().run()
    assert task_jobs.over(job).state == "cancelled"
    ok(at.run())
    assert any("Curation check cancelled: nothing was stored." in w.value.replace("\\", "") for w in at.warning)
    assert check.list_checks(run) == []

    task_jobs.release()
    at.button(key="check_go").click().run()               # again: a new process
    (again,) = jobs.list_jobs(folder)
    assert again.pid != job.pid and task_jobs.over(again).state == "complete"
    ok(at.run())                                          # what the page's polling does when the job ends
    (path, m), = check.list_checks(run)
    assert m["rule"] == rule.as_dict() and m["settings"]["n"] == 3 and m["settings"]["seeds"] == 2
    assert any("Curation check finished" in s.value for s in at.success)
    shown = [x.value for x in [*at.success, *at.info]]
    assert any(v.replace("\\", "") == m["verdict"] for v in shown), shown
    assert jobs.list_jobs(folder) == []


def test_check_args_give_the_cli_the_rule_and_settings_the_page_chose(check_run, tmp_path):
    from ches.cli.export import rule_and_decisions
    from ches.cli.probe import check_args, check_settings
    from ches.review import decisions

    db = tmp_path / "decisions.sqlite"
    pid = read_scores(check_run)["pair_id"].iloc[0]
    decisions.record(db, pid, "drop", annotator="-ann")          # a name that reads like an option
    cs = check.CheckSettings(n=3, seeds=2, steps=1, batch_size=3, lr=1e-3, beta=0.2)
    for rule, who in ((Rule(metric="ches", keep_lowest_percent=62.5, drop_flags=()), None),
                      (Rule(metric="ln_ches", threshold=-0.25, drop_flags=("identical", "duplicate"),
                            team="majority"), None),
                      (Rule(keep_lowest_percent=50.0), "-ann")):
        argv = check_args(check_run, rule, cs, decisions=db, annotator=who)
        args = cli.build_parser().parse_args(["check-curation", *argv])
        back, current = rule_and_decisions(args)
        assert back == rule and args.annotator == who and args.decisions == str(db)
        assert current.latest[pid].decision == "drop"
        assert check_settings(args, "test/model", len(RECORDS))[0] == cs


# ------------------------------------------------------------------- issue 24: small numbers, fitted defaults

def test_a_verdict_on_tiny_changes_keeps_its_significant_digits():
    # per-seed differences 0.0015, 0.0016, 0.0017 nats: mean 0.0016, sd 0.0001, 2 SE = 0.0002 / sqrt(3) = 0.000115
    st = check.arm_stats(results_frame({(0, "curated"): [0.0015], (0, "random"): [0.0],
                                        (1, "curated"): [0.0016], (1, "random"): [0.0],
                                        (2, "curated"): [0.0017], (2, "random"): [0.0]}))
    text = check.verdict(st)
    assert "kept 0.00160 nats more chosen log-probability than the random arm, beyond the seed spread" in text
    assert "per-seed differences +0.00160 nats; two standard errors 1.15e-04 nats" in text
    assert "0.00 " not in text
    from ches.review.probe.analysis import significant
    assert [significant(x) for x in (0.0, 1 / 3, 2.0, -123.4, 0.0016, 2.5e-7)] == \
        ["0", "0.333", "2.00", "-123", "0.00160", "2.50e-07"]
    assert significant(0.0016, signed=True) == "+0.00160" and significant(float("nan")) == "n/a"


def kept_count(run, percent: float) -> int:
    """Pairs the rule the CLI and the page start from (lowest `percent` of LN-CHES) keeps, by `select` itself."""
    return int(select(read_scores(run), Rule(keep_lowest_percent=percent))["kept"].sum())


def test_cli_check_curation_without_n_fits_the_kept_pairs_and_says_so(check_run, capsys, workspace_env):
    from ches.review.probe.settings import PAPER
    kept = kept_count(check_run, 50)
    assert 3 <= kept < PAPER["n"]                       # the tiny model gets the paper's n 512: far too many
    argv = ["check-curation", str(check_run), "--keep-lowest-percent", "50", "--seeds", "2",
            "--steps", "1", "--lr", "1e-3"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    batch = min(PAPER["batch_size"], kept)
    assert f"using n = {kept} of the {kept} kept pairs, batch {batch}" in err
    found = [m for _, m in check.list_checks(check_run) if m["settings"]["n"] == kept and m["settings"]["steps"] == 1
             and m["rule"]["keep_lowest_percent"] == 50]
    assert len(found) == 1 and found[0]["settings"]["batch_size"] == batch and "Traceback" not in out + err
    # values that do not fit are refused, saying what would
    assert cli.main([*argv, "--n", str(kept + 1)]) == 2
    assert f"n = {kept + 1} is more than the {kept} kept pairs: choose n of at most {kept}" in capsys.readouterr().err
    assert cli.main([*argv, "--batch-size", str(kept + 1)]) == 2
    assert f"choose a batch size of at most {kept}" in capsys.readouterr().err


@pytest.mark.usefixtures("workspace_env")
def test_export_page_check_defaults_follow_the_rule_and_say_what_they_chose(check_run, task_jobs):
    from ches.cli.probe import check_settings
    from ches.review.probe.settings import PAPER

    at = open_app("pages/export.py", check_run, timeout=300)
    at.slider(key="export_percent").set_value(50.0).run()      # fewer kept pairs than when the check first showed
    at.number_input(key="check_seeds").set_value(2).run()
    kept = kept_count(check_run, 50)
    assert kept < kept_count(check_run, 95)                     # 95: the page's first rule
    batch = min(PAPER["batch_size"], kept)
    assert any(f"using n = {kept} of the {kept} kept pairs, batch {batch}" in c.value.replace("\\", "")
               for c in at.caption), \
        [c.value for c in at.caption]
    at.button(key="check_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = jobs.list_jobs(workspace().jobs)             # what the job checks, as `ches check-curation` reads it
    args = cli.build_parser().parse_args(["check-curation", *job.args])
    cs, fit = check_settings(args, "test/model", kept)
    assert (args.keep_lowest_percent, args.threshold, cs.seeds, cs.n, cs.batch_size, cs.steps, fit.note) == \
        (50.0, None, 2, kept, batch, None, "")
    assert jobs.cancel(job)
