"""CHES Studio: find preference pairs that cause likelihood displacement in DPO.

CHES (Razin et al., ICLR 2025, Def. 2-3) scores a pair (x, y+, y-) by how close the two
responses sit in the model's own hidden-embedding space:

    CHES    = <S+, S-> - ||S+||^2,              S = sum of last-layer hidden states over the response
    LN-CHES = <m+, m- - m+>,  m = S / |y|

Higher = more likely displacement; curation keeps the lowest scores.

The Python API, from data to a `trl.DPOTrainer` (every import is lazy: `import ches` loads no library):

    run = ches.score("pairs.jsonl", model="smollm2")              # a ches.Run: the run folder, reused if scored
    ds = ches.curate(run, rule=ches.Rule(keep_lowest_percent=95), format="trl")   # a datasets.Dataset
    ds = ches.curate(run, rule=ches.Rule(team="majority"))        # several annotators: the majority decides
    json.loads(ds.info.description)                               # its manifest: model, rule, counts, ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ches.version import __version__

if TYPE_CHECKING:                      # for readers and type checkers only: nothing is imported at run time
    import datasets
    import pandas as pd

    from ches.review.export import Rule

__all__ = ["Run", "Rule", "score", "curate", "__version__"]


def __getattr__(name: str):
    if name == "Rule":                 # ches.Rule is ches.review.export.Rule, imported on first use
        from ches.review.export import Rule

        return Rule
    raise AttributeError(f"module 'ches' has no attribute {name!r}")


@dataclass(frozen=True)
class Run(os.PathLike):
    """A complete run folder (scores, texts, manifest); usable wherever a path is (`os.fspath(run)`, `str(run)`)."""
    path: Path

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def manifest(self) -> dict:
        from ches.engine.store import read_manifest

        return read_manifest(self.path)

    @property
    def model(self) -> str:
        """The model the run was scored with, as `from_pretrained` takes it (a Hub id, a folder; the bundled
        default: its local folder, no download): train the model whose hidden states chose the pairs."""
        from ches.engine.models import resolve

        return resolve(self.manifest["key"]["model_id"])

    @property
    def scores(self) -> "pd.DataFrame":
        """One row per pair: row, pair_id, every metric of ches.engine.metrics.METRICS, lengths, flags."""
        from ches.engine.store import read_scores

        return read_scores(self.path)


def score(data: str | Path | Iterable[Mapping[str, Any]], model: str | None = None, *,
          runs: str | Path | None = None, format: str | None = None, split: str | None = None,
          config: str | None = None, columns: dict[str, str] | None = None, limit: int | None = None,
          max_length: int | None = None, dtype: str = "auto", device: str = "auto",
          batch_tokens: int | None = None, trust_remote_code: bool = False,
          progress: Callable[[int, int], None] | None = None) -> Run:
    """Score every pair of `data` like `ches score` and return the run (an existing run of the same data,
    model, template, max length and dtype is reused; an interrupted one resumed).

    data: a file (.jsonl, .json, .csv, .parquet, .gz), a Hugging Face dataset folder or Hub name (with
    `split` / `config`), or rows already in memory (a list of dicts, a `datasets.Dataset`). model: the
    bundled default (None), a Hub id or a local folder. runs: the runs folder (default: the workspace's).
    Rows that cannot be read are skipped with a warning naming them (they are listed in the run's
    manifest too). `progress(responses done, responses total)` is called as scoring goes. Raises
    DataError / ModelError / ValueError on bad input.

    >>> run = ches.score("data/sample.jsonl", limit=8)     # the bundled model, offline; again: the same run
    >>> len(run.scores), sorted(run.scores.columns)[:4]
    (8, ['ches', 'edit_sim', 'flags', 'last_hidden_ip'])
    >>> ches.score("data/sample.jsonl", limit=8) == run
    True
    """
    import warnings

    from ches.engine.files import load_dataset
    from ches.engine.records import load_records
    from ches.engine.models import DEFAULT_MODEL, load_model
    from ches.engine.pipeline import score_dataset
    from ches.engine.models import DEFAULT_MAX_LENGTH
    from ches.workspace import workspace

    if isinstance(data, (str, Path)):
        ds = load_dataset(data, format=format, split=split, config=config, limit=limit, columns=columns)
    else:
        ds = load_records(data, format=format, limit=limit, columns=columns)
    if ds.errors:
        shown = "; ".join(str(e) for e in ds.errors[:5]) + (" ..." if len(ds.errors) > 5 else "")
        warnings.warn(f"skipped {len(ds.errors)} row(s) that could not be read: {shown}", stacklevel=2)
    lm = load_model(model or DEFAULT_MODEL, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    folder = score_dataset(ds, lm, runs_root=Path(runs) if runs else workspace().runs,
                           max_length=max_length or DEFAULT_MAX_LENGTH, batch_tokens=batch_tokens, progress=progress)
    return Run(Path(folder))


def curate(run: Run | str | Path, rule: "Rule | None" = None,
           decisions: Mapping[str, Any] | str | Path | None = None, *, format: str = "input",
           annotator: str | None = None, runs: str | Path | None = None) -> "datasets.Dataset":
    """The pairs of `run` that `rule` keeps, as a `datasets.Dataset`, exactly like `ches export`.

    run: a Run, a run folder, or a run id (or unique prefix) under `runs` (default: the workspace's).
    rule: a ches.Rule (default: keep the lowest 95% by LN-CHES, drop identical / empty pairs, the latest
    decision of anyone applies); `Rule(team=...)` says how several annotators' decisions on a pair become
    the team's (ches.review.team_rules.TEAM_RULES: latest, majority, unanimous_keep, any_drop, adjudicated).
    decisions: None = the workspace's annotation database if it exists (as `ches export`); a path = that
    database (both: everyone's decisions, combined by `rule.team`); a mapping pair_id -> "keep" / "drop" /
    "flag", applied as given; {} = none. `annotator`: only that person's decisions from the database.
    format: "input" = each kept pair's source record, in the source's own columns; "trl" = TRL's
    conversational prompt / chosen / rejected (ches.engine.pairs.to_trl), ready for `trl.DPOTrainer`.
    Rows are in dataset order. Provenance: `json.loads(ds.info.description)` is the export manifest (run,
    model and weights fingerprint, rule, decisions, how the team decided, counts, score quantiles).

    >>> run = ches.score("data/sample.jsonl", limit=8)
    >>> ds = ches.curate(run, rule=ches.Rule(keep_lowest_percent=50), format="trl", decisions={})
    >>> ds.column_names, ds[0]["chosen"][0]["role"]
    (['prompt', 'chosen', 'rejected'], 'assistant')
    >>> manifest = json.loads(ds.info.description)
    >>> manifest["counts"]["kept"] == len(ds) <= 4, manifest["rule"]["keep_lowest_percent"]
    (True, 50)
    """
    from ches.cli.common import resolve_run
    from ches.review.team_rules import TeamView
    from ches.review.export import ExportError, Rule, curated
    from ches.review.hub_export import to_dataset
    from ches.workspace import workspace

    run_dir = resolve_run(os.fspath(run), Path(runs) if runs else workspace().runs)
    rule = rule if rule is not None else Rule()
    if decisions is None or isinstance(decisions, (str, Path)):
        db = Path(decisions) if decisions is not None else workspace().decisions
        if decisions is not None and not db.is_file():
            raise ExportError(f"{db}: no such decisions database")
        decisions = TeamView.read(db) if db.is_file() else TeamView()
    pairs, manifest = curated(run_dir, rule, decisions, fmt=format, annotator=annotator)
    return to_dataset(pairs, format, manifest)
