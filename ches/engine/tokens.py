"""Turn a Pair into token ids exactly as docs/CHES.md's tokenisation contract says.

1. Prompt: with a chat template, `apply_chat_template(messages, add_generation_prompt=True,
   tokenize=False)` tokenized with `add_special_tokens=False` (the template carries BOS);
   without one, PLAIN_TEMPLATE tokenized with `add_special_tokens=True`.
2. Response: the response text alone, `add_special_tokens=False`. No token is ever added to the vocab.
3. Sequence = prompt_ids + response_ids (the prompt is always an exact prefix). CHES uses the hidden
   states at positions P-1 .. P+R-1: R + 1 positions, so |y| = R + 1 (content tokens + EOS).
4. Truncation to `max_length` tokens per sequence is explicit and reported: the response is cut at its
   end, and the prompt loses its oldest tokens only when it alone would take more than half the budget.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from ches.engine.pairs import Message, Pair


# Used only for tokenizers without a chat template.
PLAIN_TEMPLATE = "{turns}Assistant:"
PLAIN_TURN = "{Role}: {content}\n\n"


@dataclass(frozen=True)
class EncodedPair:
    prompt_plus: tuple[int, ...]    # x for the chosen side (P+ tokens)
    chosen: tuple[int, ...]         # y+ content tokens (R+)
    prompt_minus: tuple[int, ...]   # x for the rejected side (== prompt_plus unless the pair's prompts differ)
    rejected: tuple[int, ...]       # y- content tokens (R-)
    truncated: bool


def render_prompt(tokenizer, messages: Sequence[Message]) -> str:
    """The prompt text the model sees (chat template or PLAIN_TEMPLATE)."""
    messages = [dict(m) for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    turns = "".join(PLAIN_TURN.format(Role=m["role"].capitalize(), content=m["content"]) for m in messages)
    return PLAIN_TEMPLATE.format(turns=turns)


def template_id(tokenizer) -> str:
    """Identifies the prompt rendering; part of the run key."""
    text = getattr(tokenizer, "chat_template", None) or PLAIN_TEMPLATE + PLAIN_TURN
    return hashlib.sha256(str(text).encode()).hexdigest()[:12]


def encode_prompt(tokenizer, messages: Sequence[Message]) -> list[int]:
    return _ids(tokenizer, [render_prompt(tokenizer, messages)], not getattr(tokenizer, "chat_template", None))[0]


def encode_response(tokenizer, text: str) -> list[int]:
    return _ids(tokenizer, [text], False)[0]


def truncate(prompt: list[int], responses: Sequence[list[int]], max_length: int) -> tuple[list[int], list[list[int]], bool]:
    """Cut so that len(prompt) + len(r) <= max_length for each response (one prompt cut for all)."""
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    longest = max((len(r) for r in responses), default=0)
    if len(prompt) + longest <= max_length:
        return prompt, list(responses), False
    keep_prompt = min(len(prompt), max(max_length - longest, max_length // 2))
    prompt = prompt[len(prompt) - keep_prompt:]
    return prompt, [r[: max_length - keep_prompt] for r in responses], True


def encode_pair(tokenizer, pair: Pair, max_length: int) -> EncodedPair:
    """Token ids for both sides of a pair, truncated per the contract above."""
    (encoded,) = encode_pairs(tokenizer, [pair], max_length)
    if isinstance(encoded, Exception):
        raise encoded
    return encoded


def encode_pairs(tokenizer, pairs: Sequence[Pair], max_length: int) -> list[EncodedPair | Exception]:
    """encode_pair for many pairs: the tokenizer is called once per kind of text, so a fast tokenizer
    works in parallel and without the GIL. A pair whose prompt the chat template rejects gets the
    exception in its place (templates raise anything: jinja errors, ValueError, ...)."""
    rendered: list[str] = []
    slots: list[tuple[int, int | None] | Exception] = []     # per pair: its prompts' indices in `rendered`
    for p in pairs:
        try:
            sides = [p.prompt] if p.rejected_prompt is None else [p.prompt, p.rejected_prompt]
            texts = [render_prompt(tokenizer, messages) for messages in sides]
        except Exception as e:  # noqa: BLE001
            slots.append(e)
            continue
        rendered += texts
        slots.append((len(rendered) - len(texts), len(rendered) - 1 if len(texts) == 2 else None))
    ok = [p for p, s in zip(pairs, slots) if not isinstance(s, Exception)]
    with_specials = not getattr(tokenizer, "chat_template", None)
    prompt_ids = _ids(tokenizer, rendered, with_specials)
    chosen_ids = _ids(tokenizer, [p.chosen for p in ok], False)
    rejected_ids = _ids(tokenizer, [p.rejected for p in ok], False)
    out: list[EncodedPair | Exception] = []
    k = 0
    for s in slots:
        if isinstance(s, Exception):
            out.append(s)
            continue
        x_plus, y_plus, y_minus = prompt_ids[s[0]], chosen_ids[k], rejected_ids[k]
        k += 1
        if s[1] is None:
            x_plus, (y_plus, y_minus), cut = truncate(x_plus, [y_plus, y_minus], max_length)
            out.append(EncodedPair(tuple(x_plus), tuple(y_plus), tuple(x_plus), tuple(y_minus), cut))
            continue
        x_plus, (y_plus,), cut_plus = truncate(x_plus, [y_plus], max_length)
        x_minus, (y_minus,), cut_minus = truncate(prompt_ids[s[1]], [y_minus], max_length)
        out.append(EncodedPair(tuple(x_plus), tuple(y_plus), tuple(x_minus), tuple(y_minus), cut_plus or cut_minus))
    return out


def _ids(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each text; an empty response is no tokens (never a lone special token)."""
    nonempty = [t for t in texts if t or add_special_tokens]
    ids = iter(tokenizer(nonempty, add_special_tokens=add_special_tokens).input_ids if nonempty else [])
    return [list(next(ids)) if t or add_special_tokens else [] for t in texts]
