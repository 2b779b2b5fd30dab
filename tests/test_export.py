"""Tests for ches.review.export (select / preview / export) and ches.cli.export (the export and decisions commands).

Runs are synthetic (ches.engine.chunks.write_run with random vectors and scores over real loaded pairs), so no
model is needed; the exported files are re-loaded with ches.engine.files.load_dataset to check the round trip.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ches import __version__
from ches.review import decisions
from ches.review import export as E
from ches.cli import decisions as CD, export as C
from ches.cli.common import UserError
from ches.review.decisions import Decision
from ches.engine.files import load_dataset
from ches.engine.records import load_records
from conftest import make_fake_run as make_run, open_app

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.jsonl"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = ROOT / "tests" / "fixtures"


def table_of(values, flags=None, pair_ids=None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"row": np.arange(1, n + 1), "pair_id": pair_ids or [f"p{i}" for i in range(n)],
                         "ln_ches": np.asarray(values, float), "ches": np.asarray(values, float) * 10,
                         "len_chosen": np.arange(n) + 1, "len_rejected": np.arange(n) + 2,
                         "flags": flags or [""] * n})


def dec(decision: str, pid: str = "x") -> Decision:
    return Decision(pid, decision, "", "alice", "2025-01-01T00:00:00+00:00", 1)


@pytest.fixture(scope="module")
def sample_ds():
    return load_dataset(SAMPLE)


@pytest.fixture
def sample_run(tmp_path, sample_ds) -> Path:
    return make_run(tmp_path / "runs" / "run0123456789", sample_ds)


# ------------------------------------------------------------------------------------ Rule

@pytest.mark.parametrize("kwargs", [dict(metric="nope"), dict(keep_lowest_percent=101), dict(keep_lowest_percent=-1),
                                    dict(drop_flags=("bogus",)), dict(threshold=float("nan")), dict(team="bogus")])
def test_rule_rejects_bad_values(kwargs):
    with pytest.raises(E.ExportError):
        E.Rule(**kwargs)


def test_rule_mode_and_defaults():
    assert E.Rule().mode == "lowest_percent" and E.Rule().keep_lowest_percent == 95
    assert E.Rule(threshold=0.5).mode == "threshold"
    assert E.Rule().drop_flags == ("identical", "empty_chosen", "empty_rejected")
    assert E.Rule(drop_flags=["duplicate"]).drop_flags == ("duplicate",)


# ------------------------------------------------------------------------------------ select

def test_percent_keeps_the_lowest_scores():
    t = table_of([5, 1, 4, 2, 3, 9, 8, 7, 6, 0])
    sel = E.select(t, E.Rule(keep_lowest_percent=30), {})
    assert sorted(sel.loc[sel.kept, "ln_ches"]) == [0, 1, 2]
    assert set(sel["reason"]) == {"rule"}


@pytest.mark.parametrize("percent, expected", [(0, 0), (100, 10), (9.99, 0), (10, 1), (95, 9), (99.9, 9)])
def test_percent_edges_never_keep_more_than_asked(percent, expected):
    sel = E.select(table_of(np.arange(10.0)), E.Rule(keep_lowest_percent=percent), {})
    assert sel["kept"].sum() == expected


def test_percent_ties_break_by_dataset_order_and_nan_ranks_last():
    t = table_of([1.0, 0.0, 1.0, 1.0, float("nan")])
    sel = E.select(t, E.Rule(keep_lowest_percent=40), {})  # k = 2: the 0 and the first of the tied 1s
    assert sel.loc[sel.kept, "row"].tolist() == [1, 2]
    sel = E.select(t, E.Rule(keep_lowest_percent=80), {})  # k = 4: every finite score, not the NaN
    assert sel.loc[sel.kept, "row"].tolist() == [1, 2, 3, 4]


def test_threshold_is_inclusive_and_replaces_the_percent():
    t = table_of([0.1, 0.2, 0.3, float("nan")])
    sel = E.select(t, E.Rule(keep_lowest_percent=0, threshold=0.2), {})
    assert sel["kept"].tolist() == [True, True, False, False]
    assert E.select(t, E.Rule(threshold=-5), {})["kept"].sum() == 0


def test_flags_drop_pairs_and_name_the_first_listed_flag():
    t = table_of([0, 1, 2, 3], flags=["identical", "", "duplicate,empty_chosen", "empty_chosen,identical"])
    sel = E.select(t, E.Rule(keep_lowest_percent=100), {})
    assert sel["kept"].tolist() == [False, True, False, False]
    assert sel["reason"].tolist() == ["flag:identical", "rule", "flag:empty_chosen", "flag:identical"]
    sel = E.select(t, E.Rule(keep_lowest_percent=100, drop_flags=()), {})
    assert sel["kept"].all()
    # a flag name that is a substring of another never matches it
    t2 = table_of([0], flags=["prompt_mismatch"])
    assert E.select(t2, E.Rule(keep_lowest_percent=100, drop_flags=("duplicate",)), {})["kept"].all()


def test_decisions_override_rule_and_flags():
    t = table_of([0, 1, 2, 3, 4], flags=["identical", "", "", "", ""])
    decisions = {"p0": dec("keep"), "p1": dec("drop"), "p4": dec("keep"), "p3": dec("flag")}
    sel = E.select(t, E.Rule(keep_lowest_percent=60), decisions)  # rule keeps rows 1-3 (p0 is flagged)
    assert sel["kept"].tolist() == [True, False, True, False, True]
    assert sel["reason"].tolist() == ["decision:keep", "decision:drop", "rule", "rule", "decision:keep"]
    assert sel["decision"].tolist() == ["keep", "drop", "", "flag", "keep"]
    assert sel["rule_kept"].tolist() == [False, True, True, False, False]
    # plain strings work too; an unknown decision is an error
    assert E.select(t, E.Rule(), {"p1": "drop"})["kept"].tolist()[1] is False
    with pytest.raises(E.ExportError):
        E.select(t, E.Rule(), {"p1": "clear"})


def test_select_does_not_mutate_and_checks_columns():
    t = table_of([0, 1])
    before = t.copy()
    E.select(t, E.Rule(), {})
    pd.testing.assert_frame_equal(t, before)
    with pytest.raises(E.ExportError, match="last_hidden_ip"):
        E.select(t, E.Rule(metric="last_hidden_ip"), {})


def test_preview_counts_and_quantiles():
    t = table_of(list(range(10)), flags=["identical"] + [""] * 9)
    p = E.preview(t, E.Rule(keep_lowest_percent=50), {"p9": dec("keep"), "p2": dec("drop"), "p5": dec("flag")})
    # rule keeps rows of values 0..4 minus flagged 0 -> 1,2,3,4; drop 2; keep 9
    assert (p["before"], p["after"], p["dropped"]) == (10, 4, 6)
    assert p["kept_by_reason"] == {"rule": 3, "decision:keep": 1}
    assert p["dropped_by_reason"] == {"rule": 4, "flag:identical": 1, "decision:drop": 1}
    assert p["flags_removed"] == {"identical": 1}
    assert p["decisions"] == {"keep": 1, "drop": 1, "flag": 1}
    assert p["overridden"] == 2
    assert p["cutoff"] == 4.0
    assert p["quantiles"]["before"]["ln_ches"]["q0"] == 0 and p["quantiles"]["before"]["ln_ches"]["q100"] == 9
    assert p["quantiles"]["after"]["ln_ches"]["q100"] == 9 and p["quantiles"]["after"]["ln_ches"]["q0"] == 1
    assert set(p["quantiles"]["after"]) == {"ln_ches", "len_chosen", "len_rejected"}
    json.dumps(p)  # JSON-ready
    empty = E.preview(t, E.Rule(keep_lowest_percent=0), {})
    assert empty["after"] == 0 and empty["cutoff"] is None
    assert empty["quantiles"]["after"]["ln_ches"]["q50"] is None


# ------------------------------------------------------------------------------------ export

def reload_ids(path: Path, fmt: str | None = None) -> list[str]:
    ds = load_dataset(path, format=fmt)
    assert ds.errors == []
    return [p.pair_id for p in ds.pairs]


def kept_ids(run_dir: Path, rule, decisions) -> list[str]:
    from ches.engine.store import read_scores
    sel = E.select(read_scores(run_dir), rule, decisions)
    return sel.loc[sel.kept].sort_values("row")["pair_id"].tolist()


@pytest.mark.parametrize("fmt", ["input", "trl"])
def test_export_round_trip_and_manifest(sample_run, sample_ds, tmp_path, fmt):
    rule = E.Rule(keep_lowest_percent=50)
    first, second = sample_ds.pairs[0].pair_id, sample_ds.pairs[1].pair_id
    decisions = {first: dec("keep", first), second: dec("drop", second)}
    out = tmp_path / f"subset-{fmt}.jsonl"
    m = E.export(sample_run, rule, decisions, out, fmt=fmt, annotator="alice")
    expected = kept_ids(sample_run, rule, decisions)
    assert first in expected and second not in expected
    assert reload_ids(out) == expected
    assert 0 < len(expected) < len(sample_ds.pairs)

    on_disk = json.loads(E.manifest_path(out).read_text())
    assert E.manifest_path(out) == tmp_path / f"subset-{fmt}.manifest.json"
    assert on_disk == m
    assert m["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and m["bytes"] == out.stat().st_size
    assert (m["model_id"], m["fingerprint"], m["dataset_hash"]) == ("test/model", "fp123", sample_ds.content_hash)
    assert m["source"] == str(SAMPLE) and m["run"] == sample_run.name and m["app_version"] == __version__
    assert m["metric"] == "ln_ches" and m["rule"]["keep_lowest_percent"] == 50 and m["rule"]["mode"] == "lowest_percent"
    assert m["format"] == fmt and m["decisions_annotator"] == "alice"
    assert m["counts"]["kept"] == len(expected) and m["counts"]["pairs"] == len(sample_ds.pairs)
    assert m["counts"]["kept_by_reason"]["decision:keep"] == 1
    assert m["counts"]["dropped_by_reason"]["decision:drop"] == 1
    assert m["decisions"] == {"keep": 1, "drop": 1, "flag": 0}
    assert m["created_at"].endswith("+00:00")
    if fmt == "input":  # the source records, byte for byte as JSON
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        by_id = {p.pair_id: p.record for p in sample_ds.pairs}
        assert lines == [by_id[i] for i in expected]


def _first_lines(src: Path, n: int, dest: Path) -> Path:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    dest.write_text("".join(lines), encoding="utf-8")
    return dest


REAL = [("ultrafeedback-binarized-train-500.jsonl", 30), ("hh-rlhf-harmless-base-test.jsonl.gz", 30),
        ("persona-ends-justify-means.jsonl", 30)]


@pytest.mark.parametrize("name, n", REAL)
@pytest.mark.parametrize("fmt", ["input", "trl"])
def test_real_files_round_trip(tmp_path, name, n, fmt):
    src = SHARED / name
    ds = load_dataset(_first_lines(src, n, tmp_path / "src.jsonl"))
    run = make_run(tmp_path / "run", ds, seed=3)
    out = tmp_path / "out.jsonl"
    rule = E.Rule(keep_lowest_percent=60, drop_flags=())
    E.export(run, rule, {}, out, fmt=fmt)
    assert reload_ids(out) == kept_ids(run, rule, {})
    assert len(reload_ids(out)) == int(len(ds.pairs) * 0.6)


@pytest.mark.parametrize("fixture", ["alpacafarm.csv", "hh.jsonl", "persona.jsonl", "openai_dpo.jsonl",
                                     "ches_flat.json", "trl_standard.csv", "implicit_messages.jsonl"])
@pytest.mark.parametrize("fmt", ["input", "trl"])
def test_every_source_format_round_trips(tmp_path, fixture, fmt):
    ds = load_dataset(FIXTURES / fixture)
    run = make_run(tmp_path / "run", ds)
    out = tmp_path / "out.jsonl"
    rule = E.Rule(keep_lowest_percent=100, drop_flags=())
    E.export(run, rule, {}, out, fmt=fmt)
    assert reload_ids(out, ds.format if fmt == "input" else None) == [p.pair_id for p in ds.pairs]


def test_prompt_mismatch_pair_exports_as_trl(tmp_path):
    ds = load_records([{"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hey\n\nAssistant: b"},
                       {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}],
                      source="mem")
    assert ds.pairs[0].flags == ("prompt_mismatch",)
    run = make_run(tmp_path / "run", ds)
    for fmt in ("trl", "input"):
        E.export(run, E.Rule(keep_lowest_percent=100), {}, tmp_path / f"{fmt}.jsonl", fmt=fmt)
        assert reload_ids(tmp_path / f"{fmt}.jsonl") == [p.pair_id for p in ds.pairs]


def test_a_lone_surrogate_in_a_non_text_field_exports_and_reloads(tmp_path):
    """The run store keeps such a record \\u-escaped; the export writes it the same way instead of failing."""
    ds = load_records([{"prompt": "p", "chosen": "a", "rejected": "b", "meta": "\udc80"},
                       {"prompt": "q", "chosen": "c", "rejected": "d", "meta": "fine ✓"}], source="mem")
    run = make_run(tmp_path / "run", ds)
    for fmt in ("input", "trl"):
        out = tmp_path / f"{fmt}.jsonl"
        m = E.export(run, E.Rule(keep_lowest_percent=100, drop_flags=()), {}, out, fmt=fmt)
        assert reload_ids(out) == [p.pair_id for p in ds.pairs]
        assert m["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    lines = (tmp_path / "input.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["meta"] for x in lines] == ["\udc80", "fine ✓"]     # the record, as read
    assert "\\udc80" in lines[0] and "✓" in lines[1]                            # escaped only where needed


def test_failed_export_leaves_previous_files_intact(sample_run, tmp_path, monkeypatch):
    out = tmp_path / "x.jsonl"
    E.export(sample_run, E.Rule(), {}, out)
    before_jsonl, before_manifest = out.read_bytes(), E.manifest_path(out).read_bytes()

    calls = {"n": 0}
    real = E.to_trl

    def boom(pair):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk on fire")
        return real(pair)

    monkeypatch.setattr(E, "to_trl", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        E.export(sample_run, E.Rule(keep_lowest_percent=10), {}, out, fmt="trl", overwrite=True)
    assert out.read_bytes() == before_jsonl
    assert E.manifest_path(out).read_bytes() == before_manifest
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_export_rejects_bad_requests(sample_run, tmp_path):
    with pytest.raises(E.ExportError, match="format"):
        E.export(sample_run, E.Rule(), {}, tmp_path / "a.jsonl", fmt="csv")
    with pytest.raises(E.ExportError, match=".jsonl"):
        E.export(sample_run, E.Rule(), {}, tmp_path / "a.csv")
    with pytest.raises(E.ExportError, match="no such folder"):
        E.export(sample_run, E.Rule(), {}, tmp_path / "missing" / "a.jsonl")


def test_export_of_nothing_writes_an_empty_file(sample_run, tmp_path):
    m = E.export(sample_run, E.Rule(keep_lowest_percent=0), {}, tmp_path / "none.jsonl")
    assert (tmp_path / "none.jsonl").read_bytes() == b"" and m["counts"]["kept"] == 0


def test_export_path_is_confined(tmp_path):
    from ches.workspace import PathError
    assert E.export_path(tmp_path, "abc") == (tmp_path / "abc.jsonl").resolve()
    assert E.export_path(tmp_path, "sub/../abc.ndjson") == (tmp_path / "abc.ndjson").resolve()
    for bad in ("../evil", "/etc/passwd", "a/../../b"):
        with pytest.raises(PathError):
            E.export_path(tmp_path, bad)
    for bad in ("", "   ", ".jsonl"):
        with pytest.raises(ValueError):
            E.export_path(tmp_path, bad)
    when = datetime(2026, 1, 27, 14, 15, 2)
    assert E.default_export_name("orca validation", E.Rule(threshold=0.25), when) == \
        "orca_validation-ln_ches-le0.25-20260127-141502"
    assert E.default_export_name("r", E.Rule(), when) == "r-ln_ches-keep95-20260127-141502"


def test_before_after_histogram_counts_every_value_on_a_robust_axis():
    from ches.review.charts import before_after_histogram

    before = np.concatenate([np.linspace(0, 1, 199), [-1494.0]])          # one far outlier
    fig = before_after_histogram(before, before[:50], title="t", xlabel="x")
    assert [t.name for t in fig.data] == ["before", "after"]
    assert sum(fig.data[0].y) == 200 and sum(fig.data[1].y) == 50         # the outlier is counted, at the edge
    assert min(fig.data[0].x) > -0.2                                      # ... and does not set the axis
    assert any("1 beyond" in a.text for a in fig.layout.annotations)


# ------------------------------------------------------------------------------------ CLI

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ches")
    sub = p.add_subparsers(dest="command", required=True)
    C.add_parsers(sub)
    CD.add_parsers(sub)
    return p


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHES_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


def test_cli_export_by_run_id_with_decisions(ws, sample_ds, tmp_path, capsys):
    run = make_run(ws / "runs" / "abcdef0123456789", sample_ds)
    db = tmp_path / "d.sqlite"
    pid = sample_ds.pairs[3].pair_id
    decisions.record(db, pid, "drop", annotator="bob")
    out = tmp_path / "cli.jsonl"
    args = parser().parse_args(["export", "abcdef", "--out", str(out), "--metric", "ches", "--threshold", "0",
                                "--format", "trl", "--decisions", str(db), "--drop-flags", ""])
    assert args.func is C.cmd_export
    assert args.func(args) == 0
    text = capsys.readouterr().out
    m = json.loads(E.manifest_path(out).read_text())
    assert f"wrote {m['counts']['kept']} of {len(sample_ds.pairs)} pairs" in text
    assert m["rule"] == {"metric": "ches", "keep_lowest_percent": 95.0, "threshold": 0.0, "drop_flags": [],
                         "team": "latest", "mode": "threshold"}
    expected = kept_ids(run, E.Rule(metric="ches", threshold=0, drop_flags=()), {pid: "drop"})
    assert pid not in expected and reload_ids(out) == expected


def test_cli_export_defaults_use_workspace_decisions_if_present(ws, sample_ds, tmp_path, capsys):
    make_run(ws / "runs" / "r1", sample_ds)
    out = tmp_path / "o.jsonl"
    args = parser().parse_args(["export", str(ws / "runs" / "r1"), "--out", str(out)])
    assert args.keep_lowest_percent == 95 and args.fmt == "input"
    assert args.drop_flags == ("identical", "empty_chosen", "empty_rejected")
    args.func(args)  # no workspace db yet: no decisions
    assert json.loads(E.manifest_path(out).read_text())["decisions"] == {"keep": 0, "drop": 0, "flag": 0}
    decisions.record(ws / "decisions.sqlite", sample_ds.pairs[0].pair_id, "keep", annotator="a")
    before = out.read_bytes(), E.manifest_path(out).read_bytes()
    with pytest.raises(E.ExportExists, match="--force"):             # an existing file is never replaced silently
        args.func(args)
    assert (out.read_bytes(), E.manifest_path(out).read_bytes()) == before
    args.force = True
    args.func(args)
    assert json.loads(E.manifest_path(out).read_text())["decisions"]["keep"] == 1


def test_cli_export_user_errors(ws, sample_ds, tmp_path):
    make_run(ws / "runs" / "aa11", sample_ds)
    make_run(ws / "runs" / "aa22", sample_ds)
    out = str(tmp_path / "o.jsonl")
    for argv, err in ((["export", "aa", "--out", out], "ambiguous"), (["export", "zz", "--out", out], "neither"),
                      (["export", "aa11", "--out", out, "--decisions", str(tmp_path / "nope.db")], "no such"),
                      (["export", "../aa11", "--out", out], "neither")):
        args = parser().parse_args(argv)
        with pytest.raises(ValueError, match=err):
            args.func(args)
    with pytest.raises(SystemExit):  # mutually exclusive
        parser().parse_args(["export", "aa11", "--out", out, "--threshold", "1", "--keep-lowest-percent", "5"])
    with pytest.raises(SystemExit):
        parser().parse_args(["export", "aa11", "--out", out, "--drop-flags", "bogus"])


def test_cli_decisions_export_and_import(ws, tmp_path, capsys):
    db = tmp_path / "a.sqlite"
    decisions.record(db, "p1", "keep", annotator="a")
    decisions.record(db, "p2", "drop", annotator="a", note="bad")
    dump = tmp_path / "dec.jsonl"
    args = parser().parse_args(["decisions", "export", str(dump), "--db", str(db)])
    assert args.func(args) == 0
    assert "exported 2" in capsys.readouterr().out
    with dump.open("a") as f:
        f.write("not json\n")
    other = tmp_path / "b.sqlite"
    args = parser().parse_args(["decisions", "import", str(dump), "--db", str(other)])
    assert args.func(args) == 1
    out, err = capsys.readouterr()
    assert "imported 2, skipped 0 duplicate(s), 1 error(s)" in out and "line 3:" in err
    assert args.func(args) == 1
    assert "imported 0, skipped 2" in capsys.readouterr().out
    assert {k: v.decision for k, v in decisions.current(other).items()} == {"p1": "keep", "p2": "drop"}
    # default db is the workspace's; exporting a missing db is a one-line user error
    args = parser().parse_args(["decisions", "export", str(tmp_path / "x.jsonl")])
    with pytest.raises(UserError, match="no decisions database"):
        args.func(args)
    with pytest.raises(OSError):
        args = parser().parse_args(["decisions", "import", str(tmp_path / "missing.jsonl")])
        args.func(args)


def test_cli_main_runs_export(ws, sample_ds, tmp_path):
    """`ches export` through the real command-line entry point."""
    from ches import cli
    make_run(ws / "runs" / "r9", sample_ds)
    out = tmp_path / "m.jsonl"
    assert cli.main(["export", "r9", "--out", str(out), "--keep-lowest-percent", "10"]) == 0
    assert len(reload_ids(out)) == int(len(sample_ds.pairs) * 0.1)
    assert cli.main(["export", "nope", "--out", str(out)]) == 2
    assert cli.main(["export", "r9", "--out", str(out)]) == 2                    # exists: refused
    assert len(reload_ids(out)) == int(len(sample_ds.pairs) * 0.1)
    assert cli.main(["export", "r9", "--out", str(out), "--force"]) == 0
    assert len(reload_ids(out)) == int(len(sample_ds.pairs) * 0.95)


def test_cli_export_help_has_no_literal_percent_escapes(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["export", "--help"])
    text = capsys.readouterr().out
    assert "5% lowest" in text and "X% of pairs" in text and "%%" not in text


# ------------------------------------------------------------------------------------ team rules
# Eleven pairs P0..P10 (rows 1..11) and three annotators, recorded pair by pair in the order a, b, c (so the
# latest decision on a pair is its last annotator's), plus an adjudication on P5 and a conflict on a pair of
# another run. Worked out by hand:
#   P0 a keep, b keep          agreed keep        P6  a keep          single
#   P1 a drop, b drop, c drop  agreed drop        P7  a flag, b keep  conflict
#   P2 a keep, b drop          conflict           P8  b drop          single
#   P3 a keep, b keep, c drop  conflict           P9  a keep, b keep  agreed keep
#   P4 a drop, b keep, c drop  conflict           P10 nobody
#   P5 a keep, b drop          conflict, settled keep by "boss"
TEAM_TABLE = {0: "kk", 1: "ddd", 2: "kd", 3: "kkd", 4: "dkd", 5: "kd", 6: "k", 7: "fk", 8: "-d", 9: "kk"}
ANNOTATORS = ("ann-a", "ann-b", "ann-c")
# the team's decision per rule: (pairs kept, pairs dropped); the rest fall to the score rule
TEAM_OUTCOMES = {
    "latest": ({0, 5, 6, 7, 9}, {1, 2, 3, 4, 8}),          # the last annotator of each pair; P5 adjudicated
    "majority": ({0, 3, 5, 6, 9}, {1, 4, 8}),              # P2 1 of 2, P7 1 of 2: no majority
    "unanimous_keep": ({0, 5, 6, 9}, {1, 2, 3, 4, 7, 8}),  # P7: a flag is not a keep
    "any_drop": ({0, 5, 6, 7, 9}, {1, 2, 3, 4, 8}),        # P7: no drop, a keep
    "adjudicated": ({0, 5, 9}, {1}),                       # agreed pairs and the adjudication only
}
# what settled the conflicts P2, P3, P4, P5, P7 under each rule
SETTLED_BY = {"latest": (1, 4, 0), "majority": (1, 2, 2), "unanimous_keep": (1, 4, 0), "any_drop": (1, 4, 0),
              "adjudicated": (1, 0, 4)}


@pytest.fixture
def team_run(tmp_path):
    """(run folder, decision log, pair ids by P number) for TEAM_TABLE."""
    ds = load_records([{"prompt": f"question {i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(11)],
                      source="team.jsonl")
    run = make_run(tmp_path / "runs" / "teamrun", ds)
    pid = [p.pair_id for p in ds.pairs]
    db = tmp_path / "team.sqlite"
    value = {"k": "keep", "d": "drop", "f": "flag"}
    for i, letters in TEAM_TABLE.items():
        for ann, letter in zip(ANNOTATORS, letters):
            if letter != "-":
                decisions.record(db, pid[i], value[letter], annotator=ann)
    decisions.record(db, pid[5], "keep", annotator="boss", adjudicate=True, note="on topic")
    decisions.record(db, "not-in-this-run", "keep", annotator="ann-a")       # another run's conflict:
    decisions.record(db, "not-in-this-run", "drop", annotator="ann-c")       # never counted here
    return run, db, pid


def _outcome(run, rule, view) -> tuple[set[int], set[int]]:
    """(P numbers the team keeps, P numbers the team drops), read off two selections: with the score rule
    keeping nothing, only the team's keeps are kept; keeping everything, only its drops are dropped."""
    from ches.engine.store import read_scores
    table = read_scores(run)
    none = E.select(table, E.Rule(keep_lowest_percent=0, drop_flags=(), team=rule), view)
    every = E.select(table, E.Rule(keep_lowest_percent=100, drop_flags=(), team=rule), view)
    return set((none.loc[none.kept, "row"] - 1).tolist()), set((every.loc[~every.kept, "row"] - 1).tolist())


