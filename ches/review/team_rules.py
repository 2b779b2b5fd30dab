"""A team's decisions side by side and the team rules: each pair's team status, and the rule an export uses to
turn several people's decisions into one per pair (`TEAM_RULES`, `resolve`).

Each annotator's decision is their own (`decisions.current_by_annotator`); an adjudicator's decision
(`decisions.adjudications`) settles a pair for the team. A pair's team status:

    undecided   nobody decided it
    single      one annotator decided it
    agreed      two or more annotators, all with the same decision
    conflict    two or more annotators, not all the same, and no adjudication
    settled     an adjudication is in force (whatever the annotators said)

How much the annotators agree (kappa, alpha) and where they do not is in ches.review.agreement.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from ches.review import decisions as decision_log
from ches.review.decisions import DECISION_VALUES, DROP, KEEP, UNDECIDED, Decision

SINGLE, AGREED, CONFLICT, SETTLED = "single", "agreed", "conflict", "settled"     # and UNDECIDED: nobody decided
TEAM_STATUSES = (UNDECIDED, SINGLE, AGREED, CONFLICT, SETTLED)
TEAM_RULES = {
    "latest": "the latest decision of anyone",
    "majority": "the decision more than half of the pair's annotators made",
    "unanimous_keep": "keep only when every annotator kept; drop when anyone decided otherwise",
    "any_drop": "drop when anyone dropped; else keep when anyone kept",
    "adjudicated": "only settled decisions: an adjudicator's, or two or more annotators agreeing",
}
DEFAULT_TEAM_RULE = "latest"


@dataclass(frozen=True)
class TeamView:
    """Everyone's decisions in force, read once from the log."""
    by_annotator: dict[str, dict[str, Decision]] = field(default_factory=dict)   # annotator -> pair_id -> Decision
    adjudicated: dict[str, Decision] = field(default_factory=dict)               # pair_id -> the adjudication
    latest: dict[str, Decision] = field(default_factory=dict)                    # pair_id -> latest of anyone

    @classmethod
    def read(cls, db) -> "TeamView":
        """The view of the decision log `db` (a missing file is an empty log), from one read of it: `latest` is
        the last decision in the log's order per pair (= decisions.current), `by_annotator` each one's own."""
        by_annotator: dict[str, dict[str, Decision]] = {}
        latest: dict[str, Decision] = {}
        for d in decision_log.in_force(db):
            by_annotator.setdefault(d.annotator, {})[d.pair_id] = d
            latest[d.pair_id] = d
        return cls(by_annotator, decision_log.adjudications(db), latest)

    @property
    def annotators(self) -> list[str]:
        return sorted(self.by_annotator)

    def mine(self, annotator: str) -> dict[str, Decision]:
        """`annotator`'s own decisions in force."""
        return self.by_annotator.get(annotator, {})

    def on_pair(self, pair_id: str) -> dict[str, Decision]:
        """{annotator: Decision} on one pair, annotators in name order."""
        return {a: d[pair_id] for a, d in sorted(self.by_annotator.items()) if pair_id in d}

    def visible_to(self, pair_id: str, annotator: str, blind: bool) -> dict[str, Decision]:
        """The other annotators' decisions on `pair_id` as `annotator` may see them: none while the run is
        blind and `annotator` has not decided the pair yet."""
        if blind and pair_id not in self.mine(annotator):
            return {}
        return {a: d for a, d in self.on_pair(pair_id).items() if a != annotator}

    def values(self, pair_id: str) -> list[str]:
        """The annotators' decision values on one pair (annotators in name order)."""
        return [d.decision for d in self.on_pair(pair_id).values()]


def _status(values: list[str], settled: bool) -> str:
    if settled:
        return SETTLED
    if not values:
        return UNDECIDED
    if len(values) == 1:
        return SINGLE
    return AGREED if len(set(values)) == 1 else CONFLICT


def _decided_status(view: TeamView, wanted: Container[str] | None = None) -> dict[str, str]:
    """{pair_id: team status} over the pairs someone decided or settled (in `wanted`, if given): the cost
    grows with the decisions, not with the run."""
    votes: dict[str, list[str]] = {}
    for decided in view.by_annotator.values():
        for pid, d in decided.items():
            if wanted is None or pid in wanted:
                votes.setdefault(pid, []).append(d.decision)
    status = {pid: _status(v, pid in view.adjudicated) for pid, v in votes.items()}
    status.update({pid: SETTLED for pid in view.adjudicated if wanted is None or pid in wanted})
    return status


def team_status(pair_ids: pd.Series, view: TeamView) -> pd.Series:
    """The team status (one of TEAM_STATUSES) of each pair id, same index."""
    return pair_ids.map(_decided_status(view)).astype(object).fillna(UNDECIDED)


def team_counts(pair_ids: Collection[str], view: TeamView) -> dict[str, int]:
    """{team status: how many of the (distinct) `pair_ids`} = team_status(...).value_counts(), in time that
    grows with the decisions rather than the pairs (the sidebar shows it after every press)."""
    counts = Counter(_decided_status(view, pair_ids).values())
    counts[UNDECIDED] = len(pair_ids) - counts.total()
    return {s: n for s, n in counts.items() if n}


def overridden(events: Iterable[decision_log.Event], adjudicated: Mapping[str, Decision],
               adjudicator: str) -> dict[str, tuple[decision_log.Event, Decision]]:
    """{pair_id: (`adjudicator`'s settlement, the one in force)} on the pairs where another adjudicator settled
    after her and her settlement was not undone: what she is told on the Team page. `events`: the log's
    history; `adjudicated`: decisions.adjudications."""
    events = list(events)
    undone = {e.undoes for e in events if e.action == decision_log.UNDO}
    mine: dict[str, decision_log.Event] = {}
    for e in events:
        if e.adjudicated and e.annotator == adjudicator and e.action in DECISION_VALUES and e.id not in undone:
            mine[e.pair_id] = e
    return {pid: (e, adjudicated[pid]) for pid, e in mine.items()
            if pid in adjudicated and adjudicated[pid].annotator != adjudicator and adjudicated[pid].event_id > e.id}


def _team_decision(values: list[str], rule: str) -> str | None:
    if not values:
        return None
    if rule == "majority":
        value, n = Counter(values).most_common(1)[0]
        return value if n > len(values) / 2 else None
    if rule == "unanimous_keep":
        return KEEP if all(v == KEEP for v in values) else DROP
    if rule == "any_drop":
        return DROP if DROP in values else KEEP if KEEP in values else None
    if rule == "adjudicated":
        return values[0] if len(values) >= 2 and len(set(values)) == 1 else None
    raise ValueError(f"unknown team rule {rule!r}; choose one of {', '.join(TEAM_RULES)}")


def resolve(view: TeamView, rule: str = DEFAULT_TEAM_RULE) -> dict[str, str]:
    """{pair_id: 'keep' / 'drop' / 'flag'}: the team's decision per pair under `rule` (a key of TEAM_RULES),
    which an export uses; pairs left out fall to the score rule. An adjudication wins under every rule."""
    if rule not in TEAM_RULES:
        raise ValueError(f"unknown team rule {rule!r}; choose one of {', '.join(TEAM_RULES)}")
    if rule == "latest":
        out = {pid: d.decision for pid, d in view.latest.items()}
    else:
        pids = {p for decided in view.by_annotator.values() for p in decided}
        out = {pid: v for pid in pids if (v := _team_decision(view.values(pid), rule)) is not None}
    out.update({pid: d.decision for pid, d in view.adjudicated.items()})
    return out
