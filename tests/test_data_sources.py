"""ches.engine.files and ches.engine.hub at scale: Hugging Face dataset folders and --split, --limit, bounded decompression."""
from __future__ import annotations

import gzip
import json
import resource
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ches.cli as cli
from ches.engine.files import load_bytes, load_dataset
from ches.engine.hub import snapshot_files
from ches.engine.pairs import DataError


def records(start: int, n: int) -> list[dict]:
    return [{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": f"other {i}"} for i in range(start, start + n)]


def shard(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


README = """---
license: mit
configs:
- config_name: default
  data_files:
  - split: train_prefs
    path: data/train_prefs-*
  - split: test_prefs
    path: data/test_prefs-*
---
# A preference set
"""


@pytest.fixture
def hub_folder(tmp_path) -> Path:
    """Laid out as the Hub lays out HuggingFaceH4/ultrafeedback_binarized: README configs, sharded Parquet."""
    folder = tmp_path / "ultrafeedback_binarized"
    shard(folder / "data" / "train_prefs-00000-of-00002.parquet", records(0, 5))
    shard(folder / "data" / "train_prefs-00001-of-00002.parquet", records(5, 4))
    shard(folder / "data" / "test_prefs-00000-of-00001.parquet", records(100, 3))
    (folder / "README.md").write_text(README)
    (folder / ".gitattributes").write_text("*.parquet filter=lfs")
    return folder


def test_hub_folder_split_from_readme_configs(hub_folder):
    ds = load_dataset(hub_folder, split="train_prefs")
    assert (ds.split, ds.format, len(ds.pairs)) == ("train_prefs", "trl_standard", 9)
    assert [p.chosen for p in ds.pairs] == [f"answer {i}" for i in range(9)]     # shards in order
    assert [p.row for p in ds.pairs] == list(range(1, 10))                          # rows run on across shards
    assert "rows from 6: data/train_prefs-00001-of-00002.parquet" in ds.notes
    assert [p.chosen for p in load_dataset(hub_folder, split="test_prefs").pairs] == ["answer 100", "answer 101", "answer 102"]
    with pytest.raises(DataError, match="choose a split with --split: train_prefs, test_prefs"):
        load_dataset(hub_folder)
    with pytest.raises(DataError, match="no split 'validation'; splits here: train_prefs, test_prefs"):
        load_dataset(hub_folder, split="validation")
    with pytest.raises(DataError, match="no config 'other'; configs in README.md: default"):
        load_dataset(hub_folder, split="train_prefs", config="other")


def test_hub_folder_without_readme_uses_the_hub_file_names(tmp_path):
    folder = tmp_path / "prefs"
    shard(folder / "data" / "train-00000-of-00001.parquet", records(0, 2))
    (folder / "data" / "test-00000-of-00001.jsonl.gz").write_bytes(
        gzip.compress("\n".join(json.dumps(r) for r in records(10, 3)).encode()))
    assert snapshot_files(folder)[0] == "train"
    assert len(load_dataset(folder).pairs) == 2                                     # train by default
    test = load_dataset(folder, split="test")
    assert (test.split, [p.chosen for p in test.pairs]) == ("test", ["answer 10", "answer 11", "answer 12"])
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.jsonl").write_text(json.dumps(records(0, 1)[0]) + "\nnot json\n")
    bad = load_dataset(plain)
    assert len(bad.pairs) == 1 and str(bad.errors[0]).startswith("row 2: train.jsonl: invalid JSON")


def test_split_with_a_single_file_is_an_error(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records(0, 3)))
    with pytest.raises(DataError, match="single file"):
        load_dataset(path, split="train")
    assert cli.main(["score", str(path), "--split", "test", "--out", str(tmp_path)]) == 2
    assert "drop --split" in capsys.readouterr().err


def test_limit_keeps_the_first_usable_pairs_and_stops_reading(tmp_path):
    lines = [json.dumps(r) for r in records(0, 10)]
    lines.insert(2, "{broken")
    lines.append("{also broken")                                   # never read: past the limit
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines))
    ds = load_dataset(path, limit=4)
    assert [p.chosen for p in ds.pairs] == ["answer 0", "answer 1", "answer 2", "answer 3"]
    assert [e.row for e in ds.errors] == [3]
    assert len(load_dataset(path, limit=100).pairs) == 10
    with pytest.raises(DataError, match="at least 1"):
        load_dataset(path, limit=0)


