"""ches.engine.files and formats against malformed and hostile input: a committed corpus, monsters, and fuzzing.

The loader's promise: a Dataset (good rows kept, one clear RowError per bad row) or, for a file that
cannot be read as a whole, a DataError. Never any other exception.
"""
from __future__ import annotations

import gzip
import json
import re
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ches.engine.files import load_bytes, load_dataset
from ches.engine.formats import FORMATS
from ches.engine.records import load_records
from ches.engine.pairs import DataError, Dataset, make_pair_id, to_trl

CORPUS = Path(__file__).parent / "malformed"

# file -> (good pairs, {1-based row: substring of its error}) or the substring of the file's DataError
MANIFEST: dict[str, tuple[int, dict[int, str]] | str] = {
    "alpacafarm_bad.jsonl": (1, {2: "'preference' must be 1 or 2, got int 3", 3: "got str 'first'",
                                 4: "'output_1' must be a string, got null", 5: "'input' must be a string, got int",
                                 6: "got bool True"}),
    "array_of_non_objects.json": "no row is a JSON object",
    "blank_lines.jsonl": (2, {5: "'chosen' must be a string or a list of messages, got int"}),
    "bom.jsonl": (2, {2: "invalid JSON: Expecting value (column 44)"}),
    "broken_json.jsonl": (2, {2: "invalid JSON: Expecting ',' delimiter (column 31)",
                              4: "invalid JSON: Unterminated string"}),
    "ches_flat_bad.json": (1, {2: "'query' message 1 must be an object, got str", 3: "missing key 'rejected'",
                               4: "expected a JSON object, got int"}),
    "content_not_string.jsonl": (1, {1: "'prompt' message 1 'content' must be a string, got list",
                                     2: "'prompt' message 1 'role' must be a string, got int",
                                     4: "'chosen' message 1 'content' must be a string, got null"}),
    "control_chars.jsonl": (2, {2: "invalid JSON: Invalid control character"}),
    "crlf.jsonl": (3, {3: "missing keys 'chosen', 'rejected'"}),
    "deep_but_legal.jsonl": (1, {2: "'chosen' message 1 must be an object, got list",
                                 3: "'prompt' message 1 'content' must be a string, got dict"}),
    "duplicate_keys.jsonl": (2, {2: "'prompt' must be a string or a list of messages, got int"}),  # last key wins
    "empty.jsonl": "the file is empty",
    "empty_messages.jsonl": (1, {2: "'chosen' has no assistant message", 3: "'rejected' has no assistant message"}),
    "header_only.csv": "no rows",
    "hh_malformed.jsonl": (2, {2: "'chosen' has no '\\n\\nAssistant:' turn",
                               3: "'chosen' has text before the first 'Human:' turn",
                               4: "'rejected' must be a string, got list"}),
    "html_payloads.jsonl": (2, {3: "'chosen' must be a string or a list of messages, got dict"}),
    "huge_integer.jsonl": (1, {2: "invalid JSON: Exceeds the limit"}),
    "invalid_utf8.csv": (2, {2: "invalid UTF-8"}),
    "invalid_utf8.jsonl": (3, {2: "invalid UTF-8 at byte 16", 3: "invalid UTF-8 at byte 13"}),
    "jsonl_as_json.json": (2, {2: "missing keys 'chosen', 'rejected'"}),
    "lone_surrogate.jsonl": (2, {2: "unpaired surrogate"}),
    "message_not_object.jsonl": (1, {1: "'prompt' message 1 must be an object, got str",
                                     3: "'chosen' message 2 must be an object, got null"}),
    "missing_fields.jsonl": (2, {2: "missing key 'rejected'", 3: "missing keys 'prompt', 'chosen', 'rejected'",
                                 4: "missing keys 'chosen', 'rejected'"}),
    "mixed_formats.jsonl": (1, {2: "'chosen' has no '\\n\\nAssistant:' turn", 3: "'chosen' must be a string, got list"}),
    "nan.csv": (3, {3: "expected 3 fields, got 2", 5: "expected 3 fields, got 4"}),
    "no_assistant_turn.jsonl": (1, {2: "'chosen' has no assistant message", 3: "'rejected' has no assistant message"}),
    "non_object_lines.jsonl": (1, {1: "expected a JSON object, got list", 2: "got str", 4: "got int", 5: "got list"}),
    "nulls.jsonl": (2, {2: "'prompt' must be a string or a list of messages, got null",
                        3: "'chosen' must be a string or a list of messages, got null",
                        4: "expected a JSON object, got null"}),
    "numbers_for_strings.jsonl": (1, {2: "'question' must be a string, got float",
                                      3: "'answer_matching_behavior' must be a string, got int",
                                      4: "'answer_not_matching_behavior' must be a string, got list"}),
    "openai_bad.jsonl": (1, {2: "'input' must be an object with a 'messages' list, got str", 3: "got dict",
                             4: "'preferred_output' must end with an assistant message, ends with 'user'"}),
    "prompt_mismatch.jsonl": (2, {3: "'rejected' must be a list of messages, got str"}),
    "role_missing.jsonl": (1, {1: "'prompt' message 1 has no 'role'", 2: "'chosen' message 1 has no 'content'"}),
    "trailing_user_turn.jsonl": (1, {1: "'chosen' must end with an assistant message, ends with 'user'"}),
    "truncated.json": "invalid JSON",
    "unknown_keys.jsonl": "no known format has the columns {'text', 'label'}. Map three of them",
    "utf16.jsonl": "row 1: invalid UTF-8",
    "whitespace_only.jsonl": "the file is empty",
    "wrong_container.json": "expected a JSON array of rows or an object with a list under 'data'",
    "wrong_types.jsonl": (2, {2: "'chosen' must be a string or a list of messages, got int",
                              3: "'rejected' must be a string or a list of messages, got null",
                              4: "'prompt' must be a string or a list of messages, got dict",
                              5: "'rejected' must be a string or a list of messages, got bool"}),
}


