"""ches.review.tokendiff: alignment, per-token ops, and that the token HTML escapes every dataset string."""
from __future__ import annotations

import re

import pytest

from ches.review import tokendiff as T


def test_align_covers_both_sequences_in_order():
    a, b = [1, 2, 3, 4, 5], [1, 9, 3, 4, 6, 7]
    ops = T.align(a, b)
    assert [op for op, _, _ in ops] == ["equal", "replace", "equal", "replace"]
    assert [k for _, i, _ in ops for k in i] == list(range(len(a)))
    assert [k for _, _, j in ops for k in j] == list(range(len(b)))


def test_align_does_not_junk_frequent_tokens():
    a = [7] * 300 + [1]
    b = [7] * 300 + [2]
    ops = T.align(a, b)
    assert ops[0][0] == "equal" and len(ops[0][1]) == 300   # autojunk would have discarded token 7


def test_token_ops_marks_deleted_and_inserted():
    chosen, rejected = T.token_ops([1, 2, 3], [1, 4, 3, 5])
    assert chosen == ["equal", "deleted", "equal"]
    assert rejected == ["equal", "inserted", "equal", "inserted"]
    assert T.token_ops([], [1]) == ([], ["inserted"])
    assert T.token_ops([1, 2], [1, 2]) == (["equal", "equal"], ["equal", "equal"])


def test_pair_ops_pads_the_eos_label():
    res = {"chosen_ids": [1, 2], "rejected_ids": [1, 3], "chosen_tokens": ["a", "b", "⟨eos⟩"],
           "rejected_tokens": ["a", "c", "⟨eos⟩"]}
    assert T.pair_ops(res) == (["equal", "deleted", "equal"], ["equal", "inserted", "equal"])


def test_merged_diff_interleaves_both_sides():
    out = T.merged_diff(["a", "b", "c", "E"], ["a", "x", "c", "E"], [1, 2, 3], [1, 9, 3])
    assert out == [("a", "equal"), ("b", "deleted"), ("x", "inserted"), ("c", "equal"), ("E", "equal")]


def test_tokens_html_escapes_token_text_and_tooltips():
    tokens = ["<script>", 'a"b', "<img src=x onerror=alert(1)>", "&amp;", "ok"]
    out = T.tokens_html(tokens, [0.5, -0.2, 0.1, 0.0, 1.0], ["equal", "deleted", "equal", "equal", "equal"])
    assert "&lt;script&gt;" in out
    assert "<script" not in out and "<img" not in out
    assert "&amp;amp;" in out                          # already-escaped text is escaped again, shown literally
    for title in re.findall(r'title="([^"]*)"', out):  # no attribute break-out: quotes are entities
        assert "<" not in title and '"' not in title
    assert out.count("<span") == len(tokens)
    assert "tok-deleted" in out


def test_tokens_html_shading_and_validation():
    out = T.tokens_html(["a", "b"], [1.0, -1.0])
    assert "rgba(220, 38, 38, 0.750)" in out and "rgba(37, 99, 235, 0.750)" in out
    centred = T.tokens_html(["a", "b"], [101.0, 99.0], center=True)
    assert "rgba(220, 38, 38, 0.750)" in centred and "value=+101" in centred
    assert T.tokens_html([], []).startswith("<div")
    with pytest.raises(ValueError):
        T.tokens_html(["a"], [1.0, 2.0])
    with pytest.raises(ValueError):
        T.tokens_html(["a"], None, ["moved"])


def test_tokens_html_makes_whitespace_visible():
    out = T.tokens_html(["a\nb", "", "\t"])
    assert "↵" in out and "∅" in out and "⇥" in out


def test_mark_cuts_replaces_eos_only_on_a_cut_side():
    res = {"chosen_ids": [1, 2], "rejected_ids": [1, 3, 4], "chosen_tokens": ["a", "b", T.EOS_LABEL],
           "rejected_tokens": ["a", "c", "d", T.EOS_LABEL], "score": 1.0,
           "chosen_cut": True, "rejected_cut": False}                  # the chosen side lost tokens
    cut = T.mark_cuts(res)
    assert cut["chosen_tokens"] == ["a", "b", T.CUT_LABEL]
    assert cut["rejected_tokens"] == ["a", "c", "d", T.EOS_LABEL]    # complete: its last position predicts EOS
    assert res["chosen_tokens"][-1] == T.EOS_LABEL and cut["score"] == 1.0   # the input is not modified


def test_one_colour_per_meaning():
    """Red and blue mean the score; the diff marks use the side colours, never red."""
    diff = T.tokens_html(["a", "b"], None, ["deleted", "inserted"])
    assert T.CHOSEN_COLOR in diff and T.REJECTED_COLOR in diff
    assert "220, 38, 38" not in diff and "185, 28, 28" not in diff and "b91c1c" not in diff
    shaded = T.tokens_html(["a", "b"], [1.0, -1.0], ["deleted", "inserted"])
    assert "rgba(220, 38, 38" in shaded and T.CHOSEN_COLOR in shaded
