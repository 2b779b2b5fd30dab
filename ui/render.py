"""Safe rendering: dataset text is never rendered as HTML or Markdown.

`text` (st.text) shows dataset text everywhere; `escape_md` escapes the few Markdown strings (errors,
captions, flash messages) that can contain user text; `user_errors` turns a user's mistake into st.error.
"""
from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence

import streamlit as st

from ches.engine.models import ModelError
from ches.engine.pairs import DataError
from ches.workspace import PathError

USER_ERRORS = (DataError, ModelError, PathError, ValueError, OSError)
# One colour per meaning on every page: green = the chosen side, orange = the rejected side,
# red / blue = raises / lowers the score.
CHOSEN, REJECTED = ":green[Chosen (y+)]", ":orange[Rejected (y-)]"
_ROLE_AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:", "system": ":material/settings:"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def escape_md(text: object) -> str:
    """`text` with every Markdown / HTML special character backslash-escaped (shows literally)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def text(value: object) -> None:
    """Dataset text, shown literally: no Markdown, no HTML, line breaks kept, long lines wrapped."""
    body = "" if value is None else str(value)
    st.text(body if body else "(empty)", width="stretch")


def parse_messages(value: str | None) -> list[dict]:
    """A prompt column (JSON list of {role, content}) back to messages; [] for a missing value (None, or the
    NaN pandas reads a null as) or bad JSON."""
    if not isinstance(value, str) or not value:
        return []
    try:
        msgs = json.loads(value)
    except (TypeError, ValueError):
        return [{"role": "user", "content": str(value)}]
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def preview(value: object, limit: int = 90) -> str:
    """One line of text: whitespace collapsed, cut to `limit` characters with "…" (for tables and lists)."""
    body = " ".join(str(value or "").split())
    return body if len(body) <= limit else body[: limit - 1] + "…"


def prompt_preview(value: str | None, limit: int = 90) -> str:
    """`preview` of a prompt column's last message (the question the responses answer)."""
    msgs = parse_messages(value)
    return preview(msgs[-1].get("content", "") if msgs else "", limit)


def conversation(messages: Sequence[dict]) -> None:
    """One st.chat_message per turn; the role and the content shown as plain text."""
    if not messages:
        st.caption("(no prompt)")
    for m in messages:
        role = str(m.get("role", ""))
        name = "user" if role == "user" else "assistant"
        with st.chat_message(name, avatar=_ROLE_AVATARS.get(role, ":material/chat:")):
            if role not in ("user", "assistant"):
                st.text(f"[{role}]")
            text(m.get("content", ""))


def responses(chosen: object, rejected: object, notes: tuple[str, str] = ("", "")) -> None:
    """The two responses side by side, headed in their side's colour (+ a note each), shown literally."""
    for column, head, body, note in zip(st.columns(2), (CHOSEN, REJECTED), (chosen, rejected), notes):
        with column:
            st.markdown(f"##### {head}{note}")
            text(body)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a user-facing error (bad data, model, path, value) as st.error instead of a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        st.error(escape_md(f"{type(e).__name__}: {e}" if isinstance(e, OSError) else e), icon=":material/error:")
