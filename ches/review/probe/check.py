"""The curation check: does training on the curated subset keep the chosen response's likelihood better
than training on the raw data? (the paper's Sec. 6 in small, on the run's own model)

For each seed s = 0 .. k-1, two arms are trained from the same untrained model with the probe's DPO
(`ches.review.probe.measure`: same steps, batch, optimizer, lr, beta; the order of steps seeded by s):

- curated: n pairs drawn without replacement (numpy default_rng([s, 1])) from the pairs the rule keeps
  (`ches.review.export.select`, decisions applied as the export applies them);
- random:  n pairs drawn without replacement (default_rng([s, 2])) from all pairs of the run.

Per arm and seed, over its n pairs: mean change of log pi(y+|x) (dc), of log pi(y-|x) (dr), and the
share of pairs whose log pi(y+|x) fell (dc < 0). Per arm: the mean and the standard deviation (ddof 1)
of those per-seed values over the k seeds.

The verdict compares the arms seed by seed: d_s = dc(curated, s) - dc(random, s) (nats; the arms of a
seed share the step order). With mean D = mean_s d_s, SD = sd_s d_s (ddof 1), SE = SD / sqrt(k):

    "beyond the seed spread"  iff  k >= 2 and |D| > 2 SE        ("within" otherwise)

i.e. the mean difference lies more than two standard errors of the per-seed differences from zero. With
3 seeds this is a rough screen (a t-test at 5% would need |D| > 4.30 SE), not a significance test.

A check is stored as `<run_dir>/checks/<key>/` (manifest.json with the rule, the decisions applied, the
settings, the statistics and the verdict; results.parquet with one row per seed, arm and pair), written
through `ches.atomic.atomic_folder`. The key covers the run, the rule, the decisions in force for the
run's pairs, the settings and CHECK_VERSION: the same check again reopens the stored one. The export
manifest cites the latest check of the same rule (`citation`).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ches import __version__
from ches.atomic import atomic_folder
from ches.engine.forward import Progress
from ches.engine.store import read_manifest, read_scores
from ches.review.export import Rule, score_rule, select
from ches.review.probe.analysis import significant
from ches.review.probe.run import measure
from ches.review.probe.settings import Fit, Pool, ProbeError, ProbeSettings, fit_sizes, one_epoch
from ches.review.probe.storage import RESULT_COLUMNS, is_complete, list_folders

CHECK_VERSION = 1
ARMS = ("curated", "random")


@dataclass(frozen=True)
class CheckSettings:
    """How both arms train: n pairs each, `seeds` seeds (0 .. seeds-1), the probe's training settings."""
    n: int = 16
    seeds: int = 3
    steps: int | None = None          # None = one epoch = ceil(n / batch_size)
    batch_size: int = 4
    lr: float = 1e-6
    beta: float = 0.1
    optimizer: str = "rmsprop"

    def __post_init__(self) -> None:
        if self.seeds < 2:
            raise ProbeError(f"a curation check needs at least 2 seeds to measure their spread (got {self.seeds})")
        self.probe(range(self.n), 0)                      # the probe's own checks of n, batch, lr, beta, ...

    def probe(self, rows, seed: int) -> ProbeSettings:
        """The probe settings one arm of one seed trains with."""
        return ProbeSettings(subset="ids", ids=tuple(int(r) for r in rows), steps=self.steps,
                             batch_size=self.batch_size, lr=self.lr, beta=self.beta, optimizer=self.optimizer,
                             seed=seed)

    def describe(self) -> str:
        """One line: pairs per arm, seeds, how each arm trains."""
        train = one_epoch(self.n, self.batch_size) if self.steps is None else f"{self.steps} step(s)"
        return (f"{self.n} pairs per arm, seeds 0-{self.seeds - 1}; {train} of batch {self.batch_size}, "
                f"{self.optimizer} lr {self.lr:g}, beta {self.beta:g}")


