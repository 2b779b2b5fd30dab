"""The curation check: which of several curation rules keeps the chosen response's likelihood best when the
run's own model is trained on what each keeps? (the paper's Sec. 6 in small)

API (one call; everything else here is what it is made of):

    from ches.review.export import Rule
    from ches.review.probe.check import Behaviour, CheckSettings, read_check, run_check
    folder = run_check(run_dir, [Rule("ln_ches", 10), Rule("ches", 10)], decisions=None,
                       cs=CheckSettings(n=16, seeds=3),
                       behaviour=Behaviour(prompts=("How do I pick a lock?", ...)))   # optional
    manifest, results = read_check(folder)        # results: one row per seed, arm and pair
    manifest["stats"]["arms"]["ln_ches lowest 10%"]["mean_delta_chosen"]             # nats, summed
    manifest["behaviour"]["before"], manifest["behaviour"]["arms"][arm]["mean_rate"] # rates 0..1

Arms. One arm per rule (named by `arm_name`: "ln_ches lowest 10%", "ches <= 0.5"), and a "random" arm (left
out with CheckSettings(random="none")). For each seed s = 0 .. k-1 every arm trains a fresh copy of the
run's model with the probe's DPO (`ches.review.probe.run.measure`) on n pairs, with the same settings and the
same seed (so the same order of steps):

- rule i: n pairs drawn without replacement (numpy default_rng([s, 1, i])) from the pairs the rule keeps
  (`ches.review.export.select`, decisions and drop flags applied as the export applies them);
- random, CheckSettings.random = "length" (the default), length-matched to the FIRST rule's draw of the
  seed: from the pool (the run's pairs less those the first rule drops by a flag or a 'drop' decision), for
  each of that draw's pairs in a seeded order (default_rng([s, 2]).permutation), take the unused pool pair
  whose |y+| is nearest to its |y+|, ties broken by a seeded uniform key from the same generator. Its mean
  |y+| then follows the curated arm's as closely as the pool allows (the manifest stores both);
- random, "uniform": n pairs drawn without replacement (default_rng([s, 2])) from the same pool.

Numbers, one sign convention: change = after - before, in nats, of log pi(y|x) summed over the response
(|y| tokens: content + EOS); negative = likelihood lost. Per arm and seed, over its n pairs:
dc = mean_i change of log pi(y+_i|x_i); dc_tok = mean_i (change_i / |y+_i|), the change per response token;
dr likewise for y-; len = mean_i |y+_i|; lost = #{i: change_i < 0} / n. Per arm: mean and sd (ddof 1)
over the k seeds ("± sd over seeds").

Verdict: best = the arm with the highest mean dc (ties: the earlier arm). For every other arm a, per seed
d_s = dc(best, s) - dc(a, s) (the arms of a seed share the step order), D = mean_s d_s, SE = sd_s(d_s)/sqrt(k):

    "beyond the seed spread"  iff  |D| > 2 SE        ("within" otherwise)

a two-standard-error screen over k seeds, not a significance test (with 3 seeds a t-test at 5% would need
|D| > 4.30 SE). The same is computed per response token (dc_tok); the verdict says so when the per-token
order differs, and when the arms' mean |y+| differ by more than LENGTH_GAP (the summed change grows with
length). When no pair of any arm lost chosen likelihood it says "no displacement happened at these settings".

Behaviour (optional, `Behaviour`): greedy answers to held-out prompts (`generate`) judged by `judge`
(a Python callable text -> bool; None = the built-in refusal judge `ches.review.probe.behaviour.is_refusal`),
once before training (the untrained model; greedy is deterministic) and after every arm and seed; the rate
= judged True / prompts, per arm its mean and sd over seeds, beside the log-probability change.

Stored as `<run_dir>/checks/<key>/` (manifest.json: arms and their rules, the decisions applied, settings,
statistics, verdict, behaviour summary; results.parquet: one row per seed, arm and pair with |y+| and the
log-probs; behaviour.parquet when measured: one row per arm, seed and prompt with the answer and the
judgement; the untrained model's rows have arm BEFORE and seed -1), written through
`ches.atomic.atomic_folder`. The key covers the run, the rules, the decisions in force, the settings, the
behaviour (prompts, judge name, max_new_tokens) and CHECK_VERSION: the same check again reopens the stored one
(`reuse=False` retrains, e.g. after changing a callable judge's code under the same name). Checks stored by an
older CHECK_VERSION are listed and cited as outdated (`ches.review.probe.storage.citation`), never reread as
new ones. The export manifest cites the latest check with an arm of the exported rule.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ches.version import __version__
from ches.atomic import atomic_folder
from ches.engine.store import read_manifest, read_scores
from ches.review.export import Rule, select
from ches.review.probe.analysis import BEFORE, UNIT, arm_stats, arms_frame, behaviour_stats, verdict
from ches.review.probe.settings import Fit, Pool, ProbeError, ProbeSettings, fit_sizes, one_epoch
from ches.review.probe.storage import (CHECK_VERSION, RESULT_COLUMNS, checks_dir, citation, decisions_digest,
                                       is_complete, list_checks, rule_identity)

if TYPE_CHECKING:
    from ches.engine.forward import Progress

__all__ = ["Behaviour", "CheckSettings", "run_check", "read_check", "read_behaviour", "read_prompts", "list_checks",
           "citation", "arm_stats", "behaviour_stats", "verdict", "arms_frame", "BEFORE", "UNIT", "CHECK_VERSION",
           "checks_dir", "decisions_digest"]

RANDOM = "random"
RANDOM_DRAWS = ("length", "uniform", "none")


@dataclass(frozen=True)
class CheckSettings:
    """How every arm trains: n pairs each, `seeds` seeds (0 .. seeds-1), the probe's training settings, and how
    the random arm is drawn ("length": matched to the first rule's |y+|, "uniform", "none": no random arm)."""
    n: int = 16
    seeds: int = 3
    steps: int | None = None          # None = one epoch = ceil(n / batch_size)
    batch_size: int = 4
    lr: float = 1e-6
    beta: float = 0.1
    optimizer: str = "rmsprop"
    random: str = "length"

    def __post_init__(self) -> None:
        if self.seeds < 2:
            raise ProbeError(f"a curation check needs at least 2 seeds to measure their spread (got {self.seeds})")
        if self.random not in RANDOM_DRAWS:
            raise ProbeError(f"unknown random arm {self.random!r}; choose one of {', '.join(RANDOM_DRAWS)}")
        self.probe(range(self.n), 0)                      # the probe's own checks of n, batch, lr, beta, ...

    def probe(self, rows, seed: int) -> ProbeSettings:
        """The probe settings one arm of one seed trains with."""
        return ProbeSettings(subset="ids", ids=tuple(int(r) for r in rows), steps=self.steps,
                             batch_size=self.batch_size, lr=self.lr, beta=self.beta, optimizer=self.optimizer,
                             seed=seed)

    def describe(self) -> str:
        """One line: pairs per arm, seeds, how each arm trains, how the random arm is drawn."""
        train = one_epoch(self.n, self.batch_size) if self.steps is None else f"{self.steps} step(s)"
        rnd = {"length": "random arm length-matched to the first rule", "uniform": "random arm drawn uniformly",
               "none": "no random arm"}[self.random]
        return (f"{self.n} pairs per arm, seeds 0-{self.seeds - 1}; {train} of batch {self.batch_size}, "
                f"{self.optimizer} lr {self.lr:g}, beta {self.beta:g}; {rnd}")


@dataclass(frozen=True)
class Behaviour:
    """The optional behaviour measure: greedy answers (at most max_new_tokens) to `prompts`, each judged by
    `judge` (text -> bool; None = the built-in refusal judge). `name` says what the judge counts and is part
    of the check's key (default: "refusal" for the built-in judge, else the callable's qualified name)."""
    prompts: tuple[str, ...]
    judge: Callable[[str], bool] | None = None
    max_new_tokens: int = 64
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(str(p) for p in self.prompts))
        if not self.prompts:
            raise ProbeError("the behaviour measure needs at least one prompt")
        if self.max_new_tokens < 1:
            raise ProbeError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if not self.name:
            j = self.judge
            object.__setattr__(self, "name", "refusal" if j is None else
                               f"{getattr(j, '__module__', '')}.{getattr(j, '__qualname__', type(j).__name__)}")

    def judge_fn(self) -> Callable[[str], bool]:
        """The judge: the given callable, or `ches.review.probe.behaviour.is_refusal`."""
        if self.judge is not None:
            return self.judge
        from ches.review.probe.behaviour import is_refusal
        return is_refusal

    def identity(self) -> dict[str, Any]:
        """What the key covers: the prompts' sha256, the judge's name, max_new_tokens."""
        digest = hashlib.sha256(json.dumps(list(self.prompts)).encode()).hexdigest()[:16]
        return {"prompts": digest, "count": len(self.prompts), "judge": self.name,
                "max_new_tokens": int(self.max_new_tokens)}