@pytest.mark.parametrize("rule", list(TEAM_OUTCOMES))
def test_each_team_rule_selects_the_pairs_worked_out_by_hand(team_run, rule):
    from ches.review.team_rules import TeamView
    run, db, _ = team_run
    assert _outcome(run, rule, TeamView.read(db)) == TEAM_OUTCOMES[rule]


@pytest.mark.parametrize("rule", list(TEAM_OUTCOMES))
def test_the_manifest_says_how_the_team_decided(team_run, tmp_path, rule):
    from ches.review.team_rules import TEAM_RULES, TeamView
    run, db, pid = team_run
    m = E.export(run, E.Rule(keep_lowest_percent=0, drop_flags=(), team=rule), TeamView.read(db),
                 tmp_path / f"{rule}.jsonl")
    kept, dropped = TEAM_OUTCOMES[rule]
    assert m["counts"]["kept"] == len(kept) and m["counts"]["kept_by_reason"] == {"decision:keep": len(kept)}
    assert m["counts"]["dropped_by_reason"].get("decision:drop", 0) == len(dropped)
    assert m["decisions"]["keep"] == len(kept) and m["decisions"]["drop"] == len(dropped)
    t = m["team"]
    assert t["rule"] == rule and t["description"] == TEAM_RULES[rule] and m["rule"]["team"] == rule
    assert t["annotators"] == {"ann-a": {"keep": 6, "drop": 2, "flag": 1}, "ann-b": {"keep": 5, "drop": 4, "flag": 0},
                               "ann-c": {"keep": 0, "drop": 3, "flag": 0}}          # "not-in-this-run" left out
    assert (t["conflicts"], t["settled"]) == (5, 1)
    assert t["settlements"] == [{"pair_id": pid[5], "decisions": "ann-a: keep; ann-b: drop", "decision": "keep",
                                 "by": "boss"}]
    assert sorted(t["unsettled"]) == sorted(pid[i] for i in (2, 3, 4, 7))
    assert tuple(t["settled_by"].values()) == SETTLED_BY[rule]
    conflict = {c["row"] - 1: c for c in t["conflict_pairs"]}
    assert set(conflict) == {2, 3, 4, 5, 7}
    assert conflict[3]["decisions"] == "ann-a: keep; ann-b: keep; ann-c: drop"
    assert conflict[5]["settled_by"] == "adjudication" and conflict[5]["by"] == "boss" and conflict[5]["kept"]
    for i, c in conflict.items():                       # kept exactly when the team's decision is keep
        assert c["kept"] == (i in kept)
        assert c["decision"] == ("keep" if i in kept else "drop" if i in dropped else "")
    # Cohen's kappa: a/b share P0-P5, P7, P9 and agree on 4 of 8; p_e = (5*5 + 2*3 + 1*0) / 64, so
    # kappa = (32 - 31) / (64 - 31) = 1/33. a/c and b/c share P1, P3, P4 with c always 'drop': kappa 0.
    kappa = {(k["a"], k["b"]): (k["shared"], k["kappa"]) for k in t["kappa"]}
    assert kappa[("ann-a", "ann-b")] == (8, pytest.approx(1 / 33))
    assert kappa[("ann-a", "ann-c")] == (3, pytest.approx(0)) and kappa[("ann-b", "ann-c")] == (3, pytest.approx(0))
    # Krippendorff's alpha (nominal) over the 8 pairs with two or more annotators, 19 values: coincidences
    # o_kk 5, o_dd 4, o_kd = o_dk 4, o_kf = o_fk 1; n_k 10, n_d 8, n_f 1. D_o = 10/19,
    # D_e = 2 (10*8 + 10*1 + 8*1) / (19*18) = 196/342, alpha = 1 - D_o/D_e = 1 - 180/196 = 4/49.
    assert t["alpha"] == pytest.approx(4 / 49)
    json.dumps(m)