def test_a_decompression_bomb_is_refused_while_streaming(tmp_path):
    bomb = gzip.compress(b"\0" * (16 << 20), compresslevel=9) * 64   # gzip members: 1 GiB of zeros in ~1 MB
    assert len(bomb) < 2 << 20
    (tmp_path / "bomb.jsonl.gz").write_bytes(bomb)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"bomb.jsonl.gz: more than 64 MB of data once decompressed"):
        load_dataset(tmp_path / "bomb.jsonl.gz", max_bytes=64 * 10**6)    # MB: 10^6 bytes (ches.workspace.MB)
    assert time.perf_counter() - started < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300 << 10    # KiB: never held whole
    with pytest.raises(DataError, match="more than 1 MB"):
        load_bytes(gzip.compress(json.dumps(records(0, 1) * 20000).encode()), "up.json.gz", max_bytes=1 << 20)
    good = gzip.compress("\n".join(json.dumps(r) for r in records(0, 3)).encode())
    assert len(load_bytes(good, "up.jsonl.gz", max_bytes=1 << 20).pairs) == 3


def test_parquet_is_capped_by_its_uncompressed_size(tmp_path):
    rows = [{"prompt": "p", "chosen": "a" * 100_000, "rejected": "b"} for _ in range(20)]   # 2 MB of text
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", compression="zstd")
    assert (tmp_path / "t.parquet").stat().st_size < 100_000                                 # compresses away
    with pytest.raises(DataError, match="t.parquet: more than 1 MB of data once decompressed"):
        load_dataset(tmp_path / "t.parquet", max_bytes=1 << 20)
    assert len(load_dataset(tmp_path / "t.parquet", max_bytes=4 << 20).pairs) == 20


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.real_data
def test_a_split_whose_files_are_in_different_formats_is_refused_naming_each(tmp_path):
    """HH and UltraFeedback files in one split are not joined into one format (with every row of the second
    rejected): the load stops and names each file's format."""
    folder = tmp_path / "mixed"
    (folder / "data").mkdir(parents=True)
    with gzip.open(REAL / "hh-rlhf-harmless-base-test.jsonl.gz", "rb") as f:
        (folder / "data" / "train-00000-of-00002.jsonl").write_bytes(b"".join(line for _, line in zip(range(50), f)))
    (folder / "data" / "train-00001-of-00002.jsonl").write_bytes(
        (REAL / "ultrafeedback-binarized-train-500.jsonl").read_bytes())
    with pytest.raises(DataError, match=r"different formats \(data/train-00000-of-00002.jsonl: hh; "
                                        r"data/train-00001-of-00002.jsonl: implicit_messages\)"):
        load_dataset(folder)
    assert len(load_dataset(folder, limit=10).pairs) == 10       # the first file alone is fine
    same = tmp_path / "same"
    shard(same / "data" / "train-00000-of-00002.parquet", records(0, 3))
    (same / "data" / "train-00001-of-00002.jsonl").write_text("\n".join(json.dumps(r) for r in records(3, 2)))
    assert [p.chosen for p in load_dataset(same).pairs] == [f"answer {i}" for i in range(5)]   # one format, two file types


def test_a_config_or_data_dir_never_leads_outside_the_folder(tmp_path):
    secret = tmp_path / "secret"
    shard(secret / "train.parquet", records(0, 2))
    folder = tmp_path / "ds"
    shard(folder / "cfg" / "train.parquet", records(10, 1))
    assert [p.chosen for p in load_dataset(folder, config="cfg").pairs] == ["answer 10"]
    for config in ("../secret", str(secret), "cfg/../../secret"):
        with pytest.raises(DataError, match="not a config name|no config"):
            load_dataset(folder, config=config)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_dir: ../secret\n---\n")
    with pytest.raises(DataError, match="no config '../secret'"):
        load_dataset(folder)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n"
                                      f"  - split: train\n    path: {secret}/*.parquet\n---\n")
    with pytest.raises(DataError, match="no data files"):
        load_dataset(folder)
