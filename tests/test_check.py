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


def results_frame(dc: dict, dr: float = -2.0, lengths: dict | None = None) -> pd.DataFrame:
    """A check's results with the given changes of log pi(y+|x): dc[(seed, arm)] = per-pair changes;
    lengths[arm] = per-pair |y+| (default 4 each)."""
    rows = []
    for (seed, arm), changes in dc.items():
        for j, d in enumerate(changes):
            rows.append({"seed": seed, "arm": arm, "row": j, "pair_id": f"{arm}{j}",
                         "len_chosen": (lengths or {}).get(arm, [4] * len(changes))[j], "logp_chosen_before": -10.0,
                         "logp_chosen_after": -10.0 + d, "logp_rejected_before": -5.0, "logp_rejected_after": -5.0 + dr})
    return pd.DataFrame(rows)


def test_arm_statistics_match_a_hand_computation():
    t = results_frame({(0, "curated"): [1, 3], (0, "random"): [-1, 1],
                       (1, "curated"): [2, 2], (1, "random"): [0, -2],
                       (2, "curated"): [-1, 3], (2, "random"): [1, 1]},
                      lengths={"curated": [1, 3], "random": [2, 10]})
    st = check.arm_stats(t)
    # per-seed means: curated 2, 2, 1; random 0, -1, 1
    cur, rnd = st["arms"]["curated"], st["arms"]["random"]
    assert cur["mean_delta_chosen"] == pytest.approx(5 / 3)
    assert cur["sd_delta_chosen"] == pytest.approx(math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2))   # = sqrt(1/3)
    assert rnd["mean_delta_chosen"] == pytest.approx(0.0) and rnd["sd_delta_chosen"] == pytest.approx(1.0)
    assert cur["mean_delta_rejected"] == pytest.approx(-2.0) and cur["sd_delta_rejected"] == pytest.approx(0.0)
    # per token, per seed mean of change / |y+|: curated (1/1 + 3/3)/2 = 1, (2 + 2/3)/2 = 4/3, (-1 + 1)/2 = 0
    assert cur["mean_delta_chosen_per_token"] == pytest.approx((1 + 4 / 3 + 0) / 3)
    assert rnd["mean_delta_chosen_per_token"] == pytest.approx(((-1 / 2 + 1 / 10) + (0 - 2 / 10) + (1 / 2 + 1 / 10)) / 6)
    assert cur["mean_len_chosen"] == 2 and rnd["mean_len_chosen"] == 6
    # share of pairs whose chosen log-prob fell (a change of 0 did not fall): curated 0, 0, 1/2; random 1/2, 1/2, 0
    assert cur["share_lost"] == pytest.approx(1 / 6) and rnd["share_lost"] == pytest.approx(1 / 3)
    assert st["best"] == "curated" and st["displacement"] is True
    # per-seed differences best - random 2, 3, 0: mean 5/3, sd sqrt(7/3), 2 SE = 2 sqrt(7/3) / sqrt(3) = 1.7638 > 5/3
    (c,) = st["comparisons"]
    assert c["arm"] == "random" and c["per_seed_difference"] == pytest.approx([2.0, 3.0, 0.0])
    assert c["difference"] == pytest.approx(5 / 3) and c["sd_difference"] == pytest.approx(math.sqrt(7 / 3))
    assert c["two_se"] == pytest.approx(2 * math.sqrt(7 / 3) / math.sqrt(3)) and c["beyond"] is False
    text = check.verdict(st)
    assert text.startswith("curated kept the chosen log-probability best: mean change +1.67 ± 0.577 nats (± sd over "
                           "3 seeds; nats summed over the response's |y+| tokens, EOS included), +0.778 nats per "
                           "response token, mean |y+| 2.00 tokens.")
    assert "Ahead of random (0 nats, mean |y+| 6.00) by 1.67 nats: within the seed spread (two standard errors " \
           "1.76 nats)." in text
    assert "a two-standard-error screen over 3 seeds, not a significance test" in text
    assert "differ in length (mean |y+| 2.00 to 6.00 tokens)" in text
    assert "Pair trainings that lost chosen log-probability: curated 1 of 6, random 2 of 6." in text


