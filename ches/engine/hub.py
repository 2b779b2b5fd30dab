"""Hugging Face datasets: a folder laid out as a dataset on the Hub (one split, shards in order), or a Hub name.

A folder's splits come from README.md's `configs:` header when it has one, else from the Hub's file
naming (see snapshot_files); its shards are read by ches.engine.readers, one after another, with row
numbers running on across them; the files of one split must share one format (a mix is refused, naming each
file's format). A config or a README `data_dir` never leads outside the folder.

A Hub name is loaded with the `datasets` library as a Hub dataset only (`hf://datasets/<id>`): it is never
resolved as a local path, whatever folders exist where the process runs. `hub_id` validates a typed name.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterable

from ches.engine.formats import Rows, detect_format
from ches.engine.readers import SUFFIXES, Budget, file_rows, parquet_rows
from ches.engine.records import normalise
from ches.engine.pairs import DataError, Dataset, RowError

HUB_PREFIX = "hf://datasets/"   # a source that is a Hugging Face Hub dataset only, never a local path
NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")   # looks like a Hub name: "owner/name"
_PART = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_ID = re.compile(rf"^{_PART}/{_PART}$")               # the Hub's rules: no '..' or '--', no '.'/'-' at either end
_CHOICE = re.compile(r"^[\w][\w.+%:\[\]-]{0,199}$")  # a config or split name (no path separators)


def hub_id(name: str, what: str = "dataset") -> str:
    """`name` stripped, if it is a Hugging Face id "owner/name" (the Hub's rules, at most 96 characters);
    else DataError. Nothing on disk is looked at."""
    text = str(name).strip()
    if len(text) > 96 or not _ID.match(text) or ".." in text or "--" in text:
        raise DataError(f"{text[:100]!r} is not a Hugging Face {what} id: owner/name (letters, digits, '-', '_', "
                        f"'.'), e.g. HuggingFaceH4/ultrafeedback_binarized")
    return text


def _choice(value: str | None, what: str) -> str | None:
    if value is not None and not _CHOICE.match(value):
        raise DataError(f"{value[:100]!r} is not a {what} name (letters, digits, '_', '-', '.')")
    return value


def load_folder(source: str | Path, *, format: str | None, split: str | None, config: str | None,
                limit: int | None, max_bytes: int | None, columns: dict[str, str] | None) -> Dataset:
    """One split of a dataset folder (see snapshot_files); the arguments as in files.load_dataset."""
    folder = Path(source)
    split, files = snapshot_files(folder, split, config)
    errors: list[RowError] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        rows = _shard_rows(folder, files, errors, Budget(max_bytes), stack, notes, one_format=not format and not columns)
        dataset = normalise(rows, errors, format, str(source), limit=limit, notes=notes, columns=columns)
    dataset.split = split
    return dataset


def load_hub(name: str, *, format: str | None, split: str | None, config: str | None, limit: int | None,
             columns: dict[str, str] | None) -> Dataset:
    """One split (default "train") of a dataset on the Hugging Face Hub, never a local folder; every
    failure is one DataError."""
    name, config, split = hub_id(name), _choice(config, "config"), _choice(split or "train", "split")
    try:
        import datasets as hf

        data = hf.load_dataset(HUB_PREFIX + name, config, split=split)
        dataset = normalise(enumerate(data, 1), [], format, name, limit=limit, columns=columns,
                            total=lambda: len(data))
    except DataError:
        raise
    except Exception as e:  # network, auth, missing split, missing library: all one message
        why = ("it needs a loading script, which is not supported" if "scripts are no longer supported" in str(e)
               else f"{type(e).__name__}: {e}")
        raise DataError(f"could not load the Hugging Face dataset {name!r} (config={config!r}, split={split!r}): "
                        f"{why}") from None
    dataset.split = split
    return dataset


def snapshot_files(folder: Path, split: str | None = None, config: str | None = None) -> tuple[str, list[Path]]:
    """(split, its data files in order) of a folder laid out as a dataset on the Hugging Face Hub.

    1. README.md's YAML header `configs:` (config_name, data_dir, data_files: [{split, path}], default)
       decides, as on the Hub;
    2. otherwise the Hub's file naming: data/<split>-00000-of-00002.parquet, train.jsonl, test/..., and
       `config` may name a subfolder.
    Without `split`: "train", or the only split there is.
    """
    splits = _readme_splits(folder, config)
    if splits is None:
        base = _inside(folder, _choice(config, "config")) if config else folder
        if config and not base.is_dir():
            raise DataError(f"{folder}: no config {config!r} (no configs in README.md, no subfolder {config!r})")
        splits = _default_splits(base)
    splits = {name: files for name, files in splits.items() if files}
    if not splits:
        raise DataError(f"{folder}: no data files ({', '.join(SUFFIXES)}, optionally .gz) in this folder")
    if split is None:
        split = "train" if "train" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{folder}: choose a split with --split: {', '.join(splits)}")
    if split not in splits:
        raise DataError(f"{folder}: no split {split!r}; splits here: {', '.join(splits)}")
    files = [f for f in splits[split] if f.name.lower().removesuffix(".gz").endswith(SUFFIXES)]
    if not files:
        found = ", ".join(sorted({"".join(f.suffixes) or f.name for f in splits[split]}))
        raise DataError(f"{folder}: split {split!r} has no file this loader reads (found {found}; "
                        f"expected {', '.join(SUFFIXES)}, optionally .gz)")
    return split, files


def _readme_splits(folder: Path, config: str | None) -> dict[str, list[Path]] | None:
    """{split: files} from README.md's `configs:` header, or None when it has none."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return None
    import yaml

    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{readme}: unreadable YAML header: {e}") from None
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list) or not configs:
        return None
    by_name = {str(c.get("config_name", "default")): c for c in configs if isinstance(c, dict)}
    if config is None:
        chosen = next((c for c in by_name.values() if c.get("default")), None) or by_name.get("default")
        if chosen is None and len(by_name) == 1:
            chosen = next(iter(by_name.values()))
        if chosen is None:
            raise DataError(f"{folder}: choose a config with --config: {', '.join(by_name)}")
    elif config in by_name:
        chosen = by_name[config]
    else:
        raise DataError(f"{folder}: no config {config!r}; configs in README.md: {', '.join(by_name)}")
    base = _inside(folder, str(chosen.get("data_dir") or "."))
    data_files = chosen.get("data_files")
    if data_files is None:
        return _default_splits(base)
    if isinstance(data_files, (str, list)) and not (isinstance(data_files, list) and data_files
                                                    and isinstance(data_files[0], dict)):
        data_files = [{"split": "train", "path": data_files}]
    elif isinstance(data_files, dict):
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    splits: dict[str, list[Path]] = {}
    for entry in data_files:
        patterns = entry.get("path", []) if isinstance(entry, dict) else []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            splits.setdefault(str(entry.get("split", "train")), []).extend(_glob(base, str(pattern)))
    return splits