def read_prompts(path: str | Path) -> tuple[str, ...]:
    """Held-out prompts from a file: JSON Lines (each line a string, or an object with "prompt" / "text" /
    "instruction") or plain text, one prompt per line; blank lines skipped. ProbeError if none."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line[0] in "{\"":
            try:
                v = json.loads(line)
            except ValueError:
                v = line
            if isinstance(v, dict):
                v = next((v[k] for k in ("prompt", "text", "instruction") if isinstance(v.get(k), str)), None)
                if v is None:
                    raise ProbeError(f"{path}, line {i}: an object without a \"prompt\" (or text / instruction) string")
            line = str(v)
        out.append(line)
    if not out:
        raise ProbeError(f"{path} holds no prompts")
    return tuple(out)


# ------------------------------------------------------------------------------------ arms and draws

def as_rules(rules: Rule | Sequence[Rule]) -> list[Rule]:
    """One rule or several, as a non-empty list without repeats (same `rule_identity`)."""
    rules = [rules] if isinstance(rules, Rule) else list(rules)
    if not rules:
        raise ProbeError("a curation check needs at least one rule")
    seen, out = set(), []
    for r in rules:
        k = json.dumps(rule_identity(r.as_dict()), sort_keys=True)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def arm_name(rule: Rule) -> str:
    """A rule's arm: "ln_ches lowest 10%" or "ches <= 0.5"."""
    return (f"{rule.metric} lowest {rule.keep_lowest_percent:g}%" if rule.threshold is None
            else f"{rule.metric} <= {rule.threshold:g}")


