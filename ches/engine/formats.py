"""The formats of preference datasets: one table of format records (`FORMATS`), detection, a row's parsers.

Each format is one `Format` in `FORMATS`: its name, what a row looks like, the keys a row must have, what tells
it from a format with the same keys, its place in detection and its parser. A row is in the first format, in
detection order, whose keys it has (`format=` overrides); adding a format is one entry there.

A string prompt becomes one user message, unless it is an HH-style dialogue ("\n\nHuman: ..\n\nAssistant: ..")
whose turns become messages, as in the hh format (any format whose prompt is a string: trl_standard, ches_flat,
alpacafarm, persona). An hh transcript may open with "Human:" without its blank line; one that opens with no Human
turn, or whose split leaves a turn marker in a user turn or after a blank line, is a row error (a "Human:" inside
an assistant turn is text: real HH replies hold it). Messages keep only role and content. A response given as a
message list is its final assistant message; the turns before it extend that side's prompt. When the
two sides' prompts differ the pair keeps both (`rejected_prompt`) and is flagged prompt_mismatch.
An AlpacaFarm / AlpacaEval tie (preference 0 or 1.5) holds no preference: it is skipped (`Skipped`) and counted
as a tie (`Dataset.skipped`), not reported as unreadable.

Rows in no known format load with a column mapping (`MAPPED`); rows become a `Dataset` in ches.engine.records.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ches.engine.pairs import Message

Rows = Iterator[tuple[int, Any]]   # (1-based row number, the row as read)
MAPPED = ("prompt", "chosen", "rejected")   # what a column mapping names, and what every format gives


# ---------------------------------------------------------------- a row's parsers (never recursive)
class RowProblem(ValueError):
    """One row is unusable; becomes a RowError."""


class Skipped(Exception):
    """One row is readable but left out on purpose (a tie); goes to Dataset.skipped."""


def type_name(value: Any) -> str:
    """The name of a value's type, for messages ("null" for None)."""
    return "null" if value is None else type(value).__name__


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RowProblem(f"'{key}' must be a string, got {type_name(value)}")
    return value


def _messages(value: Any, key: str) -> tuple[Message, ...]:
    """A list of {"role": str, "content": str}; other message keys are dropped."""
    if not isinstance(value, list):
        raise RowProblem(f"'{key}' must be a list of messages, got {type_name(value)}")
    out = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            raise RowProblem(f"'{key}' message {i} must be an object, got {type_name(m)}")
        for part in ("role", "content"):
            if part not in m:
                raise RowProblem(f"'{key}' message {i} has no '{part}'")
            if not isinstance(m[part], str):
                raise RowProblem(f"'{key}' message {i} '{part}' must be a string, got {type_name(m[part])}")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def _split_reply(msgs: tuple[Message, ...], key: str) -> tuple[tuple[Message, ...], str]:
    """(everything before the final assistant turn, that turn's content)."""
    if not msgs or msgs[-1]["role"] != "assistant":
        if any(m["role"] == "assistant" for m in msgs):
            raise RowProblem(f"'{key}' must end with an assistant message, ends with '{msgs[-1]['role'][:40]}'")
        raise RowProblem(f"'{key}' has no assistant message")
    return msgs[:-1], msgs[-1]["content"]


def _prompt(value: Any, key: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return text_prompt(value)
    if isinstance(value, list):
        return _messages(value, key)
    raise RowProblem(f"'{key}' must be a string or a list of messages, got {type_name(value)}")


def _response(value: Any, key: str, prompt: tuple[Message, ...]) -> tuple[tuple[Message, ...], str]:
    """A string reply, or a message list whose earlier turns extend this side's prompt."""
    if isinstance(value, str):
        return prompt, value
    if isinstance(value, list):
        before, reply = _split_reply(_messages(value, key), key)
        return prompt + before, reply
    raise RowProblem(f"'{key}' must be a string or a list of messages, got {type_name(value)}")


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}
# a turn marker the split left in a message: in a user turn at any line's start; in an assistant turn or the
# reply only after a blank line (real HH assistant turns hold "Human: .." as text: the model went on as the human)
_HH_LEFT = {"user": re.compile(r"(?:^|\n)[ \t]*(?:Human|Assistant):"),
            "assistant": re.compile(r"\n[ \t]*\n[ \t]*(?:Human|Assistant):")}