def _inside(folder: Path, sub: str) -> Path:
    """folder/sub, if it stays inside `folder` (symlinks followed); else the DataError of a missing config."""
    root = folder.resolve()
    target = (folder / sub).resolve()
    if target != root and root not in target.parents:
        raise DataError(f"{folder}: no config {sub!r} here")
    return folder / sub


def _default_splits(base: Path) -> dict[str, list[Path]]:
    """{split: files} by the Hub's naming conventions (the `datasets` library's own patterns)."""
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    try:
        patterns = get_data_patterns(str(base))
    except EmptyDatasetError:
        return {}
    return {str(split): sorted({f for p in pats for f in _glob(base, p)}) for split, pats in patterns.items()}


def _glob(base: Path, pattern: str) -> list[Path]:
    """Files under `base` matching a Hub data_files pattern: no hidden files, no README, nothing outside."""
    if pattern.endswith("**"):                          # fsspec's "**" matches files, pathlib's only folders
        pattern += "/*"
    root = base.resolve()
    if Path(pattern).is_absolute() or pattern.startswith(("/", "\\")):
        return []
    found = sorted(p for p in base.glob(pattern) if p.is_file())
    return [p for p in found if not any(part.startswith(".") for part in p.relative_to(base).parts)
            and p.name != "README.md" and root in p.resolve().parents]


class _Shifted:
    """The errors list of one shard: its row numbers shifted by the rows before it, its name in the reason."""

    def __init__(self, errors: list[RowError], offset: int, name: str):
        self.errors, self.offset, self.name, self.last = errors, offset, name, 0

    def append(self, e: RowError) -> None:
        self.last = max(self.last, e.row)
        self.errors.append(RowError(self.offset + e.row, f"{self.name}: {e.reason}"))


def _shard_rows(folder: Path, files: list[Path], errors: list[RowError], budget: Budget,
                stack: contextlib.ExitStack, notes: list[str], one_format: bool = True) -> Rows:
    """Rows of every shard in order; row numbers run on across shards (a note says where each starts).
    With `one_format`, a shard whose rows are in another format than the shards before it is a DataError
    naming each file's format (detected from its first row in a known format)."""
    offset = 0
    formats: dict[str, str] = {}                       # file -> the format of its first recognised row
    for path in files:
        name = str(path.relative_to(folder))
        shifted = _Shifted(errors, offset, name)
        if len(files) > 1:
            notes.append(f"rows from {offset + 1}: {name}")
        if path.name.lower().endswith(".parquet"):
            rows: Iterable = parquet_rows(path, name, budget)
        else:
            rows = file_rows(stack.enter_context(open(path, "rb")), name, shifted, budget)  # type: ignore[arg-type]
        last = 0
        for last, value in rows:
            if one_format and name not in formats and (fmt := detect_format(value)):
                formats[name] = fmt
                if len(set(formats.values())) > 1:
                    raise DataError(f"{folder}: the files of this split are in different formats ("
                                    + "; ".join(f"{f}: {v}" for f, v in formats.items()) + "). Load them one at a "
                                    "time, or put each format in its own folder or split")
            yield offset + last, value
        offset += max(last, shifted.last)