def arm_names(rules: Sequence[Rule], random: str) -> list[str]:
    """The arms in order: one per rule (a repeated name gets " (2)", " (3)" ...), then RANDOM unless "none"."""
    names: list[str] = []
    for r in rules:
        base, k = arm_name(r), 2
        name = base
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names + ([] if random == "none" else [RANDOM])


COUNTERPART = {"ches": "ln_ches", "ln_ches": "ches"}


def counterpart(rule: Rule, options: Sequence[Rule]) -> Rule | None:
    """The rule among `options` with the CHES / LN-CHES counterpart of `rule`'s metric (None if none)."""
    want = COUNTERPART.get(rule.metric)
    return next((r for r in options if r.metric == want), None)


def random_pool(sel: pd.DataFrame) -> pd.DataFrame:
    """What the random arm draws from: the run's pairs less those `sel` (the first rule's `select`) drops by a
    flag or a 'drop' decision."""
    gone = sel["reason"].str.startswith("flag:") | (sel["reason"] == "decision:drop")
    return sel.loc[~gone]


def length_matched(pool_rows: np.ndarray, pool_len: np.ndarray, target_len: np.ndarray,
                   rng: np.random.Generator) -> list[int]:
    """Nearest-length matching without replacement (module docstring): one pool row per target, the targets
    taken in a seeded order, each the unused row with the smallest | |y+| - target |, ties by a seeded key."""
    order = rng.permutation(len(target_len))
    key = rng.random(len(pool_rows))                                        # (m,) tie-break
    used = np.zeros(len(pool_rows), dtype=bool)
    out = []
    for t in order:
        cost = np.where(used, np.inf, np.abs(pool_len - target_len[t]))       # (m,)
        j = int(np.lexsort((key, cost))[0])
        used[j] = True
        out.append(int(pool_rows[j]))
    return out