def check(ds: Dataset) -> Dataset:
    """Invariants every loaded Dataset keeps."""
    assert ds.format in FORMATS
    for p in ds.pairs:
        assert re.fullmatch(r"[0-9a-f]{16}", p.pair_id) and p.row >= 1
        assert isinstance(p.chosen, str) and isinstance(p.rejected, str)
        assert all(set(m) == {"role", "content"} and all(isinstance(v, str) for v in m.values())
                   for m in p.prompt + (p.rejected_prompt or ()))
    assert all(str(e).startswith(f"row {e.row}: ") for e in ds.errors)
    assert [e.row for e in ds.errors] == sorted(e.row for e in ds.errors)
    assert not {p.row for p in ds.pairs} & {e.row for e in ds.errors}
    return ds


def test_corpus_is_big_and_fully_described():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(MANIFEST)
    assert len(MANIFEST) >= 30


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file(name):
    expected = MANIFEST[name]
    if isinstance(expected, str):
        with pytest.raises(DataError) as info:
            load_dataset(CORPUS / name)
        assert expected in str(info.value) and name in str(info.value)
        return
    n_good, errors = expected
    ds = check(load_dataset(CORPUS / name))
    assert len(ds.pairs) == n_good
    assert [e.row for e in ds.errors] == sorted(errors)
    for e in ds.errors:
        assert errors[e.row] in e.reason, str(e)


def test_corpus_payloads_survive_verbatim():
    html = load_dataset(CORPUS / "html_payloads.jsonl").pairs
    assert html[0].prompt[0]["content"] == "<script>alert(1)</script>"
    assert (html[0].chosen, html[0].rejected) == ("<img src=x onerror=alert(1)>", "[click](javascript:alert(1))")
    ctrl = load_dataset(CORPUS / "control_chars.jsonl").pairs[0]
    assert "\x00" in ctrl.prompt[0]["content"] and ctrl.chosen == "tab\there\u200b\u202e"
    crlf = load_dataset(CORPUS / "crlf.jsonl").pairs[2]
    assert (crlf.prompt[0]["content"], crlf.chosen) == ("line1\r\nline2", "a\r\n")  # content is never rewritten
    assert load_dataset(CORPUS / "duplicate_keys.jsonl").pairs[0].chosen == "second"
    nan = load_dataset(CORPUS / "nan.csv").pairs
    assert [(p.chosen, p.rejected) for p in nan[:2]] == [("NaN", "0"), ("None", "NA")]  # text, not missing
    assert nan[2].flags == ("empty_chosen", "empty_rejected", "identical")
    assert load_dataset(CORPUS / "invalid_utf8.jsonl").pairs[2].prompt[0]["content"] == "café ☕ 日本"
    csv_pairs = load_dataset(CORPUS / "invalid_utf8.csv").pairs
    assert (csv_pairs[1].prompt[0]["content"], csv_pairs[1].rejected) == ("multi\nline", 'b "quoted"')
    assert load_dataset(CORPUS / "lone_surrogate.jsonl").pairs[1].chosen == "\U0001f600"
    mismatch = load_dataset(CORPUS / "prompt_mismatch.jsonl").pairs
    assert all(p.flags == ("prompt_mismatch",) and p.rejected_prompt for p in mismatch)


