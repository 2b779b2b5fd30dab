"""Safe by default: paths confined to their root (the data root, the models root; Hub names are Hub ids only),
no remote code, no unpickling, uploads bounded."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from ches.engine import models, store
from ches.engine.files import load_dataset
from ches.engine.hub import HUB_PREFIX
from ches.engine.pairs import DataError
from ches.engine.models import app_model
from ches.workspace import PathError, check_upload_size, confine, existing, safe_filename


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "sub" / "ok.jsonl").write_text("{}")
    (tmp_path / "secret.jsonl").write_text("{}")
    return r


@pytest.mark.parametrize("typed", ["../secret.jsonl", "sub/../../secret.jsonl", "/etc/passwd", "..", "", "a\x00b"])
def test_paths_outside_the_root_are_refused(root, typed):
    with pytest.raises(PathError):
        confine(root, typed)


def test_paths_inside_the_root_are_resolved(root):
    assert confine(root, "sub/ok.jsonl") == (root / "sub" / "ok.jsonl").resolve()
    assert confine(root, str(root / "sub" / "ok.jsonl")) == (root / "sub" / "ok.jsonl").resolve()


def test_symlink_escape_is_refused_and_inner_links_work(root, tmp_path):
    os.symlink(tmp_path / "secret.jsonl", root / "link.jsonl")
    os.symlink(tmp_path, root / "dir_link")
    os.symlink(root / "sub" / "ok.jsonl", root / "inner.jsonl")
    with pytest.raises(PathError):
        confine(root, "link.jsonl")
    with pytest.raises(PathError):
        confine(root, "dir_link/secret.jsonl")
    assert confine(root, "inner.jsonl") == (root / "sub" / "ok.jsonl").resolve()


def test_upload_limit_and_names():
    check_upload_size(10, limit=10)
    with pytest.raises(ValueError, match="limited to"):
        check_upload_size(11, limit=10)
    assert safe_filename("../../etc/passwd") == "passwd"
    assert "/" not in safe_filename("a/b\\c<script>.jsonl")


def test_remote_code_is_off_unless_asked(monkeypatch, tmp_path):
    seen = []

    class Fake:
        config = type("C", (), {"_commit_hash": "abc"})()

        def to(self, device):
            return self

        def eval(self):
            return self

        def state_dict(self):
            return {}

    def from_pretrained(where, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return Fake()

    import transformers
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    models.load_model("some/model", device="cpu")
    assert seen == [False, False]
    models.load_model("some/model", device="cpu", trust_remote_code=True)
    assert seen[2:] == [True, True]


def test_run_arrays_are_never_unpickled(tmp_path):
    for name in store.ARRAYS:
        np.save(tmp_path / f"{name}.npy", np.zeros((2, 3)))
    np.save(tmp_path / "S_plus.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects|pickle"):
        store.read_arrays(tmp_path)


# ------------------------------------------------------------ names typed into the app: Hub ids, data root, models root
@pytest.fixture
def secret(tmp_path, monkeypatch):
    """A dataset folder outside every root, reachable as "secret/prefs" from the working directory (a config
    "sub" names its subfolder); `secret.touched` lists every file-system access to it (stat, lstat, open, scandir)."""
    import builtins
    import json

    cwd = tmp_path / "cwd"
    folder = cwd / "secret" / "prefs"
    (folder / "sub").mkdir(parents=True)
    for f in (folder / "train.jsonl", folder / "sub" / "train.jsonl"):
        f.write_text(json.dumps({"prompt": "SECRET", "chosen": "a", "rejected": "b"}) + "\n")
    monkeypatch.chdir(cwd)
    touched: list[str] = []
    inside = str(cwd / "secret")

    def watch(fn):
        def wrapped(path, *args, **kwargs):
            text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
            if os.path.abspath(text).startswith(inside):
                touched.append(text)
            return fn(path, *args, **kwargs)
        return wrapped

    for name in ("stat", "lstat", "scandir", "listdir", "open"):
        monkeypatch.setattr(os, name, watch(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", watch(builtins.open))
    return SimpleNamespace(folder=folder, touched=touched)


@pytest.fixture
def offline_hub(monkeypatch):
    """`datasets` replaced: each call is recorded and fails as an unreachable Hub would."""
    import sys
    import types

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


TYPED_PATHS = ["{abs}", "{abs}/train.jsonl", "./secret/prefs", "secret/prefs/sub", "../cwd/secret/prefs",
               "secret/../secret/prefs", "secret/prefs/", "a/..", "/etc/passwd", "~/x"]


@pytest.mark.parametrize("typed", TYPED_PATHS)
def test_a_path_in_the_hub_field_is_refused_without_touching_it(secret, offline_hub, typed):
    typed = typed.format(abs=secret.folder)
    with pytest.raises(DataError, match="is not a Hugging Face dataset id"):
        load_dataset(HUB_PREFIX + typed)
    assert offline_hub == [] and secret.touched == []


def test_a_hub_id_that_is_also_a_folder_here_goes_to_the_hub_only(secret, offline_hub):
    """"secret/prefs" is a valid id and a folder in the working directory: the Hub is asked, the folder never
    read; a config is a name, never a subfolder."""
    with pytest.raises(DataError, match="could not load the Hugging Face dataset 'secret/prefs'.*Couldn't reach") as e:
        load_dataset(HUB_PREFIX + "secret/prefs", config="sub")
    assert offline_hub == [("hf://datasets/secret/prefs", "sub", {"split": "train"})]
    assert secret.touched == [] and "SECRET" not in str(e.value)
    for config in ("../prefs", "sub/x", str(secret.folder)):
        with pytest.raises(DataError, match="is not a config name"):
            load_dataset(HUB_PREFIX + "secret/prefs", config=config)
    assert len(offline_hub) == 1


def test_a_data_path_gives_one_message_for_missing_and_outside(secret, tmp_path):
    root = tmp_path / "data"
    (root / "mine.jsonl").parent.mkdir()
    (root / "mine.jsonl").write_text("{}")
    assert existing(root, "mine.jsonl") == (root / "mine.jsonl").resolve()
    messages = set()
    for typed in ("missing.jsonl", "../cwd/secret/prefs/train.jsonl", str(secret.folder / "train.jsonl"),
                  "../cwd/secret/prefs/none.jsonl"):
        with pytest.raises(PathError) as e:
            existing(root, typed)
        messages.add(str(e.value).replace(repr(typed), "X"))
    assert messages == {"X: no such file or folder in the data root"} and secret.touched == []


def test_the_model_field_takes_the_default_a_hub_id_or_a_folder_in_the_models_root(secret, tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "org" / "tiny").mkdir(parents=True)
    monkeypatch.setenv("CHES_MODELS_ROOT", str(models))
    assert app_model("", "smollm2") == app_model(" smollm2 ", "smollm2") == "smollm2"
    assert app_model("HuggingFaceTB/SmolLM2-360M", "smollm2") == "HuggingFaceTB/SmolLM2-360M"
    assert app_model("org/tiny", "smollm2") == app_model(str(models / "org" / "tiny"), "smollm2") \
        == str((models / "org" / "tiny").resolve())
    messages = set()
    for typed in [t.format(abs=secret.folder) for t in TYPED_PATHS] + ["secret/prefs", "org/missing/x"]:
        with pytest.raises(PathError) as e:
            app_model(typed, "smollm2")
        messages.add(str(e.value).replace(repr(typed.strip()), "X"))
    assert len(messages) == 1 and "models root" in messages.pop()
    # the Hub-id check looks at "secret/prefs" itself (lexists), never into it
    assert all(os.path.normpath(p) == "secret/prefs" for p in secret.touched), secret.touched
    monkeypatch.delenv("CHES_MODELS_ROOT")
    with pytest.raises(PathError, match="none is set: CHES_MODELS_ROOT"):
        app_model(str(models / "org" / "tiny"), "smollm2")


def test_the_score_page_refuses_paths_in_the_hub_and_model_fields(secret, offline_hub, workspace_env):
    """Through the page: a path typed as a Hub name or a model is an error; nothing of the folder is read."""
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.radio(key="score_source").set_value("Hugging Face dataset").run()
    for name, config in ((str(secret.folder), ""), ("../cwd/secret/prefs", ""), ("secret/prefs", "sub")):
        at.text_input(key="score_hub_name").set_value(name)
        at.text_input(key="score_hub_config").set_value(config)
        at.button(key="score_hub_load").click().run()
        assert not at.exception
        errors = " ".join(e.value for e in at.error)
        assert ("not a Hugging Face dataset id" if config == "" else "Couldn't reach") in errors, errors
        assert not [m for m in at.metric if m.label == "Pairs loaded"]
        assert "SECRET" not in errors and "train.jsonl" not in errors
    assert offline_hub == [("hf://datasets/secret/prefs", "sub", {"split": "train"})] and secret.touched == []
    at.radio(key="score_source").set_value("Bundled sample").run()
    at.text_input(key="score_model").set_value(str(secret.folder)).run()
    assert "not the default model" in " ".join(e.value for e in at.error)
    assert at.button(key="score_go").disabled and at.button(key="score_estimate").disabled


def test_the_app_listens_on_this_machine_only_unless_asked():
    """`make run`, `streamlit run app.py` and `ches app` read .streamlit/config.toml (ches app as flags, before
    the user's own, which win): localhost unless `--server.address` says otherwise."""
    from ches.workspace import bundled, streamlit_flags

    flags = streamlit_flags(bundled(".streamlit/config.toml"))
    assert flags[flags.index("--server.address") + 1] == "localhost"