def test_only_my_decisions_and_plain_mappings(team_run):
    from ches.review.team_rules import TeamView
    run, db, pid = team_run
    view = TeamView.read(db)
    # ann-c alone: drops P1, P3, P4; the adjudication is not theirs
    assert _outcome(run, "latest", E.only(view, "ann-c")) == (set(), {1, 3, 4})
    with pytest.raises(E.ExportError, match="team rule 'majority'"):
        E.only(view, "ann-c", E.Rule(team="majority"))
    _, m = E.curated(run, E.Rule(keep_lowest_percent=0, drop_flags=()), view, annotator="ann-b")
    assert m["counts"]["kept"] == 5 and m["decisions_annotator"] == "ann-b"        # P0, P3, P4, P7, P9
    assert list(m["team"]["annotators"]) == ["ann-b"]
    # the callers that pass {pair_id: Decision} or {pair_id: "keep"} are unchanged ...
    assert _outcome(run, "latest", {pid[2]: dec("keep", pid[2]), pid[4]: "drop"}) == ({2}, {4})
    _, m = E.curated(run, E.Rule(), {pid[2]: "keep"})
    assert m["team"] == {"rule": "latest", "description": "the latest decision of anyone"}
    # ... but a team rule cannot combine one decision per pair
    with pytest.raises(E.ExportError, match="needs every annotator"):
        E.select(read_scores_of(run), E.Rule(team="majority"), {pid[2]: "keep"})
    assert E.select(read_scores_of(run), E.Rule(team="majority"), {})["decision"].eq("").all()