# ---------------------------------------------------------------- generated monsters (not committed)
def nested(depth: int, leaf, kind: str):
    """depth levels of lists or dicts, built without recursion."""
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"role": "user", "content": leaf}
    return leaf


GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}


def test_one_megabyte_response_loads(tmp_path):
    big = "x" * 1_000_000 + " end"
    rows = [GOOD, {"prompt": "p", "chosen": big, "rejected": "b"}, "{" + "x" * 1_000_000]
    (tmp_path / "big.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    ds = check(load_dataset(tmp_path / "big.jsonl"))
    assert ds.pairs[1].chosen == big and [str(e)[:22] for e in ds.errors] == ["row 3: invalid JSON: E"]
    (tmp_path / "big.csv").write_text(f"prompt,chosen,rejected\np,{big},b\np,a,b\n")
    assert load_dataset(tmp_path / "big.csv").pairs[0].chosen == big  # beyond csv's 128 KiB default
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "big.parquet")
    assert load_dataset(tmp_path / "big.parquet").pairs[1].chosen == big


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_ten_thousand_levels_of_nesting(tmp_path, kind):
    deep = nested(10_000, "hi", kind)
    if kind == "list":
        line = '{"prompt": "p", "chosen": "a", "rejected": "b", "deep": ' + "[" * 10_000 + "]" * 10_000 + "}"
    else:
        line = '{"prompt": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + ', "chosen": "a", "rejected": "b"}'
    (tmp_path / "deep.jsonl").write_text(json.dumps(GOOD) + "\n" + line + "\n")
    ds = check(load_dataset(tmp_path / "deep.jsonl"))
    assert len(ds.pairs) == 1 and [str(e) for e in ds.errors] == ["row 2: invalid JSON: nested too deeply"]
    (tmp_path / "deep.json").write_text("[" + line + "]")
    with pytest.raises(DataError, match="nested too deeply"):
        load_dataset(tmp_path / "deep.json")
    (tmp_path / "deep.csv").write_text('prompt,chosen,rejected\np,"' + "[" * 10_000 + '",b\n')
    assert load_dataset(tmp_path / "deep.csv").pairs[0].chosen == "[" * 10_000  # not JSON: stays text
    # already-parsed structures that deep (no JSON parser in the way): still one RowError each; a record
    # too deep to be stored in a run is refused when loading, not after the GPU work
    records = [GOOD, {"prompt": deep, "chosen": "a", "rejected": "b"}, {"prompt": [deep], "chosen": "a", "rejected": "b"},
               {"prompt": "p", "chosen": [deep], "rejected": "b"}, {**GOOD, "meta": deep}]
    ds = check(load_records(records))
    assert len(ds.pairs) == 1 and [e.row for e in ds.errors] == [2, 3, 4, 5]
    assert ds.errors[3].reason == "the record is nested too deeply to be stored"


def test_extremely_long_line_and_many_rows(tmp_path):
    rows = [json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) for i in range(20_000)]
    rows[7] = "[" + "1," * 1_000_000 + "1]"
    (tmp_path / "long.jsonl").write_text("\n".join(rows))
    ds = check(load_dataset(tmp_path / "long.jsonl"))
    assert len(ds.pairs) == 19_999 and [str(e) for e in ds.errors] == ["row 8: expected a JSON object, got list"]


def test_broken_containers(tmp_path):
    cases = {"bad.jsonl.gz": (gzip.compress(b'{"prompt": "p"}')[:-9], "not a valid gzip file"),
             "bad.parquet": (b"PAR1 not really parquet PAR1", "not a readable Parquet file"),
             "bad.json": (b"\xff\xfe[1]", "not valid UTF-8"),
             "data.xlsx": (b"PK\x03\x04", "unsupported file type"),
             "bom_only.jsonl": (b"\xef\xbb\xbf", "the file is empty")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=message):
            load_dataset(tmp_path / name)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataError, match="no data files"):
        load_dataset(tmp_path / "empty_folder")
    with pytest.raises(DataError, match="expected an iterable"):
        load_records(42)
    with pytest.raises(DataError, match="expected bytes"):
        load_bytes("text", "a.jsonl")


