"""A curated run as a `datasets.Dataset` in memory, or as a Hugging Face dataset folder on disk.

    <folder>/data/train-00000-of-00001.parquet   the kept pairs, in dataset order: each pair's source
                                                 record ("hf") or TRL's prompt / chosen / rejected ("hf-trl")
    <folder>/README.md                           the dataset card: YAML front matter (`configs` -> the
                                                 train split, `tags`, and `ches`: the export manifest) and a
                                                 text stating model, weights fingerprint, rule, decisions,
                                                 how the team decided, counts and score quantiles

`datasets.load_dataset(folder)` reads it back; `hf upload OWNER/NAME FOLDER --repo-type dataset` (or
`HfApi().upload_folder`) pushes it to the Hub as is; `ches.engine.files.load_dataset(folder)` reloads the
same pair ids. The manifest is `export.curated`'s plus `files` (each data file's sha256 and bytes); in
memory it is `json.loads(dataset.info.description)`.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

from ches.atomic import atomic_folder
from ches.engine.pairs import Pair
from ches.engine.report import dataset_stem
from ches.review.export import Decisions, ExportError, ExportExists, Rule, as_row, curated
from ches.workspace import confine

HF_FORMATS = {"hf": "input", "hf-trl": "trl"}      # folder format -> the rows it holds (export.as_row)
DATA_FILE = "data/train-00000-of-00001.parquet"
CARD_KEY = "ches"                                  # the manifest's key in the card's YAML front matter


def to_dataset(pairs: list[Pair], fmt: str, manifest: Mapping[str, Any]):
    """`datasets.Dataset` of `as_row(pair, fmt)` per pair, its `info.description` the manifest as JSON.
    ExportError (naming the source row where one is to blame) when the rows cannot form one Arrow table."""
    import datasets
    import pyarrow as pa

    rows = [as_row(p, fmt) for p in pairs]
    info = datasets.DatasetInfo(description=json.dumps(manifest, ensure_ascii=False))
    try:
        return datasets.Dataset.from_list(rows, info=info)
    except UnicodeEncodeError:
        bad = next((p.row for p, r in zip(pairs, rows) if not _utf8(r)), "?")
        raise ExportError(f"row {bad}: its record holds text that is not valid Unicode (a lone surrogate), which "
                          "Parquet cannot store; export as JSON Lines instead") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise ExportError(f"the kept records do not form one table ({e}): a column holds values of different "
                          "types across rows; export as JSON Lines, or as TRL (hf-trl)") from None


def _utf8(row: dict) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def export_folder(exports_dir: str | Path, name: str) -> Path:
    """The dataset folder for a user-typed `name`, confined to `exports_dir` (PathError outside it)."""
    name = str(name).strip().removesuffix("/")
    if not name or name.startswith("."):
        raise ExportError(f"{name!r} is not a usable folder name")
    return confine(exports_dir, name)


def is_export_folder(folder: Path) -> bool:
    """A folder this module wrote: its README.md front matter carries the `ches` manifest."""
    card = Path(folder) / "README.md"
    return card.is_file() and f"\n{CARD_KEY}:" in card.read_text(encoding="utf-8", errors="replace").split("\n---", 1)[0]


def card(manifest: Mapping[str, Any]) -> str:
    """README.md: YAML front matter (configs, tags, the manifest under `ches`) and the text a reader sees."""
    import yaml

    front = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
             "tags": ["ches-studio", "dpo", "preference"], CARD_KEY: dict(manifest)}
    c = manifest["counts"]
    rule = manifest["rule"]
    keep = (f"the {rule['keep_lowest_percent']:g}% of pairs with the lowest {manifest['metric']}"
            if rule["threshold"] is None else f"pairs with {manifest['metric']} <= {rule['threshold']:g}")
    q = manifest["quantiles"]
    metric = manifest["metric"]
    quantiles = "\n".join(f"| {k} | {_num(q['before'][metric].get(k))} | {_num(q['after'][metric].get(k))} |"
                          for k in q["before"][metric])
    name = dataset_stem(manifest.get("source")).replace("`", "")
    lines = [
        f"# {name}, curated with CHES Studio", "",
        f"{c['kept']:,} of {c['pairs']:,} preference pairs, kept because the model's hidden embeddings say they are "
        "the least likely to cause likelihood displacement in DPO (CHES, Razin et al., ICLR 2025).", "",
        f"- **rows**: {'the source records as read' if manifest['row_format'] == 'input' else 'TRL conversational prompt / chosen / rejected'}",
        f"- **model**: `{manifest.get('model_id')}`, weights fingerprint `{manifest.get('fingerprint')}`, "
        f"max length {manifest.get('max_length')}, dtype {manifest.get('dtype')}",
        f"- **rule**: keep {keep}; drop flags: {', '.join(rule['drop_flags']) or 'none'}"
        + (f"; highest kept score {manifest['cutoff']:.6g}" if manifest.get("cutoff") is not None else ""),
        "- **decisions** (override the rule): " + (", ".join(f"{k} {v}" for k, v in manifest["decisions"].items())
                                                    or "none") + f"; {c['overridden_by_decisions']} changed the outcome",
        *_team_lines(manifest.get("team") or {}),
        f"- **counts**: kept {c['kept']:,}, dropped {c['dropped']:,} "
        f"({', '.join(f'{k} {v}' for k, v in c['dropped_by_reason'].items()) or 'none'})",
        f"- **run**: `{manifest.get('run')}`, dataset hash `{manifest.get('dataset_hash')}`, "
        f"CHES Studio {manifest.get('app_version')}, {manifest.get('created_at')}", "",
        f"| {metric} quantile | all pairs | kept |", "|---|---|---|", quantiles, "",
        f"The full manifest is the `{CARD_KEY}` key of this card's YAML header.", "",
        "```python", "from datasets import load_dataset", "", 'ds = load_dataset("<this folder or owner/name>", split="train")',
        "```", ""]
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(lines)


def _team_lines(team: Mapping[str, Any]) -> list[str]:
    """The card's lines on how the team decided (export.team_report): the team rule, decisions by annotator,
    conflicts and what settled them, agreement."""
    if not team:
        return []
    lines = [f"- **team rule**: {team['rule']} ({team['description']}); an adjudicator's decision wins under every rule"]
    if "annotators" not in team:
        return lines
    people = "; ".join(f"`{a.replace('`', '')}`: " + ", ".join(f"{k} {v}" for k, v in c.items()) for a, c in team["annotators"].items())
    settled = ", ".join(f"{v} by {'the ' if k != 'adjudication' else ''}{k}" for k, v in team["settled_by"].items())
    kappa = "; ".join(f"`{k['a'].replace('`', '')}` / `{k['b'].replace('`', '')}` {_num(k['kappa']) or 'undefined'} on {k['shared']} shared"
                      for k in team["kappa"])
    return lines + [f"- **decisions by annotator**: {people or 'none'}",
                    f"- **conflicts**: {team['conflicts']}" + (f" ({settled})" if team["conflicts"] else ""),
                    f"- **agreement**: Cohen's kappa {kappa or 'none (fewer than two annotators)'}; "
                    f"Krippendorff's alpha {_num(team['alpha']) or 'undefined'}"]


def _num(x) -> str:
    return "" if x is None else f"{x:.6g}"


def export_hf(run_dir: str | Path, rule: Rule, decisions: Decisions, folder: str | Path, *,
              fmt: str = "hf", annotator: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the kept pairs of `run_dir` as a Hugging Face dataset folder (module docstring); returns the manifest.

    An existing `folder` is replaced only with overwrite=True, and only when it is empty or an earlier such
    export (else ExportExists / ExportError, nothing touched). The Parquet file and the card are built in
    memory first, then the folder is written whole (atomic_folder): a failure while building leaves the old
    folder intact. ExportError when the rule keeps no pair (a dataset with no rows has no columns to load).
    """
    if fmt not in HF_FORMATS:
        raise ExportError(f"unknown dataset folder format {fmt!r}; valid: {', '.join(HF_FORMATS)}")
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise ExportError(f"{folder.parent}: no such folder")
    if folder.exists():
        if not overwrite:
            raise ExportExists(f"{folder} already exists: choose another name, or overwrite it (ches export --force)")
        if not folder.is_dir() or (any(folder.iterdir()) and not is_export_folder(folder)):
            raise ExportError(f"{folder} is not a dataset folder CHES Studio wrote: it is left alone; choose another name")
    pairs, curation = curated(run_dir, rule, decisions, fmt=HF_FORMATS[fmt], annotator=annotator)
    if not pairs:
        raise ExportError("the rule keeps no pair: nothing to write as a dataset (keep a larger share)")
    buffer = io.BytesIO()
    to_dataset(pairs, HF_FORMATS[fmt], curation).to_parquet(buffer)
    data = buffer.getvalue()
    first = ("kind", "app_version", "created_at")
    manifest = {**{k: curation[k] for k in first}, "folder": folder.name,
                "files": {DATA_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
                **curation, "format": fmt, "row_format": HF_FORMATS[fmt]}
    text = card(manifest)
    if folder.exists():
        shutil.rmtree(folder)
    with atomic_folder(folder) as tmp:
        (tmp / "data").mkdir()
        (tmp / DATA_FILE).write_bytes(data)
        (tmp / "README.md").write_text(text, encoding="utf-8")
    return manifest