def read_scores_of(run):
    from ches.engine.store import read_scores
    return read_scores(run)


def test_curate_api_and_cli_take_the_team_rule(team_run, tmp_path, ws, capsys):
    import ches
    from ches.engine.records import load_records as records_of
    run, db, pid = team_run
    ds = ches.curate(run, rule=E.Rule(keep_lowest_percent=0, drop_flags=(), team="unanimous_keep"), decisions=db)
    assert [p.pair_id for p in records_of(ds.to_list()).pairs] == [pid[i] for i in (0, 5, 6, 9)]
    assert json.loads(ds.info.description)["team"]["settled_by"] == dict(zip(E.SETTLED_BY, SETTLED_BY["unanimous_keep"]))
    out = tmp_path / "cli.jsonl"
    args = parser().parse_args(["export", str(run), "--out", str(out), "--decisions", str(db), "--team-rule",
                                "majority", "--keep-lowest-percent", "0", "--drop-flags", ""])
    assert args.func(args) == 0
    assert reload_ids(out) == [pid[i] for i in sorted(TEAM_OUTCOMES["majority"][0])]
    text = capsys.readouterr().out
    assert "team rule: majority" in text and "conflicts: 5 (settled by adjudication 1, team rule 2, score rule 2)" in text
    assert json.loads(E.manifest_path(out).read_text())["team"]["rule"] == "majority"
    for bad in (["--team-rule", "loudest"], ["--team-rule", "majority", "--annotator", "ann-a"]):
        with pytest.raises(SystemExit):
            parser().parse_args(["export", str(run), "--out", str(out), *bad])


