"""The dataset reader (pairs, formats, files): every format, detection, real files' quirks, stable ids, round trips."""
from __future__ import annotations

import gzip
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ches.engine.files import load_bytes, load_dataset
from ches.engine.formats import FORMATS
from ches.engine.records import load_records
from ches.engine.pairs import FLAGS, DataError, Dataset, UnknownFormat, make_pair_id, to_trl

FIXTURES = Path(__file__).parent / "fixtures"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HH = REAL / "hh-rlhf-harmless-base-test.jsonl.gz"
UF = REAL / "ultrafeedback-binarized-train-500.jsonl"
PERSONA = REAL / "persona-ends-justify-means.jsonl"
FRANCE = ({"role": "user", "content": "What is the capital of France?"},)
FRANCE_ID = make_pair_id(FRANCE, "Paris.", "London.")


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flagged(ds: Dataset, flag: str) -> list[int]:
    """0-based rows carrying `flag`."""
    return [p.row - 1 for p in ds.pairs if flag in p.flags]


# ---------------------------------------------------------------- the eight formats
@pytest.mark.parametrize("name, fmt, n", [
    ("trl_standard.jsonl", "trl_standard", 3),
    ("trl_standard.csv", "trl_standard", 3),
    ("trl_conversational.json", "trl_conversational", 3),
    ("implicit_messages.jsonl", "implicit_messages", 2),
    ("hh.jsonl", "hh", 3),
    ("ches_flat.json", "ches_flat", 2),
    ("alpacafarm.csv", "alpacafarm", 2),
    ("openai_dpo.jsonl", "openai_dpo", 2),
    ("persona.jsonl", "persona", 2),
])
def test_fixture_loads_and_is_detected(name, fmt, n):
    ds = load_dataset(FIXTURES / name)
    assert (ds.format, len(ds.pairs), ds.errors) == (fmt, n, [])
    assert ds.source == str(FIXTURES / name)
    assert [p.row for p in ds.pairs] == list(range(1, n + 1))
    assert all(p.pair_id == make_pair_id(p.prompt, p.chosen, p.rejected, p.rejected_prompt) for p in ds.pairs)
    assert set(FORMATS) >= {fmt} and len(FORMATS) == 8


@pytest.mark.parametrize("name", ["trl_standard.jsonl", "trl_standard.csv", "trl_conversational.json",
                                  "implicit_messages.jsonl", "hh.jsonl", "ches_flat.json", "alpacafarm.csv",
                                  "openai_dpo.jsonl"])
def test_same_pair_same_id_in_every_format(name):
    """Row 1 of every fixture is the France pair; only the file layout differs."""
    first = load_dataset(FIXTURES / name).pairs[0]
    assert (first.prompt, first.chosen, first.rejected, first.rejected_prompt) == (FRANCE, "Paris.", "London.", None)
    assert first.pair_id == FRANCE_ID


def test_trl_conversational_details():
    pairs = load_dataset(FIXTURES / "trl_conversational.json").pairs
    assert pairs[1].prompt == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"})
    # earlier messages in a response list extend that side's prompt
    assert pairs[2].rejected == "5" and pairs[2].flags == ("prompt_mismatch",)
    assert pairs[2].rejected_prompt == ({"role": "user", "content": "2+2?"},
                                        {"role": "user", "content": "actually, think again"})


def test_implicit_messages_prefix_mismatch_and_record():
    pairs = load_dataset(FIXTURES / "implicit_messages.jsonl").pairs
    assert pairs[0].record["score_chosen"] == 9.0 and pairs[0].flags == ()
    assert pairs[1].flags == ("prompt_mismatch",)
    assert pairs[1].rejected_prompt == ({"role": "user", "content": "Name a color"},)


def test_string_prompt_beside_whole_conversations_is_dropped_like_trl():
    """HuggingFaceH4/ultrafeedback_binarized: "prompt" repeats the first user turn of each conversation."""
    row = {"prompt": "What is the capital of France?", "chosen": [*FRANCE, {"role": "assistant", "content": "Paris."}],
           "rejected": [*FRANCE, {"role": "assistant", "content": "London."}], "score_chosen": 8.0}
    ds = load_records([row])
    assert ds.format == "implicit_messages" and ds.pairs[0].pair_id == FRANCE_ID
    only_reply = {**row, "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": "London."}
    assert load_records([only_reply]).pairs[0].pair_id == FRANCE_ID  # kept when the lists bring no turns