def test_a_steady_lead_is_beyond_the_spread_and_no_loss_says_no_displacement():
    # random leads by 2, 2.2, 1.8: mean 2, sd 0.2, 2 SE = 0.231 < 2: beyond; nobody lost
    st = check.arm_stats(results_frame({(0, "curated"): [1, 1], (0, "random"): [3, 3],
                                        (1, "curated"): [0.8, 0.8], (1, "random"): [3, 3],
                                        (2, "curated"): [1.2, 1.2], (2, "random"): [3, 3]}))
    (c,) = st["comparisons"]
    assert st["best"] == "random" and c["arm"] == "curated"
    assert c["difference"] == pytest.approx(2.0) and c["two_se"] == pytest.approx(2 * 0.2 / math.sqrt(3))
    assert c["beyond"] is True
    text = check.verdict(st)
    assert "by 2.00 nats: beyond the seed spread (two standard errors 0.231 nats)" in text
    assert "No displacement happened at these settings" in text and "differ in length" not in text


def test_the_verdict_says_when_the_per_token_order_differs():
    # a: +1 nat summed on 20-token answers (0.05 per token); b: +0.5 on 2-token answers (0.25 per token)
    st = check.arm_stats(results_frame({(s, arm): [d + 0.01 * s] for s in range(3) for arm, d in (("a", 1), ("b", 0.5))},
                                       lengths={"a": [20], "b": [2]}))
    assert st["best"] == "a" and st["best_per_token"] == "b"
    assert "Per response token the order differs: b kept the most (+0.255 nats per token)." in check.verdict(st)


def test_a_length_matched_random_arm_follows_the_curated_lengths_and_is_seeded():
    rng = np.random.default_rng(7)
    n = 200
    length = np.concatenate([rng.integers(1, 6, 20), rng.integers(5, 300, n - 20)])      # 20 short ones
    sel = pd.DataFrame({"row": range(n), "len_chosen": length, "kept": np.arange(n) < 20, "reason": "rule",
                        "decision": ""})
    sel.loc[25, "reason"] = "flag:empty_chosen"                                       # never drawn at random
    at = sel.set_index("row")["len_chosen"]
    a = check.draws([sel], ["rule"], 10, 0, "length")
    assert a == check.draws([sel], ["rule"], 10, 0, "length") and a != check.draws([sel], ["rule"], 10, 1, "length")
    assert set(a["rule"]) <= set(range(20)) and len(set(a["random"])) == 10 and 25 not in a["random"]
    assert abs(at[a["random"]].mean() - at[a["rule"]].mean()) <= 0.5                   # matched
    uniform = check.draws([sel], ["rule"], 10, 0, "uniform")["random"]
    assert at[uniform].mean() > 3 * at[a["rule"]].mean()                                # what matching prevents
    assert "random" not in check.draws([sel], ["rule"], 10, 0, "none")
    with pytest.raises(ProbeError, match="the rule 'rule' keeps 20 pair"):
        check.draws([sel], ["rule"], 21, 0, "length")
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