def draws(sels: Sequence[pd.DataFrame], names: Sequence[str], n: int, seed: int, random: str) -> dict[str, list[int]]:
    """The rows each arm trains on for `seed` (module docstring), sorted; ProbeError if a pool is too small.
    `sels`: each rule's `select` table (with len_chosen), in the arms' order."""
    out: dict[str, list[int]] = {}
    for i, (sel, name) in enumerate(zip(sels, names)):
        kept = sel.loc[sel["kept"], "row"].to_numpy()
        if len(kept) < n:
            raise ProbeError(f"the rule {name!r} keeps {len(kept)} pair(s); each arm needs n = {n}: choose n of at "
                             f"most {len(kept)} or keep more")
        out[name] = sorted(int(r) for r in np.random.default_rng([seed, 1, i]).choice(kept, n, replace=False))
    if random == "none":
        return out
    pool = random_pool(sels[0])
    if len(pool) < n:
        raise ProbeError(f"n = {n} is more than the {len(pool)} pairs the random arm draws from")
    rng = np.random.default_rng([seed, 2])
    if random == "uniform":
        out[RANDOM] = sorted(int(r) for r in rng.choice(pool["row"].to_numpy(), n, replace=False))
    else:
        length = sels[0].set_index("row")["len_chosen"]
        target = length.loc[out[names[0]]].to_numpy(dtype=np.float64)
        out[RANDOM] = sorted(length_matched(pool["row"].to_numpy(), pool["len_chosen"].to_numpy(dtype=np.float64),
                                            target, rng))
    return out


def check_fit(preset: Mapping[str, Any], kept: int, n: int | None = None, batch_size: int | None = None) -> Fit:
    """n and batch size for each arm (`ches.review.probe.settings.fit_sizes`): n is drawn from the `kept` pairs
    (with several rules: the fewest any rule keeps; the random arm draws from the run, at least as many)."""
    return fit_sizes(preset, Pool(int(kept), f"the {kept} kept pair{'' if kept == 1 else 's'}"), n, batch_size)