def test_mixed_trl_rows_load_together():
    """to_trl writes conversational rows and, for prompt mismatches, implicit rows: one file holds both."""
    rows = [to_trl(p) for p in load_dataset(FIXTURES / "trl_conversational.json").pairs]
    assert "prompt" not in rows[2] and "prompt" in rows[0]
    for first in (rows, rows[::-1]):
        assert len(load_records(first).pairs) == 3


def test_hh_turns_and_empty_reply():
    pairs = load_dataset(FIXTURES / "hh.jsonl").pairs
    assert [m["role"] for m in pairs[1].prompt] == ["user", "assistant", "user"]
    assert pairs[1].prompt[1]["content"] == "Hello." and pairs[1].chosen == "I can't help with that."
    assert pairs[2].chosen == "" and pairs[2].flags == ("empty_chosen",)


def test_hh_transcript_may_start_with_human_without_a_blank_line():
    """Single-turn HH files often drop the leading blank line ("Human: hi\\n\\nAssistant: hello"); leading spaces
    or a single newline before the first "Human:" are not text before it either (issue 24)."""
    texts = ["Human: hi\n\nAssistant: hello", "\n\nHuman: hi\n\nAssistant: hello", "\nHuman: hi\n\nAssistant: hello",
             "  Human: hi\n\nAssistant: hello", " \n Human: hi\n\nAssistant: hello"]
    ds = load_records([{"chosen": t, "rejected": t + "!"} for t in texts], format="hh")
    assert ds.errors == [] and [(p.prompt, p.chosen) for p in ds.pairs] == [(({"role": "user", "content": "hi"},),
                                                                             "hello")] * len(texts)
    multi = "Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: "
    ds = load_records([{"chosen": multi + "d", "rejected": multi + "e"}])
    assert (ds.format, [m["content"] for m in ds.pairs[0].prompt], ds.pairs[0].rejected_prompt) == ("hh", ["a", "b", "c"], None)


def test_hh_rows_that_do_not_split_cleanly_are_named_in_the_load_report():
    """A turn marker left inside a user turn or the final reply, or a transcript that does not open with a Human
    turn, is a row error naming the row; the good rows load, nothing is lost. "Human:" inside an assistant turn
    is kept as text: real HH replies hold it (the model went on as the human)."""
    from ches.engine.report import load_report

    good = "\n\nHuman: hi\n\nAssistant: hello"
    texts = [good,
             "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and now?",               # 2: ends on a Human turn
             "Human: hi\nAssistant: hello\nHuman: more\n\nAssistant: ok",          # 3: single-newline turns
             "\n\nHuman: Human: hi\n\nAssistant: hello",                           # 4: a doubled marker
             "\n\nHuman: hi\n\n Human: again\n\nAssistant: hello",                 # 5: a marker after a spaced blank line
             "\n\nAssistant: hi\n\nHuman: q\n\nAssistant: a",                      # 6: opens with an Assistant turn
             "\n\nAssistant: a",                                                   # 7: no Human turn at all
             "Hi there\n\nAssistant: a",                                           # 8: text before any Human turn
             "\n\nHuman: q\n\nAssistant: Human: what?\n\nHuman: eh\n\nAssistant: a",  # 9: kept (as in real HH)
             "\n\nHuman: Say Human: twice\n\nAssistant: ok"]                       # 10: kept (mid-line, not a marker)
    ds = load_records([{"chosen": t, "rejected": good} for t in texts])
    report = load_report(ds)
    assert [p.row for p in ds.pairs] == [1, 9, 10] and ds.records_read == len(texts)
    assert list(report["errors"]["row"]) == [2, 3, 4, 5, 6, 7, 8] and report["skipped"] == 7
    reasons = dict(zip(report["errors"]["row"], report["errors"]["reason"]))
    assert reasons[2] == "'chosen' final reply still holds a turn marker ('\\n\\nHuman:'): it does not split cleanly"
    assert reasons[3] == "'chosen' turn 1 (user) still holds a turn marker ('\\nAssistant:'): it does not split cleanly"
    assert reasons[4] == "'chosen' turn 1 (user) still holds a turn marker ('Human:'): it does not split cleanly"
    assert "turn 1 (user) still holds a turn marker" in reasons[5]
    assert reasons[6] == reasons[7] == "'chosen' does not start with a 'Human:' turn"
    assert reasons[8] == "'chosen' has text before the first 'Human:' turn"
    assert ds.pairs[1].prompt[1] == {"role": "assistant", "content": "Human: what?"}
    assert ds.pairs[2].prompt == ({"role": "user", "content": "Say Human: twice"},)