def test_parquet_with_wrong_column_types(tmp_path):
    table = pa.table({"prompt": ["p", "q", None], "chosen": [1, 2, 3], "rejected": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "t.parquet")
    ds = check(load_dataset(tmp_path / "t.parquet", format="trl_standard"))
    assert ds.pairs == [] and ds.errors[2].reason == "'prompt' must be a string or a list of messages, got null"
    assert ds.errors[0].reason == "'chosen' must be a string or a list of messages, got int"


# ---------------------------------------------------------------- fuzzing: Dataset or DataError, nothing else
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = sorted({k for keys in [("prompt", "chosen", "rejected", "query", "instruction", "input", "output_1", "output_2",
                                "preference", "preferred_output", "non_preferred_output", "question",
                                "answer_matching_behavior", "answer_not_matching_behavior", "role", "content",
                                "messages", "data")] for k in keys})
text = st.text(alphabet=st.sampled_from(string.printable + "é☕\u0000\u202e") | st.characters(), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text
    | st.sampled_from(["assistant", "user", "\n\nHuman: hi\n\nAssistant: yo", "1", "2"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | text, children, max_size=6),
    max_leaves=25)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text})
conversation = st.tuples(st.lists(message, max_size=3), text).map(
    lambda t: t[0] + [{"role": "assistant", "content": t[1]}])
hh_text = st.lists(st.tuples(st.sampled_from(["Human", "Assistant"]), text), min_size=1, max_size=4).map(
    lambda turns: "".join(f"\n\n{role}: {content}" for role, content in turns))
KEY_SETS = [("prompt", "chosen", "rejected"), ("chosen", "rejected"), ("query", "chosen", "rejected"),
            ("instruction", "input", "output_1", "output_2", "preference"),
            ("input", "preferred_output", "non_preferred_output"),
            ("question", "answer_matching_behavior", "answer_not_matching_behavior")]
PLAUSIBLE = {"preference": st.sampled_from([1, 2, "1", " 2", 2.0, 3, True, None]),
             "input": st.fixed_dictionaries({"messages": st.lists(message, max_size=3)}) | text | st.none()}
value = text | hh_text | conversation | st.lists(message, max_size=3) | json_values
rowish = st.sampled_from(KEY_SETS).flatmap(lambda keys: st.fixed_dictionaries(
    {k: PLAUSIBLE.get(k, value) for k in keys}, optional={k: value for k in KEYS if k not in keys}))

def outcome(call) -> Dataset | None:
    try:
        return check(call())
    except DataError:
        return None


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz"]))
def test_arbitrary_bytes_as_files(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    path.write_bytes(data)
    outcome(lambda: load_dataset(path))


@pytest.mark.slow
@FUZZ
@given(lines=st.lists(st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()), max_size=6),
       sep=st.sampled_from([b"\n", b"\r\n", b","]), suffix=st.sampled_from([".jsonl", ".csv", ".json"]))
def test_arbitrary_lines_as_uploads(lines, sep, suffix):
    outcome(lambda: load_bytes(sep.join(lines), "upload" + suffix))


@FUZZ
@given(value=json_values, fmt=st.none() | st.sampled_from(sorted(FORMATS)))
def test_arbitrary_json_values(value, fmt):
    outcome(lambda: load_records(value, format=fmt))
    outcome(lambda: load_records([value], format=fmt))
    outcome(lambda: load_bytes(json.dumps(value).encode(), "v.json", format=fmt))
    outcome(lambda: load_bytes(json.dumps(value).encode(), "v.jsonl", format=fmt))


@pytest.mark.slow
@FUZZ
@given(rows=st.lists(rowish, min_size=1, max_size=5), fmt=st.none() | st.sampled_from(sorted(FORMATS)))
def test_rowlike_records_and_round_trip(rows, fmt):
    ds = outcome(lambda: load_records(rows, format=fmt))
    if ds and ds.pairs:
        back = check(load_records([to_trl(p) for p in ds.pairs]))
        assert [p.pair_id for p in back.pairs] == [p.pair_id for p in ds.pairs]
        assert all(p.pair_id == make_pair_id(p.prompt, p.chosen, p.rejected, p.rejected_prompt) for p in back.pairs)