def samples(sel: pd.DataFrame, n: int, seed: int) -> dict[str, list[int]]:
    """The rows each arm trains on for `seed` (module docstring), sorted; ProbeError if a pool is too small."""
    kept, everything = sel.loc[sel["kept"], "row"].to_numpy(), sel["row"].to_numpy()
    if len(kept) < n:
        raise ProbeError(f"the rule keeps {len(kept)} pair(s); the curated arm needs n = {n}: choose n of at most "
                         f"{len(kept)} or keep more")
    if len(everything) < n:
        raise ProbeError(f"n = {n} is larger than the run ({len(everything)} pairs)")
    pick = lambda pool, arm: sorted(int(r) for r in np.random.default_rng([seed, arm]).choice(pool, n, replace=False))  # noqa: E731
    return {"curated": pick(kept, 1), "random": pick(everything, 2)}


def check_fit(preset: Mapping[str, Any], kept: int, n: int | None = None, batch_size: int | None = None) -> Fit:
    """n and batch size for each arm (`ches.review.probe.settings.fit_sizes`): n is drawn from the `kept` pairs
    the rule keeps (the random arm draws from the whole run, which holds at least as many)."""
    return fit_sizes(preset, Pool(int(kept), f"the {kept} kept pair{'' if kept == 1 else 's'}"), n, batch_size)


def decisions_digest(sel: pd.DataFrame) -> str:
    """16 hex chars over the decisions in force for the run's pairs (`select`'s `decision` column)."""
    decided = sorted((str(p), str(d)) for p, d in zip(sel["pair_id"], sel["decision"]) if d)
    return hashlib.sha256(json.dumps(decided).encode()).hexdigest()[:16]