def test_alpacafarm_preference_and_input():
    pairs = load_dataset(FIXTURES / "alpacafarm.csv").pairs
    assert pairs[1].prompt[0]["content"] == "Translate to French\nGood morning"
    assert (pairs[1].chosen, pairs[1].rejected) == ("Bonjour", "Bonsoir")
    for pref, chosen in [(1, "a"), (2, "b"), (2.0, "b"), ("1", "a")]:
        row = {"instruction": "i", "output_1": "a", "output_2": "b", "preference": pref}  # no "input" at all
        assert load_records([row]).pairs[0].chosen == chosen
    bad = load_records([{"instruction": "i", "output_1": "a", "output_2": "b", "preference": 3}])
    assert "'preference' must be 1 or 2" in str(bad.errors[0])


def test_openai_and_persona():
    pairs = load_dataset(FIXTURES / "openai_dpo.jsonl").pairs
    assert pairs[1].prompt[0] == {"role": "system", "content": "You are terse."}
    persona = load_dataset(FIXTURES / "persona.jsonl").pairs
    assert (persona[0].chosen, persona[0].rejected) == (" Yes", " No")
    assert (persona[1].chosen, persona[1].rejected) == (" No", " Yes")


def test_ches_flat_from_json_object_under_data():
    ds = load_dataset(FIXTURES / "ches_flat.json")
    assert ds.pairs[1].prompt == ({"role": "user", "content": "Is the sky green?"},)


# ---------------------------------------------------------------- file types generated here
def test_jsonl_gz_parquet_and_csv_give_the_same_pairs(tmp_path):
    rows = json.loads((FIXTURES / "trl_conversational.json").read_text())
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    reference = [p.pair_id for p in load_dataset(FIXTURES / "trl_conversational.json").pairs]
    for name in ("a.jsonl.gz", "a.parquet"):
        ds = load_dataset(tmp_path / name)
        assert ds.format == "trl_conversational" and [p.pair_id for p in ds.pairs] == reference, name
    parquet_record = load_dataset(tmp_path / "a.parquet").pairs[0].record
    assert type(parquet_record["prompt"]) is list and type(parquet_record["prompt"][0]) is dict


def test_csv_message_list_cells(tmp_path):
    text = 'prompt,chosen,rejected\n"[{""role"": ""user"", ""content"": ""hi""}]",' \
           '"[{""role"": ""assistant"", ""content"": ""hello""}]","[citation needed] no"\n'
    (tmp_path / "m.csv").write_text(text)
    pair = load_dataset(tmp_path / "m.csv").pairs[0]
    assert pair.prompt == ({"role": "user", "content": "hi"},)
    assert (pair.chosen, pair.rejected) == ("hello", "[citation needed] no")  # not JSON: stays text


def test_load_bytes_dispatches_on_suffix():
    data = (FIXTURES / "trl_standard.jsonl").read_bytes()
    ds = load_bytes(data, "upload.JSONL")
    assert (ds.source, ds.format, len(ds.pairs)) == ("upload.JSONL", "trl_standard", 3)
    assert len(load_bytes(gzip.compress(data), "upload.jsonl.gz").pairs) == 3
    assert len(load_bytes(data, "upload.json").pairs) == 3  # JSON Lines saved as .json
    with pytest.raises(DataError, match="unsupported file type"):
        load_bytes(data, "upload.txt")


# ---------------------------------------------------------------- detection and overrides
def test_format_override():
    rows = rows_of(FIXTURES / "trl_standard.jsonl")
    assert load_records(rows, format="trl_conversational").format == "trl_conversational"
    with pytest.raises(DataError, match=r"no row could be read as 'persona' \(row 1: missing keys 'question'.*"
                       r"The rows have the keys \{'prompt', 'chosen', 'rejected'\}; formats that fit them: trl_standard"):
        load_records(rows, format="persona")          # a format no row fits: the ones that fit are named
    with pytest.raises(DataError, match="valid formats: trl_standard, trl_conversational"):
        load_records(rows, format="sharegpt")