def test_a_check_on_a_tiny_model_compares_rules_is_stored_reopened_and_cited(check_run, tmp_path, monkeypatch):
    rules = [Rule(metric="ches", keep_lowest_percent=50, drop_flags=()),
             Rule(metric="ln_ches", keep_lowest_percent=50, drop_flags=())]
    cs = check.CheckSettings(n=3, seeds=2, steps=1, batch_size=3, lr=1e-3)
    path = check.run_check(check_run, rules, {}, cs)
    assert path.parent == check_run / "checks" and (path / "manifest.json").is_file()
    m, results = check.read_check(path)
    names = ["ches lowest 50%", "ln_ches lowest 50%", "random"]
    assert m["stats"]["order"] == names and [a["name"] for a in m["arms"]] == names
    assert m["check_version"] == check.CHECK_VERSION and m["arms"][2]["matched_to"] == names[0]

    scores = read_scores(check_run)
    assert len(results) == 3 * 2 * 3 and sorted(results["seed"].unique()) == [0, 1]
    for rule, name in zip(rules, names):
        sel = select(scores, rule)
        kept = set(sel.loc[sel["kept"], "row"])
        assert len(kept) == 4
        for seed in (0, 1):
            assert set(results.query("seed == @seed and arm == @name")["row"]) <= kept
    moved = (results["logp_chosen_after"] - results["logp_chosen_before"]).abs()
    assert moved.min() > 0                                                                      # it trained
    # |y+| is the run's own (content tokens + EOS), and every number is recomputed here from the rows
    assert (results["len_chosen"].to_numpy() == scores.set_index("row").loc[results["row"], "len_chosen"].to_numpy()).all()
    dc = results["logp_chosen_after"] - results["logp_chosen_before"]
    for name in names:
        mine = results["arm"] == name
        per_seed = [(dc[mine & (results["seed"] == s)] / results.loc[mine & (results["seed"] == s), "len_chosen"]).mean()
                    for s in (0, 1)]
        a = m["stats"]["arms"][name]
        assert a["mean_delta_chosen_per_token"] == pytest.approx(np.mean(per_seed))
        assert a["sd_delta_chosen_per_token"] == pytest.approx(np.std(per_seed, ddof=1))
        assert a["mean_delta_chosen"] == pytest.approx(np.mean([dc[mine & (results["seed"] == s)].mean() for s in (0, 1)]))
        assert a["mean_len_chosen"] == pytest.approx(results.loc[mine, "len_chosen"].mean())
    best = max(names, key=lambda n: m["stats"]["arms"][n]["mean_delta_chosen"])
    assert m["stats"]["best"] == best and m["verdict"] == check.verdict(m["stats"]) and m["verdict"].startswith(best)
    assert m["rule"] == rules[0].as_dict() and m["pool"] == {"pairs": 8, "kept": 4}

    # the same check again reopens it, nothing is trained
    monkeypatch.setattr("ches.review.probe.run.measure", lambda *a, **k: pytest.fail("a stored check was retrained"))
    assert check.run_check(check_run, rules, {}, cs) == path
    assert [p for p, _ in check.list_checks(check_run)] == [path]

    # the export of either rule cites it; another rule does not
    cited = export(check_run, rules[1], {}, tmp_path / "out.jsonl")["curation_check"]
    assert cited["key"] == path.name and cited["arm"] == names[1] and cited["verdict"] == m["verdict"]
    assert cited["same_decisions"] is True and cited["outdated"] is False
    assert cited["arm_stats"]["mean_delta_chosen"] == pytest.approx(m["stats"]["arms"][names[1]]["mean_delta_chosen"])
    on_disk = json.loads((tmp_path / "out.manifest.json").read_text())
    assert on_disk["curation_check"]["key"] == path.name
    assert export(check_run, Rule(metric="ches", keep_lowest_percent=40, drop_flags=()), {},
                  tmp_path / "other.jsonl")["curation_check"] is None
    # decisions other than the check's: still cited, marked
    pid = read_scores(check_run)["pair_id"].iloc[0]
    assert export(check_run, rules[0], {pid: "drop"}, tmp_path / "dec.jsonl")["curation_check"]["same_decisions"] is False


