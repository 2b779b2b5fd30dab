"""The README and the guides in docs/ say only what is true of the tree (issue 26): every `ches` command written
in a code block is one the CLI's argument parser accepts (parsed, never run), and every relative link, images
included, points at a file that exists (and, with a #fragment, at a heading there). Fast: no model, no browser.

A command is a code-block line (a trailing backslash joins the next) that starts with `ches `,
`.venv/bin/ches `, `python -m ches `, `.venv/bin/python -m ches ` (a leading `$ ` and VAR=value are dropped), or a
`torchrun ... -m ches ...` line; a `#` comment is dropped. Placeholders (RUN, DATA, FILE, ...) are plain
positional values to the parser.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent

PREFIXES = (".venv/bin/python -m ches ", "python -m ches ", ".venv/bin/ches ", "ches ")
FENCE = re.compile(r"^\s*(```|~~~)")
SHELL = {"bash", "sh", "shell", "console", "zsh"}
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


def doc_files() -> list[Path]:
    """README.md and every Markdown file in docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_lines(text: str) -> list[tuple[int, str, bool]]:
    """(1-based line number, line, in a shell block) for each line inside a fenced code block, continuation lines
    joined; a shell block is one tagged bash, sh, shell, console or zsh."""
    out: list[tuple[int, str, bool]] = []
    fenced, shell, pending, start = False, False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced, pending = not fenced, ""
            shell = fenced and line.strip()[3:].strip().lower() in SHELL
            continue
        if not fenced:
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line, shell))
        pending = ""
    return out


def command_args(line: str, shell: bool = True) -> list[str] | None:
    """The arguments after `ches` when `line` is a ches command, else None. Outside a shell block a bare
    `ches ` starts no command (a table row of the metric named ches); the other prefixes still do."""
    s = line.strip()
    if s.startswith("$ "):
        s = s[2:].lstrip()
    s = re.sub(r"^(?:[A-Za-z_]\w*=\S*\s+)+", "", s)          # VAR=value before the command
    rest = None
    for prefix in PREFIXES if shell else PREFIXES[:-1]:
        if s.startswith(prefix):
            rest = s[len(prefix):]
            break
    if rest is None and re.match(r"^(\S*/)?torchrun\s", s) and " -m ches " in s:
        rest = s.split(" -m ches ", 1)[1]
    if rest is None:
        return None
    return shlex.split(rest, comments=True)


def parse_error(args: list[str]) -> str | None:
    """None when the CLI's parser accepts `args`; else the parser's message. Nothing is run."""
    from ches.cli import build_parser

    class Refused(Exception):
        pass

    def refuse(self, message):
        raise Refused(f"{self.prog}: {message}")

    with mock.patch.object(argparse.ArgumentParser, "error", refuse), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except Refused as e:
            return str(e)
        except SystemExit as e:           # --help / --version print and exit 0: accepted
            return None if e.code in (0, None) else f"exit status {e.code}"
    return None


def bad_commands(path: Path) -> list[str]:
    """'file:line: command: the parser's message' for each ches command in `path` the parser refuses."""
    problems = []
    for n, line, shell in code_lines(path.read_text(encoding="utf-8")):
        try:
            args = command_args(line, shell)
        except ValueError as e:           # unbalanced quotes
            problems.append(f"{path.name}:{n}: {line.strip()}: {e}")
            continue
        if args is None:
            continue
        message = parse_error(args)
        if message:
            problems.append(f"{path.name}:{n}: {line.strip()}: {message}")
    return problems


def commands_in(path: Path) -> list[list[str]]:
    return [a for _, line, shell in code_lines(path.read_text(encoding="utf-8"))
            if (a := command_args(line, shell)) is not None]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline-code ticks and punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The #fragments the headings of `path` give (outside code blocks; repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            k = seen.get(base, 0)
            out.add(base if k == 0 else f"{base}-{k}")
            seen[base] = k + 1
    return out


def bad_links(path: Path) -> list[str]:
    """'file:line: target: why' for each relative link in `path` whose file (or heading) does not exist."""
    base = path.parent
    problems = []
    fenced = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):        # http:, https:, mailto:
                continue
            file, _, fragment = target.partition("#")
            where = (base / file).resolve() if file else path
            if file and not where.exists():
                problems.append(f"{path.name}:{n}: {target}: no such file")
            elif fragment and where.suffix == ".md" and fragment not in anchors(where):
                problems.append(f"{path.name}:{n}: {target}: no heading #{fragment} in {where.name}")
    return problems


# ------------------------------------------------------------------------------------------------ the tests

def test_the_docs_hold_commands_to_check():
    """The check reads something: the README and the CLI guide write ches commands in code blocks."""
    assert len(doc_files()) >= 2
    assert sum(len(commands_in(p)) for p in doc_files()) >= 20


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_every_ches_command_in_the_docs_is_one_the_cli_accepts(path):
    problems = bad_commands(path)
    assert not problems, "commands the CLI refuses:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_every_relative_link_in_the_docs_points_at_a_file_that_exists(path):
    problems = bad_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_a_planted_bad_command_and_a_planted_broken_link_are_found(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\nSee [the score](#the-score-nowhere) and [missing](nowhere.md).\n\n"
                   "```bash\n"
                   ".venv/bin/ches score data/sample.jsonl --limit 5      # fine\n"
                   "ches export RUN --out x.jsonl --keep-lowest-percnt 95\n"
                   "python -m ches frobnicate RUN\n"
                   ".venv/bin/ches probe RUN \\\n"
                   "    --subset top --steps many\n"
                   "ches --version\n"
                   "CHES_WORKSPACE=/tmp/w .venv/bin/ches decisions import\n"
                   "echo ches score is not a command here\n"
                   "```\n\n"
                   "```\nches   0   8   +9.33   (a table row: not a command)\n.venv/bin/ches scroe x\n```\n\n"
                   "[fine](guide.md#guide)\n", encoding="utf-8")
    problems = bad_commands(doc)
    assert len(problems) == 5, problems
    assert problems[0].startswith("guide.md:7: ches export RUN") and "unrecognized arguments: --keep-lowest-percnt" \
        in problems[0], problems
    assert problems[1].startswith("guide.md:8:") and "invalid choice: 'frobnicate'" in problems[1], problems
    assert problems[2].startswith("guide.md:9:") and "--steps: invalid int value: 'many'" in problems[2], problems
    assert problems[3].startswith("guide.md:12: CHES_WORKSPACE=") and "required: FILE" in problems[3], problems
    assert problems[4].startswith("guide.md:18: .venv/bin/ches scroe x") and "invalid choice" in problems[4]
    links = bad_links(doc)
    assert links == ["guide.md:3: #the-score-nowhere: no heading #the-score-nowhere in guide.md",
                     "guide.md:3: nowhere.md: no such file"], links


def test_slugs_follow_github():
    assert slug("Does my curation help my model? `ches check-curation`") == \
        "does-my-curation-help-my-model-ches-check-curation"
    assert slug("Data & score") == "data--score"
    assert slug("Runs: resumable, keyed, and what they cost") == "runs-resumable-keyed-and-what-they-cost"
