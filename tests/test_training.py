"""Into training: `ches.score` and `ches.curate` (a `datasets.Dataset` with its provenance), the Hugging Face
dataset folder (`ches export --format hf`) read back by `datasets.load_dataset` and by ches' own reader, and
one `trl.DPOTrainer` step on a tiny random Llama from a curated set."""
from __future__ import annotations

import hashlib
import json
import math
import ast
import os
import re
import subprocess
import sys
import warnings

import pytest
import yaml

import ches
from ches.cli import main
from ches.engine.files import load_dataset
from ches.engine.records import load_records
from ches.review import decisions as decision_log
from ches.review.export import ExportError, ExportExists, Rule
from ches.review.hub_export import DATA_FILE, export_hf
from conftest import ROOT, SAMPLE, make_fake_run

N = 16


def records() -> list[dict]:
    """16 sample pairs with a column of the source's own (`source_id`)."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:N]
    return [{**json.loads(line), "source_id": f"s{i}"} for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory) -> ches.Run:
    """The 16 pairs (and one unreadable row) scored through the public API with the tiny random Llama."""
    rows = records() + [{"prompt": "no responses here"}]
    with pytest.warns(UserWarning, match=r"skipped 1 row\(s\).*row 17"):
        return ches.score(rows, model=str(tiny_model_dir), runs=tmp_path_factory.mktemp("api-runs"), max_length=64)


def lowest(run: ches.Run, percent: float) -> list[str]:
    """The pair ids the percent rule keeps, by hand: the floor(n p / 100) lowest LN-CHES, in dataset order."""
    t = run.scores
    k = math.floor(len(t) * percent / 100)
    keep = set(t.sort_values(["ln_ches", "row"])["pair_id"].head(k))
    return [p for p in t["pair_id"] if p in keep]


def test_score_returns_the_run_and_reuses_it(run, tiny_model_dir):
    assert isinstance(run, ches.Run) and os.path.isdir(run) and (run.path / "manifest.json").is_file()
    assert run.scores["pair_id"].tolist() == [p.pair_id for p in load_records(records()).pairs]
    assert run.manifest["key"]["model_id"] == str(tiny_model_dir) and run.manifest["key"]["max_length"] == 64
    finished = run.manifest["finished_at"]
    with warnings.catch_warnings(record=True):
        again = ches.score(records() + [{"prompt": "no responses here"}], model=str(tiny_model_dir),
                           runs=run.path.parent, max_length=64)
    assert again == run and again.manifest["finished_at"] == finished               # reused, not scored again


def test_import_ches_stays_light():
    import subprocess
    import sys

    code = "import sys, ches; print(sorted(m for m in ('torch', 'pandas', 'datasets', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_curate_gives_the_kept_source_records_with_their_provenance(run, tiny_model_dir):
    ds = ches.curate(run, rule=Rule(keep_lowest_percent=50), decisions={})
    kept = lowest(run, 50)
    assert len(ds) == len(kept) == N // 2
    by_id = {p.pair_id: p.record for p in load_records(records()).pairs}
    assert ds.to_list() == [by_id[p] for p in kept]                                # the source's own columns
    assert ds.column_names == list(records()[0])                                    # prompt, chosen, rejected, category, source_id
    m = json.loads(ds.info.description)
    assert m["model_id"] == str(tiny_model_dir) and m["fingerprint"] == run.manifest["key"]["fingerprint"]
    assert m["rule"]["keep_lowest_percent"] == 50 and m["counts"]["kept"] == N // 2 and m["counts"]["pairs"] == N
    assert m["quantiles"]["after"]["ln_ches"]["q100"] <= m["quantiles"]["before"]["ln_ches"]["q100"]
    by_run_id = ches.curate(run.id[:8], rule=Rule(keep_lowest_percent=50), decisions={}, runs=run.path.parent)
    assert by_run_id.to_list() == ds.to_list()


def test_curate_trl_form_and_decisions(run, workspace_env):
    kept, everyone = lowest(run, 50), run.scores["pair_id"].tolist()
    dropped = [p for p in everyone if p not in kept]
    ds = ches.curate(run, rule=Rule(keep_lowest_percent=50), decisions={kept[0]: "drop", dropped[0]: "keep"},
                     format="trl")
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    ids = [p.pair_id for p in load_records(ds.to_list()).pairs]                    # TRL rows reload to the pairs
    assert ids == [p for p in everyone if p in (set(kept) - {kept[0]}) | {dropped[0]}]
    assert ds[0]["chosen"][0]["role"] == "assistant"
    # no decisions given: the workspace's database, as `ches export` reads it
    decision_log.record(workspace_env.workspace / "decisions.sqlite", kept[1], "drop", annotator="ann")
    ids = [p.pair_id for p in load_records(ches.curate(run, rule=Rule(keep_lowest_percent=50)).to_list()).pairs]
    assert kept[1] not in ids and len(ids) == len(kept) - 1
    with pytest.raises(ExportError, match="no such decisions database"):
        ches.curate(run, decisions=workspace_env.workspace / "missing.sqlite")


@pytest.mark.real_model
def test_the_readme_training_example_runs_as_written_offline(tmp_path):
    """docs/cli-and-api.md, Into training: the code block as written, in a fresh folder, with the Hub unreachable
    (offline mode: any download fails): it scores with the bundled model, curates and trains it."""
    block = re.search(r"\n## Into training\n\n```python\n(.*?)```", (ROOT / "docs" / "cli-and-api.md").read_text(), re.S).group(1)
    (tmp_path / "data").symlink_to(ROOT / "data")
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **offline, "CHES_WORKSPACE": str(tmp_path / "workspace")})
    assert done.returncode == 0, done.stderr[-3000:]
    counts = ast.literal_eval(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert 0 < counts["kept"] < counts["pairs"] == 32, counts                         # the 95% rule dropped some
    assert "'train_loss'" in done.stdout                                              # trainer.train() ran its steps


def test_one_dpo_step_with_trl_on_a_curated_set(run, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    ds = ches.curate(run, rule=Rule(keep_lowest_percent=50), decisions={}, format="trl")
    assert run.model == str(tiny_model_dir)                                          # what was scored: what to train
    tokenizer = AutoTokenizer.from_pretrained(run.model)
    assert tokenizer.chat_template                                                  # TRL applies it to the messages
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-2,
                     max_length=64, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())


# --------------------------------------------------------------------------- the Hugging Face folder

def front_matter(folder) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, re.S).group(1))


@pytest.mark.parametrize("fmt", ["hf", "hf-trl"])
def test_hf_folder_round_trips_through_datasets_and_ches(run, tmp_path, fmt):
    import datasets

    rule = Rule(keep_lowest_percent=75)
    folder = tmp_path / "curated"
    m = export_hf(run, rule, {}, folder, fmt=fmt)
    kept = lowest(run, 75)
    loaded = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    expected = ches.curate(run, rule=rule, decisions={}, format={"hf": "input", "hf-trl": "trl"}[fmt])
    assert loaded.to_list() == expected.to_list() and len(loaded) == len(kept)
    assert [p.pair_id for p in load_dataset(folder).pairs] == kept                  # ches' own reader: same pairs
    card = front_matter(folder)
    assert card["configs"][0]["data_files"][0]["path"] == "data/train-*"
    saved = card["ches"]
    for k in ("model_id", "fingerprint", "rule", "decisions", "counts", "quantiles"):
        assert saved[k] == json.loads(json.dumps(m[k])), k
    assert saved["fingerprint"] == run.manifest["key"]["fingerprint"] and saved["counts"]["kept"] == len(kept)
    data = (folder / DATA_FILE).read_bytes()
    assert saved["files"][DATA_FILE] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert run.manifest["key"]["fingerprint"] in text and f"{len(kept)} of {N}" in text


def test_hf_folder_overwrite_empty_and_cli(run, tmp_path, capsys):
    folder = tmp_path / "out"
    export_hf(run, Rule(), {}, folder)
    with pytest.raises(ExportExists):
        export_hf(run, Rule(), {}, folder)
    export_hf(run, Rule(keep_lowest_percent=50), {}, folder, overwrite=True)
    assert front_matter(folder)["ches"]["counts"]["kept"] == N // 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a dataset folder CHES Studio wrote"):
        export_hf(run, Rule(), {}, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="keeps no pair"):
        export_hf(run, Rule(keep_lowest_percent=0), {}, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    out = tmp_path / "cli"
    assert main(["export", str(run), "--out", str(out), "--format", "hf-trl", "--decisions", str(tmp_path / "none.sqlite")]) == 2
    assert "no such decisions database" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(run), "--out", str(out), "--format", "hf-trl", "--keep-lowest-percent", "50"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {N // 2} of {N} pairs to {out} (hf-trl format)" in said and str(out / "README.md") in said
    assert front_matter(out)["ches"]["row_format"] == "trl"


def test_hf_folder_names_the_row_it_cannot_store(tmp_path):
    ds = load_records([{"prompt": "p", "chosen": "a", "rejected": "b", "meta": "fine"},
                       {"prompt": "q", "chosen": "c", "rejected": "d", "meta": "\udc80"}], source="mem")
    run = make_fake_run(tmp_path / "run", ds)
    with pytest.raises(ExportError, match="row 2: .*lone surrogate"):
        export_hf(run, Rule(keep_lowest_percent=100, drop_flags=()), {}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    export_hf(run, Rule(keep_lowest_percent=100, drop_flags=()), {}, tmp_path / "trl", fmt="hf-trl")
    assert len(load_dataset(tmp_path / "trl").pairs) == 2                          # TRL rows hold no such field


def test_export_page_writes_a_hugging_face_folder(workspace_env):
    from conftest import open_app

    ds = load_records(records())
    run = make_fake_run(workspace_env.workspace / "runs" / "0123456789abcdef", ds)
    at = open_app("pages/export.py", run)
    at.radio(key="export_format").set_value("hf-trl").run()
    next(t for t in at.text_input if t.key == "export_name").input("for-dpo").run()
    at.button(key="export_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    folder = workspace_env.workspace / "exports" / "for-dpo"
    kept = [p.pair_id for p in load_dataset(folder).pairs]
    assert len(kept) == math.floor(N * 0.95) and front_matter(folder)["ches"]["format"] == "hf-trl"
    assert {b.label for b in at.get("download_button")} == {"Download Parquet", "Download dataset card", "Download the decision log"}
    at.button(key="export_go").click().run()                                       # again: asks first
    assert any("for-dpo already exists" in w.value.replace("\\", "") for w in at.warning)