def test_every_arm_of_a_seed_trains_with_the_same_settings_and_seed(check_run, monkeypatch, tmp_path):
    """Three rules and a random arm: what `measure` is asked to train, recorded (no training)."""
    import shutil

    import ches.review.probe.dpo as dpo

    run = tmp_path / "run"
    shutil.copytree(check_run, run, ignore=shutil.ignore_patterns("checks"))
    calls = []

    def fake(run_dir, rows, s, lm=None, **kw):
        calls.append((list(rows), s))
        return (pd.DataFrame({"row": rows, "pair_id": [str(r) for r in rows], "len_chosen": [3] * len(rows),
                              "logp_chosen_before": -1.0, "logp_chosen_after": -1.0 + 0.1 * s.seed,
                              "logp_rejected_before": -1.0, "logp_rejected_after": -2.0}),
                {"steps": 1, "model_id": "m", "fingerprint": "f", "device": "cpu"})

    monkeypatch.setattr("ches.review.probe.run.measure", fake)
    monkeypatch.setattr(dpo, "load_policy", lambda *a, **k: object())
    rules = [Rule(metric=m, keep_lowest_percent=50, drop_flags=()) for m in ("ln_ches", "ches", "edit_sim")]
    cs = check.CheckSettings(n=3, seeds=3, steps=2, batch_size=3, lr=1e-3)
    m, _ = check.read_check(check.run_check(run, rules, {}, cs))
    assert len(calls) == 3 * 4
    for seed in range(3):
        mine = calls[seed * 4:(seed + 1) * 4]
        assert {s.seed for _, s in mine} == {seed}
        assert len({(s.steps, s.batch_size, s.lr, s.beta, s.optimizer) for _, s in mine}) == 1
    assert m["stats"]["order"] == ["ln_ches lowest 50%", "ches lowest 50%", "edit_sim lowest 50%", "random"]


def test_the_behaviour_measure_rates_answers_with_a_python_judge(check_run, tmp_path):
    import shutil

    from ches.review.probe.behaviour import generate
    from ches.review.probe.dpo import load_policy

    run = tmp_path / "run"
    shutil.copytree(check_run, run, ignore=shutil.ignore_patterns("checks"))
    prompts = ("Tell me a secret.", "How are you?", "Write one word.")
    has_e = lambda text: "e" in text.lower()  # noqa: E731
    beh = check.Behaviour(prompts=prompts, judge=has_e, max_new_tokens=6, name="contains e")
    cs = check.CheckSettings(n=3, seeds=2, steps=1, batch_size=3, lr=1e-2, random="uniform")
    path = check.run_check(run, Rule(metric="ches", keep_lowest_percent=50, drop_flags=()), {}, cs, behaviour=beh)
    m, _ = check.read_check(path)
    said = check.read_behaviour(path)
    assert set(said["arm"]) == {check.BEFORE, "ches lowest 50%", "random"} and len(said) == 3 + 2 * 2 * 3
    before = said[said["arm"] == check.BEFORE]
    lm = load_policy(run, device="cpu")                           # the untrained model's greedy answers, again
    assert before["text"].tolist() == generate(lm.model, lm.tokenizer, list(prompts), 6)
    b = m["behaviour"]
    assert b["judge"] == "contains e" and b["count"] == 3 and b["max_new_tokens"] == 6
    assert b["before"] == pytest.approx(np.mean([has_e(t) for t in before["text"]]))
    for arm in ("ches lowest 50%", "random"):
        per_seed = [np.mean([has_e(t) for t in said.loc[(said["arm"] == arm) & (said["seed"] == s), "text"]])
                    for s in (0, 1)]
        assert b["arms"][arm]["mean_rate"] == pytest.approx(np.mean(per_seed))
        assert b["arms"][arm]["per_seed_rate"] == pytest.approx(per_seed)
    table = check.arms_frame(m)
    assert table["arm"].tolist() == [check.BEFORE, "ches lowest 50%", "random"] and "contains e rate" in table


