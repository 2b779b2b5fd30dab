"""Annotators' keep / drop / flag decisions, kept in an append-only SQLite event log.

Contract
1. One SQLite file per workspace (`db`, a path). Every call opens its own connection (WAL,
   synchronous=FULL, busy_timeout 30 s) and closes it, so threads and processes may call at once.
2. The `events` table is the only source of truth and only ever grows, in order: triggers abort every
   UPDATE, every DELETE, every INSERT that would overwrite a row (INSERT OR REPLACE) and every INSERT
   whose `seq` is not the next position. Current decisions, history and counts are derived by reading it.
3. `record` and `undo` return only after their event is committed and fsynced: an event id they
   returned survives the process being killed (and, with synchronous=FULL, a power cut).
4. `record_many` is one action over many pairs: one transaction, one fsync, one `created_at`, and one
   `batch` id shared by its events.
5. One order everywhere, the log's own: `seq`, the position at which an event was appended to THIS log
   (1, 2, 3, ..., given inside the write transaction, so it is the commit order). A decision recorded
   here takes the next position when it is made; an imported event takes the next position when it is
   imported, in the order of the file's lines. No clock orders anything: `created_at` (when the person
   acted, by the clock of the machine they acted on; kept on import) and `imported_at` are for people.
   So a person's later action always wins over their own earlier one, whatever the clocks say, and an
   import is a later action too: what it brings wins over what was in force before it.
   Per (pair_id, annotator) the current decision is that annotator's last not-undone action; 'clear'
   means "no decision". Across annotators the last of those wins; `current_by_annotator` keeps them apart.
6. `undo` cancels `annotator`'s last not-undone action recorded here (a single event, or every event of
   a `record_many` batch) by appending one 'undo' event per cancelled event (`undoes` names it).
   Repeated undos walk further back, so n undos restore the state from n actions ago. Imported events
   are never undone (record a decision to change one), and an undo is never itself undone: to redo,
   record the decision again.
7. Decisions are keyed by `pair_id` (the content hash from ches.engine.pairs), so they carry over to every
   scoring run over the same pairs.
8. `export_jsonl` writes the whole log in its order, atomically. `import_jsonl` appends the events of
   such a file and skips events already present (same pair_id, annotator, action, note, created_at), so
   importing a file twice, or a file from a log that had imported this one, changes nothing. No line's
   content can abort an import: bad lines are reported by 1-based line number and a reason, and the
   good ones are committed together. A file's `id` links an undo to the event it cancels; its `seq` and
   `imported_at` are the source log's and are not kept.
9. The decision values (KEEP, DROP, FLAG, CLEAR, UNDECIDED) are defined in `values` and nowhere else.
10. Older files are upgraded when first opened, in one transaction, keeping every event and its id:
    v1 (no `batch`) and v2 (ordered by `created_at`) become v3. Their events get `seq` in the order v2
    used (created_at, annotator, id; undo events after the rest), so every decision in force and every
    undo stays what it was; they count as recorded here.
    v3 becomes v4 by adding the `adjudicated` column (0 for every event).
11. A team (ches.review.team_rules): each annotator's decisions are their own (`current_by_annotator`);
    an adjudicator's decision (`record(..., adjudicate=True)`, column `adjudicated`) settles a pair for
    the team and is read by `adjudications` (the last not-undone one per pair), never as an annotation.
    `undo(..., pair_id=p)` cancels only the annotator's last event on pair p.

The modules: `values` (the vocabulary), `db` (the file: its schema and upgrades, the connection), `log` (the
events: writes, the history, the clock), `inforce` (what is in force: every decision, read incrementally, and
the adjudications, from one query), `jsonl` (export and import).
"""
from __future__ import annotations

from ches.review.decisions.jsonl import ImportResult, LineError, export_jsonl, import_jsonl
from ches.review.decisions.db import SCHEMA_VERSION, DecisionLogError
from ches.review.decisions.inforce import adjudications, counts, current, current_by_annotator, in_force
from ches.review.decisions.log import Decision, Event, history, init, record, record_many, undo
from ches.review.decisions.values import (
    ACTIONS, CLEAR, DECISION_VALUES, DECISIONS, DROP, FLAG, KEEP, STATUSES, UNDECIDED, UNDO,
)

__all__ = [
    "ACTIONS", "CLEAR", "DECISIONS", "DECISION_VALUES", "DROP", "FLAG", "KEEP", "SCHEMA_VERSION", "STATUSES",
    "UNDECIDED", "UNDO",
    "Decision", "DecisionLogError", "Event", "ImportResult", "LineError",
    "adjudications", "counts", "current", "current_by_annotator", "export_jsonl", "history", "import_jsonl",
    "in_force", "init", "record", "record_many", "undo",
]