def _hh(value: Any, key: str) -> tuple[tuple[Message, ...], str]:
    """Split HH text at its LAST "\\n\\nAssistant:": (dialogue before as messages, final reply).
    The first "Human:" may come without its blank line; a transcript that does not split cleanly is a RowProblem."""
    text = _str(value, key)
    cut = text.rfind("\n\nAssistant:")
    if cut < 0:
        raise RowProblem(f"'{key}' has no '\\n\\nAssistant:' turn")
    parts = _HH_TURN.split("\n\n" + text[:cut].lstrip(" \n"))
    if parts[0].strip():
        raise RowProblem(f"'{key}' has text before the first 'Human:' turn")
    prompt = tuple({"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2]))
    if not prompt or prompt[0]["role"] != "user":
        raise RowProblem(f"'{key}' does not start with a 'Human:' turn")
    reply = text[cut + len("\n\nAssistant:"):].strip()
    turns = [(f"turn {i} ({m['role']})", m) for i, m in enumerate(prompt, 1)]
    for where, m in turns + [("final reply", {"role": "assistant", "content": reply})]:
        if left := _HH_LEFT[m["role"]].search(m["content"]):
            raise RowProblem(f"'{key}' {where} still holds a turn marker ({left.group()!r}): it does not split cleanly")
    return prompt, reply


def text_prompt(text: str) -> tuple[Message, ...]:
    """A string prompt as messages: an HH-style dialogue (it opens with a "Human:" turn, blank line or not;
    a single "Human: .." turn too) split into its turns, a trailing empty "Assistant:" cue dropped; else one
    user turn."""
    if not text.lstrip(" \n").startswith("Human:"):
        return ({"role": "user", "content": text},)
    parts = _HH_TURN.split("\n\n" + text.lstrip(" \n"))
    turns = [{"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]
    if turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    return tuple(turns)


TIES = (0, 1.5)   # AlpacaFarm / AlpacaEval preference values that mean "neither output"


def _preference(value: Any) -> int:
    number = value.strip() if isinstance(value, str) else value
    if isinstance(number, str):
        try:
            number = float(number)
        except ValueError:
            pass
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        if number in (1, 2):
            return int(number)
        if number in TIES:
            raise Skipped(f"tie: skipped (preference {value!r}: neither output is preferred)")
    raise RowProblem(f"'preference' must be 1 or 2, got {type_name(value)} {repr(value)[:40]}")


Sides = tuple[tuple[Message, ...], str, str, tuple[Message, ...]]  # prompt, chosen, rejected, rejected's prompt


def _both(parse: Callable, row: dict, keys: tuple[str, str], *args) -> Sides:
    """Parse the chosen and the rejected side alike; each is (its prompt, its reply)."""
    (c_prompt, chosen), (r_prompt, rejected) = (parse(row[k], k, *args) for k in keys)
    return c_prompt, chosen, rejected, r_prompt


def _trl(row: dict, prompt_key: str = "prompt") -> Sides:
    """TRL rows: standard, conversational, or implicit prompt (whole conversations, no prompt key).

    A string prompt next to conversations that carry their own turns is dropped, as TRL's
    maybe_extract_prompt does (HuggingFaceH4/ultrafeedback_binarized repeats it as the first user turn).
    """
    if prompt_key not in row:
        if not isinstance(row["chosen"], list):
            raise RowProblem(f"missing key '{prompt_key}'")
        return _both(lambda value, key: _split_reply(_messages(value, key), key), row, ("chosen", "rejected"))
    base = _prompt(row[prompt_key], prompt_key)
    prompt, chosen, rejected, r_prompt = _both(_response, row, ("chosen", "rejected"), base)
    if isinstance(row[prompt_key], str):
        prompt, r_prompt = (p[len(base):] if len(p) > len(base) else p for p in (prompt, r_prompt))
    return prompt, chosen, rejected, r_prompt


def _alpacafarm(row: dict) -> Sides:
    text = _str(row["instruction"], "instruction")
    extra = "" if row.get("input") is None else _str(row["input"], "input")
    prompt = text_prompt(text + "\n" + extra if extra else text)
    outputs = _str(row["output_1"], "output_1"), _str(row["output_2"], "output_2")
    first = _preference(row["preference"]) == 1
    return prompt, outputs[0 if first else 1], outputs[1 if first else 0], prompt


def _openai(row: dict) -> Sides:
    if not isinstance(row["input"], dict) or "messages" not in row["input"]:
        raise RowProblem(f"'input' must be an object with a 'messages' list, got {type_name(row['input'])}")
    prompt = _messages(row["input"]["messages"], "input.messages")
    return _both(_response, row, ("preferred_output", "non_preferred_output"), prompt)


def _persona(row: dict) -> Sides:
    """prompt = question; chosen = answer_matching_behavior; rejected = answer_not_matching_behavior.

    The answers are kept verbatim, leading space included (" Yes"): that is the token the persona
    evals score, and stripping it would change the tokenisation the paper's single-token runs use.
    """
    prompt = text_prompt(_str(row["question"], "question"))
    return (prompt, _str(row["answer_matching_behavior"], "answer_matching_behavior"),
            _str(row["answer_not_matching_behavior"], "answer_not_matching_behavior"), prompt)


def _hh_row(row: dict) -> Sides:
    return _both(_hh, row, ("chosen", "rejected"))


def _ches_flat(row: dict) -> Sides:
    return _trl(row, "query")


# ---------------------------------------------------------------- the formats: one table of records
@dataclass(frozen=True)
class Format:
    """One dataset format: a choice in the CLI and the app, a detection rule and a parser."""
    name: str                             # e.g. "trl_standard"
    help: str                             # what a row looks like, for people choosing a format
    keys: tuple[str, ...]                 # the keys a row must have (alpacafarm's "input" is optional)
    tried: int                            # detection order: a row several formats fit is read as the lowest
    parse: Callable[[dict], Sides]        # a row with the keys -> its sides; a RowProblem or Skipped otherwise
    fits: Callable[[dict], bool] = lambda row: True   # what tells it from a format with the same keys


FORMATS: dict[str, Format] = {f.name: f for f in (   # in the order people read them
    Format("trl_standard", 'TRL standard: {"prompt": str, "chosen": str, "rejected": str}',
           ("prompt", "chosen", "rejected"), 6, _trl, lambda row: not isinstance(row.get("chosen"), list)),
    Format("trl_conversational",
           'TRL conversational: {"prompt": [messages], "chosen": [.., assistant], "rejected": [.., assistant]}',
           ("chosen", "rejected"), 5, _trl, lambda row: isinstance(row.get("prompt"), list)),
    Format("implicit_messages",
           'whole conversations, prompt = turns before the last (UltraFeedback): {"chosen": [..], "rejected": [..]}',
           ("chosen", "rejected"), 7, _trl, lambda row: isinstance(row.get("chosen"), list)),
    Format("hh", 'Anthropic HH raw dialogue text: {"chosen": "\\n\\nHuman: ..\\n\\nAssistant: ..", "rejected": ".."}',
           ("chosen", "rejected"), 8, _hh_row, lambda row: isinstance(row.get("chosen"), str) and "prompt" not in row),
    Format("ches_flat", 'the CHES authors\' flat rows: {"query": str, "chosen": str, "rejected": str}',
           ("query", "chosen", "rejected"), 4, _ches_flat),
    Format("alpacafarm", 'AlpacaFarm: {"instruction", "input", "output_1", "output_2", "preference": 1 or 2}',
           ("instruction", "output_1", "output_2", "preference"), 2, _alpacafarm),
    Format("openai_dpo",
           'OpenAI DPO: {"input": {"messages": [..]}, "preferred_output": [..], "non_preferred_output": [..]}',
           ("input", "preferred_output", "non_preferred_output"), 1, _openai),
    Format("persona", 'Anthropic persona eval: {"question", "answer_matching_behavior", "answer_not_matching_behavior"}',
           ("question", "answer_matching_behavior", "answer_not_matching_behavior"), 3, _persona),
)}


def fitting_formats(row: Any) -> list[str]:
    """Every format whose keys (and what tells it apart) `row` matches, in detection order."""
    if not isinstance(row, dict):
        return []
    fit = [f for f in FORMATS.values() if all(k in row for k in f.keys) and f.fits(row)]
    return [f.name for f in sorted(fit, key=lambda f: f.tried)]


def detect_format(row: Any) -> str | None:
    """The format whose keys (and what tells it apart) `row` matches first, or None."""
    return next(iter(fitting_formats(row)), None)


def parse_row(fmt: str, value: Any) -> Sides:
    """A row read as format `fmt`: its sides, or a RowProblem naming what is wrong (Skipped for a tie)."""
    if not isinstance(value, dict):
        raise RowProblem(f"expected a JSON object, got {type_name(value)}")
    missing = [k for k in FORMATS[fmt].keys if k not in value]
    if missing:
        raise RowProblem(f"missing key{'s' * (len(missing) > 1)} " + ", ".join(f"'{k}'" for k in missing))
    return FORMATS[fmt].parse(value)                     # types checked on the values as read
