"""How much a team agrees: Cohen's kappa, Krippendorff's alpha, the conflicts, and the summary an export's
manifest carries.

Agreement is measured on the pairs two or more annotators decided, with the decisions (keep / drop /
flag) as nominal categories: Cohen's kappa per pair of annotators (scikit-learn) and Krippendorff's alpha
over everyone (the `krippendorff` package), which allows any number of annotators per pair. Everyone's
decisions side by side (`TeamView`), each pair's team status and the team rules are in ches.review.team_rules.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import combinations

import numpy as np
import pandas as pd

from ches.review.decisions import DECISION_VALUES
from ches.review.team_rules import CONFLICT, SETTLED, TeamView


def _wanted(pair_ids: Iterable[str] | None) -> set[str] | None:
    return None if pair_ids is None else set(pair_ids)


def kappa_table(view: TeamView, pair_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators over the pairs both decided (restricted to `pair_ids`):
    columns a, b, shared, agree (share of those pairs with the same decision), kappa (NaN with fewer than 2
    shared pairs or when it is undefined, e.g. both always said keep)."""
    from sklearn.metrics import cohen_kappa_score    # not at the top: `ches --help` imports the export, which imports this

    wanted = _wanted(pair_ids)
    rows = []
    for a, b in combinations(view.annotators, 2):
        da, db_ = view.mine(a), view.mine(b)
        shared = sorted(p for p in da.keys() & db_.keys() if wanted is None or p in wanted)
        x, y = [da[p].decision for p in shared], [db_[p].decision for p in shared]
        kappa = float("nan")
        if len(shared) >= 2 and len(set(x) | set(y)) > 1:
            kappa = float(cohen_kappa_score(x, y, labels=list(DECISION_VALUES)))
        agree = float(np.mean([u == v for u, v in zip(x, y)])) if shared else float("nan")
        rows.append({"a": a, "b": b, "shared": len(shared), "agree": agree, "kappa": kappa})
    return pd.DataFrame(rows, columns=["a", "b", "shared", "agree", "kappa"])


def alpha(view: TeamView, pair_ids: Iterable[str] | None = None) -> float:
    """Krippendorff's alpha (nominal) over the pairs two or more annotators decided (restricted to
    `pair_ids`); NaN when there are none or only one decision value occurs."""
    import krippendorff                              # here, not at the top: like scikit-learn above

    wanted = _wanted(pair_ids)
    votes: dict[str, Counter] = {}
    for decided in view.by_annotator.values():
        for pid, d in decided.items():
            if wanted is None or pid in wanted:
                votes.setdefault(pid, Counter())[d.decision] += 1
    counts = np.array([[c[v] for v in DECISION_VALUES] for c in votes.values() if c.total() >= 2],
                      dtype=np.float64).reshape(-1, len(DECISION_VALUES))     # (pairs, values)
    if len(counts) == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return float("nan")
    return float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))


def conflicts(view: TeamView, pair_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Pairs whose annotators disagree, settled or not: columns pair_id, decisions ("ann-a: keep; ann-b:
    drop"), status (conflict / settled), settled (the adjudicated decision or ""), by (its adjudicator)."""
    wanted = _wanted(pair_ids)
    rows = []
    pids = {p for decided in view.by_annotator.values() for p in decided}
    for pid in sorted(pids):
        if wanted is not None and pid not in wanted:
            continue
        on = view.on_pair(pid)
        if len({d.decision for d in on.values()}) < 2:
            continue
        adj = view.adjudicated.get(pid)
        rows.append({"pair_id": pid, "decisions": "; ".join(f"{a}: {d.decision}" for a, d in on.items()),
                     "status": SETTLED if adj else CONFLICT, "settled": adj.decision if adj else "",
                     "by": adj.annotator if adj else ""})
    return pd.DataFrame(rows, columns=["pair_id", "decisions", "status", "settled", "by"])


def summary(view: TeamView, pair_ids: Iterable[str] | None = None) -> dict:
    """How the team decided, for a manifest (restricted to `pair_ids`): decisions by annotator, conflicts,
    how they were settled, kappa per annotator pair and alpha."""
    wanted = _wanted(pair_ids)
    by_annotator = {a: dict(Counter(d.decision for p, d in view.mine(a).items() if wanted is None or p in wanted))
                    for a in view.annotators}
    table = conflicts(view, wanted)
    settled = table[table["status"] == SETTLED]
    kappas = kappa_table(view, wanted)
    return {
        "annotators": {a: {v: c.get(v, 0) for v in DECISION_VALUES} for a, c in by_annotator.items()},
        "conflicts": int(len(table)),
        "settled": int(len(settled)),
        "settlements": [{"pair_id": r.pair_id, "decisions": r.decisions, "decision": r.settled, "by": r.by}
                        for r in settled.itertuples()],
        "unsettled": table.loc[table["status"] == CONFLICT, "pair_id"].tolist(),
        "kappa": [{"a": r.a, "b": r.b, "shared": int(r.shared), "kappa": None if np.isnan(r.kappa) else r.kappa}
                  for r in kappas.itertuples()],
        "alpha": None if np.isnan(a := alpha(view, wanted)) else a,
    }