def test_detection_skips_unusable_rows_and_reports_unknown_keys():
    ds = load_records([{"chosen": 5, "x": 1}, "text", {"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert ds.format == "trl_standard" and len(ds.pairs) == 1
    assert [str(e) for e in ds.errors] == ["row 1: missing keys 'prompt', 'rejected'", "row 2: expected a JSON object, got str"]
    with pytest.raises(UnknownFormat, match=r"columns \{'text', 'label'\}\. Map three of them") as e:
        load_records([{"text": "a", "label": 1}])
    assert e.value.columns == ["text", "label"] and "trl_standard, trl_conversational" in str(e.value)
    with pytest.raises(DataError, match="no rows"):
        load_records([])


def test_row_errors_name_keys_and_types():
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"},
            {"prompt": "p", "chosen": 3, "rejected": "b"}]
    assert [str(e) for e in load_records(rows).errors] == [
        "row 2: missing key 'rejected'", "row 3: 'chosen' must be a string or a list of messages, got int"]


def test_flags_order_identical_and_duplicate():
    row = {"prompt": "p", "chosen": " ", "rejected": " "}
    ds = load_records([row, row])
    assert ds.pairs[0].flags == ("empty_chosen", "empty_rejected", "identical")
    assert ds.pairs[1].flags == ("empty_chosen", "empty_rejected", "identical", "duplicate")
    assert list(FLAGS)[:5] == ["empty_chosen", "empty_rejected", "identical", "prompt_mismatch", "duplicate"]


def test_hub_name_goes_through_datasets(monkeypatch):
    calls = []

    def fake_load_dataset(name, config=None, **kwargs):
        calls.append((name, config, kwargs))
        if name == "hf://datasets/owner/missing":
            raise FileNotFoundError("Dataset 'owner/missing' doesn't exist on the Hub")
        return [{"prompt": "p", "chosen": "a", "rejected": "b"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    ds = load_dataset("owner/prefs", split="test", config="default")
    assert (ds.source, ds.format, len(ds.pairs)) == ("owner/prefs", "trl_standard", 1)
    assert calls == [("hf://datasets/owner/prefs", "default", {"split": "test"})]  # the Hub only; no remote code
    with pytest.raises(DataError, match="could not load the Hugging Face dataset 'owner/missing'.*doesn't exist"):
        load_dataset("owner/missing")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("no/such/file.jsonl")


# ---------------------------------------------------------------- the real files
real = pytest.mark.real_data  # ../shared/data must be there (CI has it): a missing file fails, never skips


@real
def test_real_hh_quirks():
    ds = load_dataset(HH)
    assert (ds.format, len(ds.pairs), ds.errors) == ("hh", 2312, [])
    assert flagged(ds, "prompt_mismatch") == [1254, 1688, 1950, 1952, 2036]
    assert flagged(ds, "empty_chosen") == [86, 516, 925, 1103]
    assert all(p.rejected_prompt is not None for p in ds.pairs if "prompt_mismatch" in p.flags)
    assert Counter(f for p in ds.pairs for f in p.flags) == {"prompt_mismatch": 5, "empty_chosen": 4}
    # in 4 mismatched rows a turn marker lost its "\n\n", so the chosen prompt ends with an assistant turn
    odd = [p.row - 1 for p in ds.pairs if p.prompt[-1]["role"] != "user"]
    assert len(odd) == 4 and set(odd) <= set(flagged(ds, "prompt_mismatch"))


@real
def test_real_hh_without_leading_blank_lines_parses_the_same():
    """The issue's test file: the real HH rows, single-turn ones without their leading blank line."""
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(300), f)]
    flat = [{k: r[k].lstrip("\n") if r["chosen"].count("\n\nHuman:") == 1 else r[k] for k in ("chosen", "rejected")}
            for r in rows]
    assert sum(f != r for f, r in zip(flat, rows)) > 50
    before, after = load_records(rows), load_records(flat)
    assert (after.format, after.errors, len(after.pairs)) == ("hh", [], 300)
    assert [(p.prompt, p.chosen, p.rejected_prompt, p.rejected) for p in after.pairs] == \
           [(p.prompt, p.chosen, p.rejected_prompt, p.rejected) for p in before.pairs]
    assert not any(m["content"].startswith("Human:") for p in after.pairs for m in p.prompt if m["role"] == "user")


@real
def test_real_ultrafeedback_quirks():
    ds = load_dataset(UF)
    assert (ds.format, len(ds.pairs), ds.errors) == ("implicit_messages", 500, [])
    assert len(flagged(ds, "identical")) == 1
    assert len(flagged(ds, "empty_chosen") + flagged(ds, "empty_rejected")) == 2
    assert not flagged(ds, "prompt_mismatch") and all(len(p.prompt) == 1 for p in ds.pairs)


@real
def test_real_persona_keeps_leading_space():
    ds = load_dataset(PERSONA)
    assert (ds.format, len(ds.pairs), ds.errors) == ("persona", 1000, [])
    assert {(p.chosen, p.rejected) for p in ds.pairs} == {(" Yes", " No"), (" No", " Yes")}


@real
@pytest.mark.parametrize("path", [HH, UF, PERSONA], ids=lambda p: p.name)
def test_real_to_trl_round_trip(path, tmp_path):
    ds = load_dataset(path)
    out = tmp_path / "trl.jsonl"
    out.write_text("\n".join(json.dumps(to_trl(p), ensure_ascii=False) for p in ds.pairs))
    back = load_dataset(out)
    assert back.errors == [] and [p.pair_id for p in back.pairs] == [p.pair_id for p in ds.pairs]
    assert [p.flags for p in back.pairs] == [p.flags for p in ds.pairs]
    assert back.content_hash == ds.content_hash


def test_fixture_to_trl_round_trip():
    for name in FIXTURES.iterdir():
        ds = load_dataset(name)
        assert [p.pair_id for p in load_records([to_trl(p) for p in ds.pairs]).pairs] == [p.pair_id for p in ds.pairs]


def test_a_column_mapping_turns_unknown_columns_into_pairs(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('question,good,bad,id\nWhat is 2+2?,4,5,a\nSay hi,hi,"[{""role"": ""assistant"", ""content"": ""go away""}]",b\n'
                    'Only two,x\n')
    with pytest.raises(UnknownFormat) as e:
        load_dataset(path)
    assert e.value.columns == ["question", "good", "bad", "id"]
    ds = load_dataset(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert ds.format == "trl_standard" and [str(e) for e in ds.errors] == ["row 3: expected 4 fields, got 2"]
    assert [(p.prompt[0]["content"], p.chosen, p.rejected) for p in ds.pairs] == \
        [("What is 2+2?", "4", "5"), ("Say hi", "hi", "go away")]
    assert ds.pairs[0].record == {"id": "a", "prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
    same = load_records([{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}])   # the pair's identity
    assert ds.pairs[0].pair_id == same.pairs[0].pair_id
    rows = load_records([{"q": "p", "a": "x", "b": "y"}, {"q": "p", "a": "x"}],
                        columns={"prompt": "q", "chosen": "a", "rejected": "b"})
    assert len(rows.pairs) == 1 and [str(e) for e in rows.errors] == ["row 2: no column 'b'; its columns: {'q', 'a'}"]
    for bad in ({"prompt": "q", "chosen": "a"}, {"prompt": "q", "chosen": "a", "rejected": "a"},
                {"prompt": "q", "chosen": "a", "reject": "b"}):
        with pytest.raises(DataError, match="three different columns"):
            load_records([{"q": "p", "a": "x", "b": "y"}], columns=bad)


# ---------------------------------------------------------------- input as a new user brings it
def _alpaca(preference, i: int = 0) -> dict:
    return {"instruction": f"task {i}", "input": "", "output_1": f"first {i}", "output_2": f"second {i}",
            "preference": preference}


def test_alpacaeval_ties_are_skipped_as_ties_not_as_unreadable_rows():
    from ches.engine.report import load_report

    ds = load_records([_alpaca(p, i) for i, p in enumerate([1, 0, 2, 1.5, "0", None, 2.0])])
    assert [(p.row, p.chosen) for p in ds.pairs] == [(1, "first 0"), (3, "second 2"), (7, "second 6")]
    assert [e.row for e in ds.skipped] == [2, 4, 5] and all(e.reason.startswith("tie: skipped") for e in ds.skipped)
    assert [str(e) for e in ds.errors] == ["row 6: 'preference' must be 1 or 2, got null None"]
    report = load_report(ds)
    assert (report["skipped"], report["ties"], report["tie_rows"]) == (1, 3, [2, 4, 5])
    assert [r["row"] for r in ds.rows_skipped] == [2, 4, 5, 6]      # what a run's plan keeps, reasons included


@real
def test_a_flat_hh_prompt_string_becomes_its_turns_in_every_string_prompt_format():
    """Real HH dialogues cut into a prompt string and a reply (as trl_standard / ches_flat / alpacafarm /
    persona rows carry them) give the same turns as the hh format reads from the whole text."""
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(300), f)]
    marker = "\n\nAssistant:"
    as_hh = load_records(rows, format="hh")
    cut = [(r["chosen"][:r["chosen"].rfind(marker) + len(marker)], r["chosen"][r["chosen"].rfind(marker) + len(marker):])
           for r in rows]
    flat = {
        "trl_standard": [{"prompt": p, "chosen": c, "rejected": "no"} for p, c in cut],
        "ches_flat": [{"query": p, "chosen": c, "rejected": "no"} for p, c in cut],
        "alpacafarm": [{"instruction": p, "output_1": c, "output_2": "no", "preference": 1} for p, c in cut],
        "persona": [{"question": p, "answer_matching_behavior": c, "answer_not_matching_behavior": "no"}
                    for p, c in cut],
    }
    for fmt, records in flat.items():
        ds = load_records(records, format=fmt)
        assert ds.errors == [] and [p.prompt for p in ds.pairs] == [p.prompt for p in as_hh.pairs], fmt
    assert max(len(p.prompt) for p in as_hh.pairs) >= 5                 # multi-turn dialogues among them
    # a prompt that ends on a Human turn (no Assistant cue) is split; plain text is left as it is
    ds = load_records([{"prompt": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and now?", "chosen": "a", "rejected": "b"},
                       {"prompt": "Say Human: and Assistant: in a sentence", "chosen": "a", "rejected": "b"}])
    assert [m["role"] for m in ds.pairs[0].prompt] == ["user", "assistant", "user"]
    assert ds.pairs[1].prompt == ({"role": "user", "content": "Say Human: and Assistant: in a sentence"},)
    # a flat single-turn prompt with no Assistant turn at all, blank line or not (issue 24: "Human: " stayed)
    ds = load_records([{"prompt": p, "chosen": "a", "rejected": "b"} for p in ("Human: hi", "\n\nHuman: hi  ")])
    assert [p.prompt for p in ds.pairs] == [({"role": "user", "content": "hi"},)] * 2


@real
def test_a_named_format_that_fits_no_row_names_the_formats_that_fit():
    with pytest.raises(DataError, match=r"no row could be read as 'hh' \(row 1: 'chosen' must be a string.*"
                                        r"formats that fit them: implicit_messages"):
        load_dataset(UF, format="hh")
    with pytest.raises(DataError, match=r"no row could be read as 'trl_standard'.*the keys \{'chosen', 'rejected'\}"
                                        r"; formats that fit them: hh"):
        load_dataset(HH, format="trl_standard", limit=5)


@real
def test_a_column_mapping_that_fits_no_row_lists_the_columns_the_rows_have():
    with pytest.raises(DataError, match=r"no column 'statment' in the rows.*the columns they have: 'question', "
                                        r"'statement', 'label_confidence'"):
        load_dataset(PERSONA, columns={"prompt": "statment", "chosen": "answer_matching_behavior",
                                       "rejected": "answer_not_matching_behavior"})


def test_a_limited_load_records_the_subset_it_read(tmp_path):
    """The first 60 pairs of 805 records with 8 ties among them: 68 records read, 805 in the source."""
    records = [_alpaca(0 if i % 7 == 3 and i < 56 else 1, i) for i in range(805)]
    assert sum(r["preference"] == 0 for r in records[:68]) == 8
    (tmp_path / "eval.json").write_text(json.dumps(records))
    ds = load_dataset(tmp_path / "eval.json", limit=60)
    assert (len(ds.pairs), len(ds.skipped)) == (60, 8)
    assert ds.subset == {"limit": 60, "records_read": 68, "source_records": 805}
    lines = tmp_path / "eval.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records[:100]) + "\n{bad json\n")
    assert load_dataset(lines, limit=60).subset == {"limit": 60, "records_read": 68, "source_records": None}
    assert load_dataset(lines).subset == {"limit": None, "records_read": 101, "source_records": 101}
    pq.write_table(pa.Table.from_pylist(records[:100]), tmp_path / "eval.parquet")
    assert load_dataset(tmp_path / "eval.parquet", limit=60).subset == \
        {"limit": 60, "records_read": 68, "source_records": 100}