def test_dataset_card_says_how_the_team_decided(team_run, tmp_path):
    from ches.review.team_rules import TeamView
    from ches.review.hub_export import export_hf
    run, db, _ = team_run
    m = export_hf(run, E.Rule(team="adjudicated"), TeamView.read(db), tmp_path / "ds")
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "- **team rule**: adjudicated (only settled decisions" in card
    assert "- **decisions by annotator**: `ann-a`: keep 6, drop 2, flag 1; `ann-b`: keep 5, drop 4, flag 0" in card
    assert "- **conflicts**: 5 (1 by adjudication, 0 by the team rule, 4 by the score rule)" in card
    assert "`ann-a` / `ann-b` 0.030303 on 8 shared" in card and "Krippendorff's alpha 0.0816327" in card
    import yaml
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["ches"]["team"] == m["team"] and front["ches"]["team"]["alpha"] == pytest.approx(4 / 49)


def test_a_curation_check_is_the_same_whichever_team_rule_gave_its_decisions(team_run):
    from ches.review.probe.check import CheckSettings, check_key
    run, _, _ = team_run
    cs = CheckSettings(n=4, seeds=2, batch_size=2, lr=1e-4, beta=0.1)
    assert check_key(run, E.Rule(), "d", cs) == check_key(run, E.Rule(team="majority"), "d", cs)
    assert check_key(run, E.Rule(), "d", cs) != check_key(run, E.Rule(keep_lowest_percent=50), "d", cs)
    old = {k: v for k, v in E.Rule().as_dict().items() if k != "team"}      # a check stored before team rules
    assert E.score_rule(old) == E.score_rule(E.Rule(team="any_drop").as_dict())