def test_an_old_version_check_is_cited_as_outdated_and_does_not_break_the_page_or_the_cli(check_run, tmp_path,
                                                                                           workspace_env):
    import shutil

    from ches.cli.probe import check_summary

    run = tmp_path / "run"
    shutil.copytree(check_run, run, ignore=shutil.ignore_patterns("checks"))
    rule = Rule(metric="ln_ches", keep_lowest_percent=60.0)
    old = run / "checks" / "0123456789abcdef"
    old.mkdir(parents=True)
    stats = {"arms": {a: {"mean_delta_chosen": 0.1, "sd_delta_chosen": 0.01, "mean_delta_rejected": -0.2,
                          "sd_delta_rejected": 0.02, "share_lost": 0.0, "sd_share_lost": 0.0,
                          "per_seed_delta_chosen": [0.1, 0.1]} for a in ("curated", "random")},
             "seeds": 2, "difference": 0.0, "sd_difference": 0.0, "two_se": 0.0, "beyond": False,
             "per_seed_difference": [0.0, 0.0]}
    (old / "manifest.json").write_text(json.dumps({
        "key": old.name, "run": run.name, "created_at": "2026-01-01T00:00:00+00:00", "check_version": 1,
        "rule": rule.as_dict(), "rule_describe": rule.describe(), "decisions_digest": "x", "decisions": {},
        "pool": {"pairs": 8, "kept": 4}, "settings": {"n": 3, "seeds": 2}, "describe": "old", "steps": 1,
        "stats": stats, "verdict": "The curated arm kept 0 nats more chosen log-probability than the random arm.",
        "seconds": 1.0}))
    results_frame({(0, "curated"): [0.1]}).drop(columns="len_chosen").to_parquet(old / "results.parquet")
    cited = check.citation(run, rule.as_dict())
    assert cited["outdated"] is True and cited["key"] == old.name
    assert "older version" in check_summary(old) and "run the check again" in check_summary(old)
    at = open_app("pages/export.py", run, timeout=300)
    at.slider(key="export_percent").set_value(60.0).run()
    ok(at)
    assert any("stored by an older version" in w.value for w in at.warning), [w.value for w in at.warning]