def check_key(run_dir: Path, rule: Rule, digest: str, cs: CheckSettings) -> str:
    """16 hex chars over what determines the numbers: run, rule, decisions, settings, CHECK_VERSION."""
    r = score_rule(rule.as_dict())                                           # the decisions: `digest`
    r = {**r, "keep_lowest_percent": float(r["keep_lowest_percent"]),          # 50 and 50.0: the same rule
         "threshold": None if r["threshold"] is None else float(r["threshold"])}
    canon = json.dumps({"run": read_manifest(run_dir)["key"], "rule": r, "decisions": digest,
                        "settings": asdict(cs), "version": CHECK_VERSION}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def checks_dir(run_dir: Path) -> Path:
    """The folder holding a run's curation checks."""
    return Path(run_dir) / "checks"


# ------------------------------------------------------------------------------------ statistics

def arm_stats(results: pd.DataFrame) -> dict[str, Any]:
    """The check's numbers from its results (columns seed, arm and the probe's log-probs); module docstring."""
    t = results.assign(dc=results["logp_chosen_after"] - results["logp_chosen_before"],
                       dr=results["logp_rejected_after"] - results["logp_rejected_before"])
    per = t.groupby(["arm", "seed"]).agg(dc=("dc", "mean"), dr=("dr", "mean"), lost=("dc", lambda v: (v < 0).mean()))
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")  # noqa: E731
    arms = {}
    for arm in ARMS:
        a = per.loc[arm]
        arms[arm] = {"mean_delta_chosen": float(a["dc"].mean()), "sd_delta_chosen": sd(a["dc"]),
                     "mean_delta_rejected": float(a["dr"].mean()), "sd_delta_rejected": sd(a["dr"]),
                     "share_lost": float(a["lost"].mean()), "sd_share_lost": sd(a["lost"]),
                     "per_seed_delta_chosen": [float(v) for v in a["dc"]]}
    d = (per.loc["curated", "dc"] - per.loc["random", "dc"]).to_numpy()        # (k,) per seed
    k = len(d)
    se = sd(d) / math.sqrt(k) if k > 1 else float("nan")
    return {"arms": arms, "seeds": k, "difference": float(d.mean()), "sd_difference": sd(d),
            "two_se": 2 * se, "beyond": bool(k > 1 and abs(d.mean()) > 2 * se),
            "per_seed_difference": [float(v) for v in d]}


def verdict(stats: Mapping[str, Any]) -> str:
    """One plain sentence from `arm_stats`, its numbers in nats to 3 significant figures (`significant`)."""
    x = stats["difference"]
    where = "beyond" if stats["beyond"] else "within"
    return (f"The curated arm kept {significant(abs(x))} nats {'more' if x >= 0 else 'less'} chosen log-probability "
            f"than the random arm, {where} the seed spread (mean of {stats['seeds']} per-seed differences "
            f"{significant(x, signed=True)} nats; two standard errors {significant(stats['two_se'])} nats).")


# ----------------------------------------------------------------------------------------- run

def run_check(run_dir: Path, rule: Rule, decisions: Mapping[str, Any] | None, cs: CheckSettings, *,
              device: str = "auto", batch_tokens: int | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> Path:
    """Train both arms for every seed (a fresh copy of the run's model each time) and store the check; its
    folder. A stored check with the same key is returned without training. `progress(done, total)` counts
    pair passes over all arms; `should_stop()` cancels (ProbeCancelled), leaving nothing behind."""
    run_dir = Path(run_dir)
    sel = select(read_scores(run_dir), rule, decisions)
    digest = decisions_digest(sel)
    target = checks_dir(run_dir) / check_key(run_dir, rule, digest, cs)
    if is_complete(target):
        return target
    draws = {seed: samples(sel, cs.n, seed) for seed in range(cs.seeds)}
    started = time.perf_counter()
    calls, frames, info = cs.seeds * len(ARMS), [], {}
    for i, (seed, arm) in enumerate((s, a) for s in range(cs.seeds) for a in ARMS):
        tick = None if progress is None else (lambda done, total, i=i: progress(i * total + done, calls * total))
        results, info = measure(run_dir, draws[seed][arm], cs.probe(draws[seed][arm], seed), device=device,
                                batch_tokens=batch_tokens, progress=tick, should_stop=should_stop)
        frames.append(results.assign(seed=seed, arm=arm))
    results = pd.concat(frames, ignore_index=True)[["seed", "arm", *RESULT_COLUMNS]]
    stats = arm_stats(results)
    manifest = {
        "key": target.name, "run": run_dir.name, "created_at": datetime.now(timezone.utc).isoformat(),
        "app_version": __version__, "check_version": CHECK_VERSION, "rule": rule.as_dict(),
        "rule_describe": rule.describe(), "decisions_digest": digest,
        "decisions": {str(d): int(c) for d, c in sel.loc[sel["decision"] != "", "decision"].value_counts().items()},
        "pool": {"pairs": int(len(sel)), "kept": int(sel["kept"].sum())},
        "settings": asdict(cs), "describe": cs.describe(), "steps": info["steps"], "model_id": info["model_id"],
        "fingerprint": info["fingerprint"], "device": info["device"], "stats": stats, "verdict": verdict(stats),
        "seconds": round(time.perf_counter() - started, 2),
    }
    with atomic_folder(target) as tmp:
        results.to_parquet(tmp / "results.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def read_check(check_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, results) of a stored check."""
    check_dir = Path(check_dir)
    return (json.loads((check_dir / "manifest.json").read_text(encoding="utf-8")),
            pd.read_parquet(check_dir / "results.parquet"))


def list_checks(run_dir: Path) -> list[tuple[Path, dict]]:
    """Complete checks of a run, newest first."""
    return list_folders(checks_dir(run_dir))


def citation(run_dir: Path, rule: Rule, sel: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """What an export manifest cites: the latest stored check of the same rule (None if there is none):
    its key, verdict (written again from its statistics, so a check stored by an older version reads as a
    new one does), statistics, settings, and whether it applied the same decisions as `sel` (the export's
    `select` table) does."""
    same = [m for _, m in list_checks(run_dir) if score_rule(m.get("rule") or {}) == score_rule(rule.as_dict())]
    if not same:
        return None
    m = same[0]
    return {"key": m["key"], "created_at": m["created_at"], "folder": f"checks/{m['key']}",
            "verdict": verdict(m["stats"]),
            "settings": m["settings"], "stats": {k: v for k, v in m["stats"].items() if not k.startswith("per_seed")},
            "same_decisions": None if sel is None else m["decisions_digest"] == decisions_digest(sel)}
