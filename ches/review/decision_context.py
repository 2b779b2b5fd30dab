"""The decision log as a file a person can read: each event (`decisions.export_jsonl`'s line) with its
pair's `run` (run id), `row` (the source row in that run) and `prompt` (the last user turn's full text).

Which run: the one given, else the most recent complete run (manifest `created_at`) under the runs folder
that holds the pair. A pair in no such run (or not in the given run) gets `run`, `row` and `prompt` null.
A pair found twice in one run (a `duplicate`) gets its first row. `decisions.import_jsonl` ignores the
three keys, so such a file imports like a plain export.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ches.atomic import atomic_open
from ches.engine.runs import list_runs
from ches.engine.store import read_manifest, read_scores, read_texts
from ches.review import decisions
from ches.review.export import json_line

CONTEXT_KEYS = ("run", "row", "prompt")


def last_user_turn(prompt: Any) -> str:
    """The text of a prompt's last user message (a run's `prompt` column: JSON list of {role, content});
    the last message of any role when none is a user's; "" without a prompt."""
    try:
        msgs = json.loads(prompt) if isinstance(prompt, str) and prompt else []
    except ValueError:
        return str(prompt)
    msgs = [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []
    users = [m for m in msgs if m.get("role") == "user"] or msgs
    return str(users[-1].get("content", "")) if users else ""


def pair_context(pair_ids: Iterable[str], runs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """{pair_id: {"run", "row", "prompt"}} for the pair ids found in `runs`, each from the first run (in the
    order given) that holds it."""
    want, found = set(pair_ids), {}
    for run_dir in runs:
        if not want:
            break
        ids = read_scores(run_dir)[["row", "pair_id"]].sort_values("row")
        hit = ids[ids["pair_id"].isin(want)].drop_duplicates("pair_id")
        if hit.empty:
            continue
        prompts = read_texts(run_dir, hit["row"].tolist()).set_index("row")["prompt"]
        run_id = read_manifest(run_dir).get("run", Path(run_dir).name)
        for row, pid in zip(hit["row"], hit["pair_id"]):
            found[pid] = {"run": run_id, "row": int(row), "prompt": last_user_turn(prompts.get(row))}
        want -= set(hit["pair_id"])
    return found


def export_with_context(db: str | os.PathLike[str], path: str | os.PathLike[str], *, runs_root: str | Path | None = None,
                        run: str | Path | None = None) -> tuple[int, int, int]:
    """Write `db`'s events to `path` (JSON Lines, in the log's order, atomically), each line with `run`,
    `row` and `prompt` (module docstring): from `run` (a run folder) when given, else from the most recent
    complete run under `runs_root` that holds the pair. Returns (events, pairs, pairs found in a run)."""
    runs = [Path(run)] if run is not None else [d for d, _ in list_runs(Path(runs_root))] if runs_root else []
    lines, pairs, found = _with_context(db, runs)
    with atomic_open(path, "w", newline="\n") as f:
        f.writelines(lines)
    return len(lines), pairs, found


def jsonl_with_context(db: str | os.PathLike[str], run: str | Path) -> bytes:
    """`export_with_context(db, ..., run=run)`'s file as bytes (for a download)."""
    return "".join(_with_context(db, [Path(run)])[0]).encode("utf-8")


def _with_context(db: str | os.PathLike[str], runs: Sequence[Path]) -> tuple[list[str], int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "events.jsonl"
        decisions.export_jsonl(db, plain)
        text = plain.read_text(encoding="utf-8")     # split on "\n" only: a note may hold U+2028, raw
    events = [json.loads(line) for line in text.split("\n") if line.strip()]
    pair_ids = {e["pair_id"] for e in events}
    context = pair_context(pair_ids, runs)
    empty = dict.fromkeys(CONTEXT_KEYS)
    return [json_line({**e, **context.get(e["pair_id"], empty)}) for e in events], len(pair_ids), len(context)
