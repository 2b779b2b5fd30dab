"""The examples users paste: every `ches` command's --help ends with examples, each a command the CLI accepts;
the docstring examples of the Python API (ches.score, ches.curate with a ches.Rule) run as doctests.

The CLI examples are read from the help text a user sees (`ches [COMMAND] --help`), split like a shell
(comments dropped) and parsed by the CLI's own parser, never run.
"""
from __future__ import annotations

import contextlib
import doctest
import io
import json
import shlex

import pytest

import ches
from ches.cli import build_parser
from conftest import ROOT

COMMANDS = [[], ["score"], ["estimate"], ["runs"], ["export"], ["compare"], ["decisions"], ["probe"],
            ["check-curation"], ["project"]]


def help_text(command: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return out.getvalue()


def examples(text: str) -> list[str]:
    """The lines under "examples:" (a line of their own) that start with `ches `, continuations joined."""
    _, found, rest = text.partition("\nexamples:\n")
    assert found, "no examples section"
    lines = rest.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("ches ")]


def refused(example: str) -> str | None:
    """None if the CLI's parser accepts `example`, else what it says (argparse exits 2 and prints to stderr)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(shlex.split(example, comments=True)[1:])
    except SystemExit as e:
        return err.getvalue().strip().splitlines()[-1] if e.code else None
    return None


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ches")
def test_every_command_help_has_examples_the_cli_accepts(command):
    found = examples(help_text(command))
    assert found, f"ches {' '.join(command)} --help shows no example"
    if command:
        assert all(shlex.split(e, comments=True)[1] == command[0] for e in found), found
    assert {e: refused(e) for e in found} == {e: None for e in found}


def test_a_wrong_example_is_caught():
    planted = "usage: ...\n\nexamples:\n  ches score data.jsonl --limt 3    # a typo\n  ches export RUN\n"
    assert [refused(e) for e in examples(planted)] == [
        "ches: error: unrecognized arguments: --limt 3", "ches export: error: the following arguments are required: --out"]


def run_doctests(obj, name: str) -> doctest.TestResults:
    """The docstring examples of `obj` (and what it defines), with `ches` and `json` in scope."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(obj, name, globs={"ches": ches, "json": json}):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.real_model
def test_api_docstring_examples_run_with_the_bundled_model(monkeypatch, tmp_path):
    """ches.score and ches.curate as their docstrings show them: the bundled model on the bundled sample."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CHES_WORKSPACE", str(tmp_path / "ws"))
    result = run_doctests(ches, "ches")
    assert result.attempted >= 8 and result.failed == 0, result
