"""Safe by default: paths confined to their root, no remote code, no unpickling, uploads bounded."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ches.engine import models, store
from ches.workspace import PathError, check_upload_size, confine, safe_filename


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
