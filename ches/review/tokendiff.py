"""Token-level alignment of a pair's two responses, and the escaped HTML that shades tokens.

`align` is difflib's SequenceMatcher over token ids (autojunk off: frequent tokens such as spaces
must still align). From the chosen side's view a token is 'equal' (also in the rejected response at
the aligned place) or 'deleted' (only in chosen); from the rejected side's view 'equal' or
'inserted' (only in rejected). A 'replace' block counts as deleted on one side, inserted on the other.

`tokens_html` is the only HTML this project builds from dataset text: every token and every tooltip
goes through `html.escape(..., quote=True)`, so a token "<script>" renders as the literal text.

One colour per meaning, as on every page: red / blue = raises / lowers the score (the shading), green =
only in the chosen response, orange = only in the rejected one (the diff marks).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

Opcode = tuple[str, range, range]   # (equal | insert | delete | replace, chosen positions, rejected positions)
EOS_LABEL = "⟨eos⟩"
CUT_LABEL = "✂ cut"       # the last position of a response cut to the max length: it predicts no EOS
CHOSEN_COLOR, REJECTED_COLOR = "#15803d", "#c2410c"

_OP_STYLE = {          # the diff view: strong marks
    "equal": "",
    "deleted": f"text-decoration: line-through; text-decoration-color: {CHOSEN_COLOR};",
    "inserted": f"border-bottom: 2px solid {REJECTED_COLOR};",
}
_OP_MARK = {           # the shaded views: a light underline, so the shading stays readable
    "equal": "",
    "deleted": f"border-bottom: 2px dotted {CHOSEN_COLOR};",
    "inserted": f"border-bottom: 2px dotted {REJECTED_COLOR};",
}
_OP_BACKGROUND = {"deleted": "rgba(74, 222, 128, 0.35)", "inserted": "rgba(251, 146, 60, 0.35)"}
_VISIBLE = str.maketrans({"\n": "↵\n", "\t": "⇥", "\r": "␍"})


def align(ids_a: Sequence[int], ids_b: Sequence[int]) -> list[Opcode]:
    """Opcodes turning `ids_a` into `ids_b`: (op, range in a, range in b), covering both fully, in order."""
    from difflib import SequenceMatcher

    sm = SequenceMatcher(None, list(ids_a), list(ids_b), autojunk=False)
    return [(tag, range(i1, i2), range(j1, j2)) for tag, i1, i2, j1, j2 in sm.get_opcodes()]


def token_ops(ids_chosen: Sequence[int], ids_rejected: Sequence[int]) -> tuple[list[str], list[str]]:
    """(op per chosen token: 'equal' | 'deleted', op per rejected token: 'equal' | 'inserted')."""
    chosen = ["deleted"] * len(ids_chosen)
    rejected = ["inserted"] * len(ids_rejected)
    for tag, i, j in align(ids_chosen, ids_rejected):
        if tag == "equal":
            for k in i:
                chosen[k] = "equal"
            for k in j:
                rejected[k] = "equal"
    return chosen, rejected


def pair_ops(result: dict) -> tuple[list[str], list[str]]:
    """`token_ops` for a `pipeline.pair_tokens` result; the trailing EOS labels count as equal."""
    chosen, rejected = token_ops(result["chosen_ids"], result["rejected_ids"])
    chosen += ["equal"] * (len(result["chosen_tokens"]) - len(chosen))
    rejected += ["equal"] * (len(result["rejected_tokens"]) - len(rejected))
    return chosen, rejected


def mark_cuts(result: dict) -> dict:
    """`result` (pipeline.pair_tokens) with the trailing EOS label of each response that was cut to the
    max length (`chosen_cut` / `rejected_cut`) replaced by CUT_LABEL: that position predicts the first
    token cut off, not the end of the response."""
    out = dict(result)
    for side in ("chosen", "rejected"):
        tokens = list(result[f"{side}_tokens"])
        if result[f"{side}_cut"] and len(tokens) > len(result[f"{side}_ids"]):
            tokens[-1] = CUT_LABEL
        out[f"{side}_tokens"] = tokens
    return out


def merged_diff(tokens_chosen: Sequence[str], tokens_rejected: Sequence[str], ids_chosen: Sequence[int],
                ids_rejected: Sequence[int]) -> list[tuple[str, str]]:
    """One interleaved stream [(token, 'equal' | 'deleted' | 'inserted')] reading chosen -> rejected.

    `tokens_*` may carry one extra trailing label (the EOS position) beyond the ids; it is appended as equal.
    """
    out: list[tuple[str, str]] = []
    for tag, i, j in align(ids_chosen, ids_rejected):
        if tag == "equal":
            out += [(tokens_chosen[k], "equal") for k in i]
            continue
        out += [(tokens_chosen[k], "deleted") for k in i]
        out += [(tokens_rejected[k], "inserted") for k in j]
    if len(tokens_chosen) > len(ids_chosen):
        out.append((tokens_chosen[len(ids_chosen)], "equal"))
    return out


def _shade(value: float, scale: float) -> str:
    """Diverging background: red for positive (raises the score), blue for negative; alpha by |value|."""
    if scale <= 0 or not math.isfinite(value):
        return "transparent"
    a = min(1.0, abs(value) / scale) * 0.75
    return f"rgba(220, 38, 38, {a:.3f})" if value > 0 else f"rgba(37, 99, 235, {a:.3f})"


def tokens_html(tokens: Sequence[str], values: Sequence[float] | None = None,
                ops: Sequence[str] | None = None, *, value_name: str = "value", center: bool = False) -> str:
    """Escaped HTML: one <span> per token, shaded by `values` (diverging, scaled to the max |value|)
    or, without values, coloured by `ops`; the tooltip (title) shows the position, value and op.

    center=True shades by the value minus the mean (for values that share a large common offset);
    the tooltip still shows the value itself.
    """
    n = len(tokens)
    if values is not None and len(values) != n:
        raise ValueError(f"{len(values)} values for {n} tokens")
    if ops is not None and len(ops) != n:
        raise ValueError(f"{len(ops)} ops for {n} tokens")
    finite = [float(v) for v in (values if values is not None else []) if math.isfinite(float(v))]
    offset = sum(finite) / len(finite) if center and finite else 0.0
    scale = max((abs(v - offset) for v in finite), default=0.0)
    spans = []
    for k, token in enumerate(tokens):
        op = ops[k] if ops is not None else "equal"
        if op not in _OP_STYLE:
            raise ValueError(f"unknown op {op!r}; expected one of {', '.join(_OP_STYLE)}")
        tip = f"#{k} {token!r}"
        if values is not None:
            value = float(values[k])
            tip += f"  {value_name}={value:+.6g}"
            background, mark = _shade(value - offset, scale), _OP_MARK[op]
        else:
            background, mark = _OP_BACKGROUND.get(op, "transparent"), _OP_STYLE[op]
        if op != "equal":
            tip += f"  ({op})"
        shown = str(token).translate(_VISIBLE) if token else "∅"
        spans.append(
            f'<span class="tok tok-{op}" title="{html.escape(tip, quote=True)}" '
            f'style="background: {background}; {mark}">{html.escape(shown, quote=True)}</span>')
    return ('<div class="ches-tokens" style="font-family: ui-monospace, SFMono-Regular, Menlo, monospace; '
            'font-size: 0.85rem; line-height: 1.9; white-space: pre-wrap; word-break: break-word;">'
            + "".join(spans) + "</div>")


def legend_html() -> str:
    """A fixed (no dataset text) legend for the token views."""
    return ('<div style="font-size: 0.8rem; line-height: 2;">'
            '<span style="background: rgba(220, 38, 38, 0.6); padding: 0 6px;">raises the score</span> '
            '<span style="background: rgba(37, 99, 235, 0.6); padding: 0 6px;">lowers it</span> '
            f'<span style="{_OP_MARK["deleted"]} padding: 0 6px;">only in chosen</span> '
            f'<span style="{_OP_MARK["inserted"]} padding: 0 6px;">only in rejected</span> '
            f'<span style="padding: 0 6px;">{CUT_LABEL}: the response was cut here (max length)</span></div>')