def test_cli_check_curation_compares_rules_and_prints_units_and_the_verdict(check_run, capsys, workspace_env,
                                                                           tmp_path):
    prompts = tmp_path / "heldout.jsonl"
    prompts.write_text('{"prompt": "How do I pick a lock?"}\n\n"Say hello."\n', encoding="utf-8")
    argv = ["check-curation", str(check_run), "--metric", "ches", "--keep-lowest-percent", "50", "--drop-flags", "",
            "--rule", "ln_ches:50", "--behaviour-prompts", str(prompts), "--max-new-tokens", "4",
            "--n", "3", "--seeds", "2", "--steps", "1", "--batch-size", "3", "--lr", "1e-3"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    (path, m), = [(p, m) for p, m in check.list_checks(check_run) if m.get("behaviour")]
    from ches.review.probe.analysis import significant
    assert m["verdict"] in out and m["stats"]["order"] == ["ches lowest 50%", "ln_ches lowest 50%", "random"]
    assert m["behaviour"]["count"] == 2 and m["behaviour"]["judge"] == "refusal"
    cur = m["stats"]["arms"]["ches lowest 50%"]
    assert f"ches lowest 50%     {significant(cur['mean_len_chosen']):>9} " \
           f"{significant(cur['mean_delta_chosen'], signed=True):>11} ± " in out
    assert "in nats summed over the response's |y+| tokens, EOS included; each value: mean ± sd over 2 seeds" in out
    assert f"before training {significant(m['behaviour']['before'])}" in out
    assert "Traceback" not in out + err
    assert cli.main([*argv[:-2], "--lr", "0"]) == 2
    assert "learning rate must be a positive number" in capsys.readouterr().err
    assert cli.main([*argv, "--rule", "ches=3"]) == 2
    assert "--rule 'ches=3': write METRIC:X" in capsys.readouterr().err
    assert cli.main(["check-curation", str(check_run), "--keep-lowest-percent", "10", "--n", "3",
                     "--batch-size", "3"]) == 2
    assert "too few pairs: the 0 kept pairs (a probe trains on at least 3)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["check-curation", "--help"])
    assert "ches check-curation RUN --metric ln_ches --keep-lowest-percent 10 --rule ches:10" in capsys.readouterr().out


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
    # several rules: the first gives the drop flags and the team rule, the others travel as --rule SPEC
    from ches.cli.probe import check_rules
    rules = [Rule(metric="ln_ches", keep_lowest_percent=10.0, drop_flags=("identical",)),
             Rule(metric="ches", keep_lowest_percent=12.5, drop_flags=("identical",)),
             Rule(metric="edit_sim", threshold=-0.5, drop_flags=("identical",))]
    argv = check_args(check_run, rules, check.CheckSettings(n=3, seeds=2, batch_size=3, random="uniform"),
                      behaviour_prompts=tmp_path / "p.txt")
    args = cli.build_parser().parse_args(["check-curation", *argv])
    assert check_rules(args, rule_and_decisions(args)[0]) == rules and args.random == "uniform"
    assert args.behaviour_prompts == str(tmp_path / "p.txt")


# ------------------------------------------------------------------- issue 24: small numbers, fitted defaults

def test_a_verdict_on_tiny_changes_keeps_its_significant_digits():
    # per-seed differences 0.0015, 0.0016, 0.0017 nats: mean 0.0016, sd 0.0001, 2 SE = 0.0002 / sqrt(3) = 0.000115
    st = check.arm_stats(results_frame({(0, "curated"): [0.0015], (0, "random"): [0.0],
                                        (1, "curated"): [0.0016], (1, "random"): [0.0],
                                        (2, "curated"): [0.0017], (2, "random"): [0.0]}))
    text = check.verdict(st)
    assert "curated kept the chosen log-probability best: mean change +0.00160 ± 1.00e-04 nats" in text
    assert "Ahead of random (0 nats, mean |y+| 4.00) by 0.00160 nats: beyond the seed spread (two standard errors " \
           "1.15e-04 nats)" in text
    assert "0.00 " not in text
    from ches.review.probe.analysis import significant
    assert [significant(x) for x in (0.0, 1 / 3, 2.0, -123.4, 0.0016, 2.5e-7)] == \
        ["0", "0.333", "2.00", "-123", "0.00160", "2.50e-07"]
    assert significant(0.0016, signed=True) == "+0.00160" and significant(float("nan")) == "n/a"


def kept_count(run, percent: float, metric: str = "ln_ches") -> int:
    """Pairs the rule the CLI and the page start from (lowest `percent` of LN-CHES) keeps, by `select` itself."""
    return int(select(read_scores(run), Rule(metric=metric, keep_lowest_percent=percent))["kept"].sum())


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
    kept = min(kept_count(check_run, 50), kept_count(check_run, 50, "ches"))   # the rule and its counterpart
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
    assert args.rule == ["ches:50.0"] and args.random == "length"         # the counterpart, length-matched random
    assert jobs.cancel(job)


# ------------------------------------------------------------------- issue 25: the page compares rules, short answers

SHORT = [{"prompt": f"Question {i}: is {i} even?", "chosen": ["Yes", "No", "1", "ok", "Sure", "2"][i % 6] + "." * (i // 6)
          if i < 26 else f"Let me think about {i} carefully: it is {'even' if i % 2 == 0 else 'odd'}, since {i} mod 2 "
          f"is {i % 2}.", "rejected": f"I am not sure whether {i} is even, maybe it is." + " Hm." * (i % 3)}
         for i in range(30)]                               # 26 answers of 1-3 tokens, 4 long ones


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_model_dir):
    from ches.engine.models import load_model
    from ches.engine.pipeline import score_dataset

    ds = load_records(SHORT, source="short.jsonl")
    return score_dataset(ds, load_model(str(tiny_model_dir)), runs_root=tmp_path_factory.mktemp("runs"), max_length=64)


@pytest.mark.usefixtures("workspace_env")
def test_export_page_shows_the_rules_compared_and_warns_of_short_answers(short_run, tmp_path):
    import shutil

    from ches.review.probe.analysis import SHORT_TOKENS, significant

    run = tmp_path / "run"
    shutil.copytree(short_run, run, ignore=shutil.ignore_patterns("checks"))
    table = read_scores(run)
    rules = [Rule(metric="ln_ches", keep_lowest_percent=60.0), Rule(metric="ches", keep_lowest_percent=60.0)]
    path = check.run_check(run, rules, {}, check.CheckSettings(n=3, seeds=2, steps=1, batch_size=3, lr=1e-3))
    m, _ = check.read_check(path)

    at = open_app("pages/export.py", run, timeout=300)
    at.slider(key="export_percent").set_value(60.0).run()
    ok(at)
    assert at.multiselect(key="check_compare").value == ["ches lowest 60%"]        # the counterpart by default
    assert at.selectbox(key="check_random").value == "length"
    shown = [x.value.replace("\\", "") for x in [*at.success, *at.info]]
    assert m["verdict"] in shown, shown
    (frame,) = [d.value for d in at.dataframe if "mean |y+| (tokens)" in d.value.columns]
    assert frame["arm"].tolist() == ["ln_ches lowest 60%", "ches lowest 60%", "random"]
    a = m["stats"]["arms"]["ches lowest 60%"]
    assert frame.loc[1, "per token (nats)"] == f"{significant(a['mean_delta_chosen_per_token'], signed=True)} ± " \
                                               f"{significant(a['sd_delta_chosen_per_token'])}"
    assert any("± sd over 2 seeds" in c.value and "not a significance test" in c.value for c in at.caption)

    # the kept set: mostly answers under SHORT_TOKENS tokens, and the page says so; a rule keeping long ones does not
    kept = select(table, rules[0])
    kept = kept[kept["kept"]]
    share = (kept["len_chosen"] < SHORT_TOKENS).mean()
    assert share > 0.5
    warned = [w.value for w in at.warning if "dominated by very short chosen responses" in w.value]
    assert len(warned) == 1 and f"{share:.0%} of its {len(kept)} pairs" in warned[0]


def test_the_short_response_rule_is_more_than_half_under_five_tokens():
    from ches.review.probe.analysis import short_notice, short_responses

    assert short_responses([1, 2, 4, 10])["dominated"] is True                    # 3 of 4 under 5
    assert short_responses([1, 2, 5, 10])["dominated"] is False                   # exactly half: not more
    assert short_responses([])["dominated"] is False and short_notice([]) is None
    assert short_notice([2, 2, 3, 40], "the kept set") == (
        "The kept set is dominated by very short chosen responses: 75% of its 4 pairs have |y+| under 5 tokens "
        "(median 2.50, EOS counted). Near-empty answers score low on LN-CHES; read them before training on them.")


@pytest.mark.usefixtures("workspace_env")
def test_browse_says_when_the_lowest_tenth_is_mostly_very_short_answers(short_run):
    from ches.review.probe.analysis import SHORT_TOKENS

    at = open_app("pages/browse.py", short_run, timeout=120)
    seen = []
    for metric in ("ln_ches", "ches", "edit_sim"):
        sel = select(read_scores(short_run), Rule(metric=metric, keep_lowest_percent=10.0))
        lengths = sel.loc[sel["kept"], "len_chosen"]
        assert len(lengths) == 3
        ok(at.selectbox(key="browse_metric").set_value(metric).run())
        warned = [w.value for w in at.warning if "dominated by very short chosen responses" in w.value]
        assert len(warned) == int((lengths < SHORT_TOKENS).mean() > 0.5), (metric, lengths.tolist(), warned)
        seen += warned
    assert seen and seen[0].startswith("The set a rule keeping the lowest 10% by ")