def test_curate_page_team_rule_changes_the_preview(workspace_env, flagged_run):
    """Curate & export: the team rule select changes the counts. Kept by the score rule: low[0..2];
    low[0] both drop (agreed), low[1] ann-a keep then ann-b drop (conflict), low[2] ann-a drop (single).
    latest drops all three; majority low[0], low[2]; adjudicated low[0] only (low[1] falls to the score rule)."""
    from ches import workspace as wsp
    from ches.engine import store
    t = store.read_scores(flagged_run)
    low = t.loc[t["flags"] == ""].sort_values("ln_ches")["pair_id"].tolist()
    db = wsp.workspace(workspace_env.workspace).decisions
    for pid, ann, value in ((low[0], "ann-a", "drop"), (low[0], "ann-b", "drop"), (low[1], "ann-a", "keep"),
                            (low[1], "ann-b", "drop"), (low[2], "ann-a", "drop")):
        decisions.record(db, pid, value, annotator=ann)
    at = open_app("pages/export.py", flagged_run, timeout=60)
    overridden = {}
    for rule in ("latest", "majority", "adjudicated"):
        at.selectbox(key="export_team_rule").set_value(rule).run()
        assert not at.exception, [e.value for e in at.exception]
        overridden[rule] = int(next(m.value for m in at.metric if m.label == "Overridden by decisions"))
    assert overridden == {"latest": 3, "majority": 2, "adjudicated": 1}
    label = next(e.label for e in at.expander if "conflict(s)" in e.label)
    assert label == "1 conflict(s) among annotators on this run: 0 by adjudication, 0 by the team rule, 1 by the score rule"
    assert [b.proto.label for b in at.get("download_button")] == ["Download the decision log"]