def check_key(run_dir: Path, rules: Rule | Sequence[Rule], digest: str, cs: CheckSettings,
              behaviour: Behaviour | None = None) -> str:
    """16 hex chars over what determines the numbers: run, rules (team rule aside), decisions, settings,
    behaviour, CHECK_VERSION."""
    canon = json.dumps({"run": read_manifest(run_dir)["key"],
                        "rules": [rule_identity(r.as_dict()) for r in as_rules(rules)], "decisions": digest,
                        "settings": asdict(cs), "behaviour": None if behaviour is None else behaviour.identity(),
                        "version": CHECK_VERSION}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def check_digest(sels: Sequence[pd.DataFrame]) -> str:
    """The decisions digest a check's key covers: the first rule's, or one over every rule's when they differ."""
    ds = [decisions_digest(s) for s in sels]
    return ds[0] if len(set(ds)) == 1 else hashlib.sha256(json.dumps(ds).encode()).hexdigest()[:16]


def check_path(run_dir: Path, rules: Rule | Sequence[Rule], decisions: Any, cs: CheckSettings,
               behaviour: Behaviour | None = None) -> Path:
    """Where the check of `rules` with these decisions and settings is (or will be) stored."""
    table = read_scores(run_dir)
    sels = [select(table, r, decisions) for r in as_rules(rules)]
    return checks_dir(run_dir) / check_key(run_dir, rules, check_digest(sels), cs, behaviour)


# ----------------------------------------------------------------------------------------- run

def _rates(lm, behaviour: Behaviour, judge: Callable[[str], bool], arm: str, seed: int) -> pd.DataFrame:
    from ches.review.probe.behaviour import generate

    texts = generate(lm.model, lm.tokenizer, list(behaviour.prompts), behaviour.max_new_tokens)
    return pd.DataFrame({"arm": arm, "seed": seed, "prompt": range(len(texts)), "text": texts,
                         "judged": [bool(judge(t)) for t in texts]})


def run_check(run_dir: Path, rules: Rule | Sequence[Rule], decisions: Any, cs: CheckSettings, *,
              behaviour: Behaviour | None = None, device: str = "auto", batch_tokens: int | None = None,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              reuse: bool = True) -> Path:
    """Train every arm for every seed (a fresh copy of the run's model each time), measure the behaviour if
    asked, and store the check; its folder. A stored check with the same key is returned without training
    (unless reuse=False). `progress(done, total)` counts pair passes over all arms; `should_stop()` cancels
    (ches.review.probe.dpo.ProbeCancelled), leaving nothing behind."""
    from ches.review.probe.dpo import ProbeCancelled, load_policy       # training: only a job imports torch
    from ches.review.probe.run import measure

    run_dir, rules = Path(run_dir), as_rules(rules)
    table = read_scores(run_dir)
    sels = [select(table, r, decisions) for r in rules]
    names = arm_names(rules, cs.random)
    digest = check_digest(sels)
    target = checks_dir(run_dir) / check_key(run_dir, rules, digest, cs, behaviour)
    if reuse and is_complete(target):
        return target
    picks = {seed: draws(sels, names[:len(rules)], cs.n, seed, cs.random) for seed in range(cs.seeds)}
    judge = behaviour.judge_fn() if behaviour is not None else None
    started = time.perf_counter()
    calls, frames, said, info = cs.seeds * len(names), [], [], {}
    if behaviour is not None:
        said.append(_rates(load_policy(run_dir, device=device), behaviour, judge, BEFORE, -1))
    for i, (seed, arm) in enumerate((s, a) for s in range(cs.seeds) for a in names):
        tick = None if progress is None else (lambda done, total, i=i: progress(i * total + done, calls * total))
        lm = load_policy(run_dir, device=device)
        results, info = measure(run_dir, picks[seed][arm], cs.probe(picks[seed][arm], seed), lm, device=device,
                                batch_tokens=batch_tokens, progress=tick, should_stop=should_stop)
        frames.append(results.assign(seed=seed, arm=arm))
        if behaviour is not None:
            if should_stop and should_stop():
                raise ProbeCancelled()
            said.append(_rates(lm, behaviour, judge, arm, seed))
        del lm
    results = pd.concat(frames, ignore_index=True)[["seed", "arm", *RESULT_COLUMNS]]
    stats = arm_stats(results, names)
    spoken = pd.concat(said, ignore_index=True) if said else None
    first = sels[0]
    manifest = {
        "key": target.name, "run": run_dir.name, "created_at": datetime.now(timezone.utc).isoformat(),
        "app_version": __version__, "check_version": CHECK_VERSION,
        "arms": [{"name": name, "rule": r.as_dict(), "rule_describe": r.describe(), "kept": int(s["kept"].sum()),
                  "decisions_digest": decisions_digest(s)} for name, r, s in zip(names, rules, sels)]
        + ([] if cs.random == "none" else [{"name": RANDOM, "rule": None, "draw": cs.random,
                                            "matched_to": names[0] if cs.random == "length" else None,
                                            "pool": int(len(random_pool(first)))}]),
        "rule": rules[0].as_dict(), "rule_describe": rules[0].describe(), "decisions_digest": digest,
        "decisions": {str(d): int(c) for d, c in first.loc[first["decision"] != "", "decision"].value_counts().items()},
        "pool": {"pairs": int(len(first)), "kept": int(first["kept"].sum())},
        "settings": asdict(cs), "describe": cs.describe(), "steps": info["steps"], "model_id": info["model_id"],
        "fingerprint": info["fingerprint"], "device": info["device"], "unit": UNIT, "stats": stats,
        "verdict": verdict(stats),
        "behaviour": None if spoken is None else {**behaviour.identity(), **behaviour_stats(spoken, names)},
        "seconds": round(time.perf_counter() - started, 2),
    }
    with atomic_folder(target) as tmp:
        results.to_parquet(tmp / "results.parquet", index=False)
        if spoken is not None:
            spoken.to_parquet(tmp / "behaviour.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def read_check(check_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, results) of a stored check (any version: see `is_current`)."""
    check_dir = Path(check_dir)
    return (json.loads((check_dir / "manifest.json").read_text(encoding="utf-8")),
            pd.read_parquet(check_dir / "results.parquet"))


def read_behaviour(check_dir: Path) -> pd.DataFrame | None:
    """The stored answers and judgements (arm, seed, prompt, text, judged), or None when not measured."""
    path = Path(check_dir) / "behaviour.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def is_current(manifest: Mapping[str, Any]) -> bool:
    """Whether a stored check has this version's shape (older ones: show their stored verdict, offer a re-run)."""
    return int(manifest.get("check_version", 1)) >= CHECK_VERSION
