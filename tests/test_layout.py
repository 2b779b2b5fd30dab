"""The shape of the house (docs/ARCHITECTURE.md), read from the source with `ast`: nothing here imports the app.

1. ches/engine (dataset -> numbers) never imports ches/review (what people do with the numbers).
2. ches/ imports neither streamlit nor the front end (ui, pages).
3. pages/ compute nothing: no import of the forward pass or the tokeniser; the Probe, Curate & export and Map
   pages start, show and cancel jobs, and import no training, model loading or projection; no page calls training,
   a forward pass or a projection, itself or through `ui`.
4. No module over MAX_LINES lines unless its docstring says why after LONG_REASON.
   Files are renamed into place only by ches/atomic.py.
5. The definition lives in docs/CHES.md; no source cites the old, out-of-repository spec; every module is
   on the map in docs/ARCHITECTURE.md, and every module path the docs and README name exists.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400                      # "about 400": the limit docs/ARCHITECTURE.md states
LONG_REASON = "Over 400 lines:"      # in a module docstring, followed by the reason
OLD_SPEC = "CHES_" + "SPEC"          # the spec outside the repository (split so this file does not cite it)
SOURCE_DIRS = ("ches", "ui", "pages")


def modules(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def imported(path: Path, root: Path = ROOT, only: set[str] | None = None) -> set[str]:
    """Every module name `path` imports, relative imports resolved; `from a import b` counts a and a.b
    (b may be a submodule); `importlib.import_module("x")` / `__import__("x")` with a literal count x.
    With `only` (module names): the modules among them it imports, `from a import b` counting a.b when it is
    one of them (a submodule), else a (whose name it takes)."""
    parts = path.relative_to(root).with_suffix("").parts
    package = parts[:-1]                 # a module's package; for an __init__.py, the package itself
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if only is None:
                names.add(base)
                names.update(f"{base}.{a.name}" for a in node.names)
            else:
                names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in only else base for a in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            names.add(node.args[0].value)
    return names if only is None else names & only


def hits(names: set[str], *forbidden: str) -> list[str]:
    return sorted(n for n in names for f in forbidden if n == f or n.startswith(f + "."))


def violations(paths: list[Path], *forbidden: str, root: Path = ROOT) -> dict[str, list[str]]:
    return {rel(p, root): h for p in paths if (h := hits(imported(p, root), *forbidden))}


def test_the_import_checker_sees_every_spelling(tmp_path):
    """The checks below pass only if they can fail: absolute, relative, from-package and dynamic imports."""
    engine = tmp_path / "ches" / "engine"
    engine.mkdir(parents=True)
    spellings = {
        "a.py": "import ches.review.decisions\n",
        "b.py": "from ..review import decisions\n",
        "c.py": "from .. import review\n",
        "d.py": "from ches import review\n",
        "e.py": "def f():\n    import importlib\n    return importlib.import_module('ches.review.map')\n",
        "__init__.py": "from ..review.browse import x\n",
        "fine.py": "from . import tokens\nfrom ..atomic import write_bytes\nimport ches.reviewer\n",
    }
    for name, text in spellings.items():
        (engine / name).write_text(text)
    found = violations(sorted(engine.glob("*.py")), "ches.review", root=tmp_path)
    assert sorted(found) == sorted(f"ches/engine/{n}" for n in spellings if n != "fine.py")
    assert imported(engine / "fine.py", tmp_path) >= {"ches.engine.tokens", "ches.atomic.write_bytes"}


def test_the_engine_never_imports_the_review_half():
    assert violations(modules("ches/engine"), "ches.review") == {}


def test_ches_never_imports_streamlit_or_the_front_end():
    assert violations(modules("ches"), "streamlit", "ui", "pages", "app") == {}


def test_pages_compute_nothing():
    assert violations(modules("pages"), "ches.engine.forward", "ches.engine.tokens") == {}


JOB_PAGES = ("pages/probe.py", "pages/export.py", "pages/map.py", "pages/pair.py")   # the probe, the check, the Map, tokens
TRAINING = ("torch", "umap", "ches.engine.models", "ches.engine.pipeline", "ches.review.probe.run",
            "ches.review.probe.dpo", "ches.review.probe.run_probe", "ches.review.probe.measure",
            "ches.review.probe.check.run_check", "ches.review.probe.check.measure",
            "ches.review.projection.map_coordinates", "ches.review.projection.project",
            "ches.review.projection.pca_scores", "ches.review.projection.view_matrix")


def test_the_probe_check_and_map_pages_only_start_jobs():
    """They run as jobs (ches/engine/jobs.py): the pages import jobs and what ches reads, never what trains a
    model copy, loads a model or lays out the Map."""
    assert violations([ROOT / p for p in JOB_PAGES], *TRAINING) == {}


def test_every_rename_into_place_is_in_the_atomic_module():
    """Atomic writes go through ches/atomic.py: nowhere else renames or replaces a file into place."""
    renames = []
    for path in [*modules(*SOURCE_DIRS), ROOT / "app.py"]:
        if path == ROOT / "ches" / "atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr == "rename" or ast.unparse(node.func) in ("os.replace", "shutil.move")):
                renames.append(f"{rel(path)}:{node.lineno} {ast.unparse(node)}")
    assert renames == []


def test_no_module_is_long_without_a_reason():
    too_long = {}
    for path in [*modules(*SOURCE_DIRS), ROOT / "app.py"]:
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        reason = doc.partition(LONG_REASON)[2].strip()
        if n > MAX_LINES and len(reason.split()) < 3:
            too_long[rel(path)] = n
    assert too_long == {}, f"over {MAX_LINES} lines with no '{LONG_REASON} <why>' in the module docstring"


def test_the_definition_is_in_the_repository():
    for doc in ("docs/CHES.md", "docs/ARCHITECTURE.md"):
        assert (ROOT / doc).is_file(), doc
    citing = [rel(p) for p in [*modules(*SOURCE_DIRS, "tests", "bench"), ROOT / "app.py", ROOT / "README.md"]
              if OLD_SPEC in p.read_text(encoding="utf-8") and p != Path(__file__).resolve()]
    assert citing == []


def test_every_docs_reference_exists():
    refs = {}
    for path in [*modules(*SOURCE_DIRS, "tests", "bench"), ROOT / "app.py", ROOT / "README.md"]:
        for ref in re.findall(r"\bdocs/[\w.-]+\.md", path.read_text(encoding="utf-8")):
            refs.setdefault(ref, rel(path))
    missing = {ref: where for ref, where in refs.items() if not (ROOT / ref).is_file()}
    assert missing == {}


@pytest.mark.parametrize("doc", ["docs/ARCHITECTURE.md", "README.md",
                                 *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_every_module_path_named_exists(doc):
    named = set(re.findall(r"\b(?:ches|ui|pages)/[\w/]*\.py\b", (ROOT / doc).read_text(encoding="utf-8")))
    assert named or doc != "docs/ARCHITECTURE.md", f"{doc} names no module"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


def test_every_module_is_on_the_map():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    unnamed = [rel(p) for p in modules(*SOURCE_DIRS) if rel(p) not in text]
    assert unnamed == [], "add them to docs/ARCHITECTURE.md's 'Which folder holds what'"


def test_the_command_line_and_the_light_modules_start_without_torch():
    """`ches --help` builds every subcommand's parser; it, `import ches` and the team modules must not pull in
    torch (seconds of start-up on every command; they once did through models, the probe package and jobs)."""
    import subprocess
    import sys

    code = ("import sys, ches, ches.cli, ches.review.team_rules, ches.review.agreement, ches.review.assignment, "
            "ches.review.allowlist, ches.engine.timing; "
            "ches.cli.build_parser(); print(sorted(m for m in ('torch', 'transformers', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"imported at start-up: {out.stdout.strip()}"


WIDGETS = {"button", "checkbox", "radio", "selectbox", "multiselect", "text_input", "text_area", "number_input",
           "toggle", "slider", "select_slider", "segmented_control", "pills", "form_submit_button", "data_editor",
           "file_uploader", "download_button", "date_input", "time_input", "color_picker", "chat_input"}


def polling_fragments_with_widgets(paths: list[Path], root: Path = ROOT) -> dict[str, list[str]]:
    """{module: [function: widget]} for each function passed to st.fragment(..., run_every=...) that draws a
    widget itself: under load a click on a widget inside a polling fragment is lost (bench/click_bench.py)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defs = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "fragment"
                    and any(k.arg == "run_every" for k in call.keywords)):
                continue
            target = call.args[0].id if call.args and isinstance(call.args[0], ast.Name) else None
            body = defs.get(target)
            if body is None:
                found.setdefault(rel(path, root), []).append(f"{target}: not a function of this module")
                continue
            for inner in ast.walk(body):
                if isinstance(inner, ast.Call) and getattr(inner.func, "attr", None) in WIDGETS:
                    found.setdefault(rel(path, root), []).append(f"{target}: {inner.func.attr}")
    return found


def test_no_widget_is_drawn_inside_a_polling_fragment(tmp_path):
    """ARCHITECTURE rule 11: a polling fragment (run_every) only shows; its buttons are drawn beside it."""
    assert polling_fragments_with_widgets(modules("ui", "pages")) == {}
    planted = tmp_path / "planted.py"
    planted.write_text("import streamlit as st\ndef poll():\n    st.progress(0.5)\n    st.button('Cancel')\n"
                       "st.fragment(poll, run_every=1.0)()\n")
    assert polling_fragments_with_widgets([planted], tmp_path) == {"planted.py": ["poll: button"]}


# ------------------------------------------------------------------ pages call no training, forward pass or projection
COMPUTE_MODULES = ("torch", "transformers", "umap", "ches.engine.forward", "ches.engine.tokens",
                   "ches.review.probe.dpo", "ches.review.probe.run", "ches.review.probe.behaviour")
COMPUTE_CALLS = ("ches.engine.models.load_model", "ches.engine.pipeline.score_dataset", "ches.engine.pipeline.estimate",
                 "ches.engine.pipeline.pair_tokens", "ches.review.probe.check.run_check",
                 "ches.review.projection.map_coordinates", "ches.review.projection.project",
                 "ches.review.projection.pca_scores", "ches.review.projection.view_matrix")
def aliases(tree: ast.AST, module: str) -> dict[str, str]:
    """{name bound by an import in `tree`: the qualified name it stands for} (relative imports resolved)."""
    package = module.split(".")[:-1]
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]) \
                if node.level else node.module or ""
            for a in node.names:
                names[a.asname or a.name] = f"{base}.{a.name}"
    return names


def called(tree: ast.AST, names: dict[str, str]) -> list[tuple[ast.AST, str]]:
    """(call site, qualified name) of every call in `tree` whose callee resolves through `names`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = ast.unparse(node.func).split(".")
            if dotted[0] in names and all(part.isidentifier() for part in dotted):
                out.append((node, ".".join([names[dotted[0]], *dotted[1:]])))
    return out


def is_compute(name: str) -> bool:
    return name in COMPUTE_CALLS or any(name == m or name.startswith(m + ".") for m in COMPUTE_MODULES)


def computing_functions(path: Path, module: str, known: dict[str, str]) -> dict[str, str]:
    """{function of the module at `path`: the first compute call it makes, itself, through the module's own
    functions or through a function in `known` (qualified name: its compute call)}: what a page calling it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = aliases(tree, module)
    defs = {f.name: f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    direct = {n: next((q if is_compute(q) else known[q] for _, q in called(f, names) if is_compute(q) or q in known),
                      None) for n, f in defs.items()}
    calls = {n: {c.func.id for c in ast.walk(f) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                 and c.func.id in defs} for n, f in defs.items()}
    found = {n: q for n, q in direct.items() if q}
    while grown := {n: found[next(iter(calls[n] & found.keys()))] for n in defs
                    if n not in found and calls[n] & found.keys()}:
        found.update(grown)
    return found


def page_compute_calls(pages: list[Path], root: Path = ROOT, ui: list[Path] | None = None) -> dict[str, list[str]]:
    """{page: its calls into training, a forward pass or a projection}, directly or through a function of `ui`
    (the modules of ui/ by default)."""
    through: dict[str, str] = {}
    while grown := {f"ui.{p.stem}.{fn}": q for p in (modules("ui") if ui is None else ui)
                    for fn, q in computing_functions(p, f"ui.{p.stem}", through).items()
                    if f"ui.{p.stem}.{fn}" not in through}:
        through.update(grown)
    found: dict[str, list[str]] = {}
    for page in pages:
        tree = ast.parse(page.read_text(encoding="utf-8"))
        for _, q in called(tree, aliases(tree, f"pages.{page.stem}")):
            line = q if is_compute(q) else f"{q} -> {through[q]}" if q in through else None
            if line and line not in found.get(rel(page, root), []):
                found.setdefault(rel(page, root), []).append(line)
    return {k: sorted(v) for k, v in sorted(found.items())}


def test_pages_call_no_training_forward_pass_or_projection(tmp_path):
    """Pages start jobs and place what `ches` reads: no page run computes. A planted page that trains, lays out the
    Map or runs the forward pass, directly or through a `ui` function (a planted one that loads the model), is found."""
    assert page_compute_calls(modules("pages")) == {}
    (tmp_path / "pages").mkdir()
    (tmp_path / "ui").mkdir()
    helper = tmp_path / "ui" / "planted_ui.py"
    helper.write_text("from ches.engine.models import load_model\n\ndef model(spec):\n    return load_model(spec)\n")
    planted = tmp_path / "pages" / "planted.py"
    planted.write_text("from ui import planted_ui\nfrom ches.review.probe import run as probe_run\n"
                       "import ches.review.projection as proj\nfrom ches.engine.forward import embed\n"
                       "probe_run.run_probe(1)\nproj.map_coordinates(2)\nembed(3)\nplanted_ui.model(4)\n")
    assert page_compute_calls([planted], tmp_path, ui=[*modules("ui"), helper]) == {"pages/planted.py": [
        "ches.engine.forward.embed", "ches.review.probe.run.run_probe", "ches.review.projection.map_coordinates",
        "ui.planted_ui.model -> ches.engine.models.load_model"]}


LIGHT_SERVER = """
import ast, sys
from pathlib import Path
sys.path.insert(0, {root!r})
for path in sorted(Path({root!r}).glob("pages/*.py")) + [Path({root!r}) / "app.py"]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(ast.unparse(node), {{}})
print(sorted(m for m in ("torch", "transformers", "umap", "trl") if m in sys.modules))
"""


def test_the_app_server_imports_no_model_library():
    """What the pages and app.py import (with ui) pulls in neither torch, transformers, UMAP nor TRL: the server
    loads no model (jobs do), so a fresh server draws its first page without the seconds those imports take."""
    done = subprocess.run([sys.executable, "-c", LIGHT_SERVER.format(root=str(ROOT))], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


# ------------------------------------------------------------------ no import circle, no private name of another module
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_circles(paths: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Every circle among the modules at `paths` (each a sorted list of module names), imports inside functions
    included: a module that imports another that (through others) imports it back."""
    ours = {module_name(p, root): p for p in paths}
    graph = {m: imported(p, root, only=set(ours)) - {m} for m, p in ours.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m: str) -> None:                          # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            part = []
            while not part or part[-1] != m:
                part.append(stack.pop())
            if len(part) > 1:
                circles.append(sorted(part))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return sorted(circles)


def private_imports(paths: list[Path], root: Path = ROOT) -> list[str]:
    """`module:line name` for each private name (one leading underscore) a module at `paths` takes from another
    of them: `from m import _x`, or `m._x` on a module it imported."""
    ours = {module_name(p, root) for p in paths}
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        me = module_name(path, root)
        names = aliases(tree, me + ".__init__" if path.name == "__init__.py" else me)   # relative to its package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    source = names[a.asname or a.name].rpartition(".")[0]
                    if a.name.startswith("_") and not a.name.startswith("__") and source in ours and source != me:
                        found.append(f"{rel(path, root)}:{node.lineno} {source}.{a.name}")
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names
                  and names[node.value.id] in ours and names[node.value.id] != me
                  and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{rel(path, root)}:{node.lineno} {names[node.value.id]}.{node.attr}")
    return sorted(found)


def test_no_import_circle_and_no_private_import(tmp_path):
    """Modules form no circle, even through an import inside a function, and take no private name of another
    module; planted ones are found."""
    sources = [*modules(*SOURCE_DIRS), ROOT / "app.py"]
    assert import_circles(sources) == []
    assert private_imports(sources) == []
    (tmp_path / "ches").mkdir()
    (tmp_path / "ches" / "a.py").write_text("from ches import b\n")
    (tmp_path / "ches" / "b.py").write_text("def f():\n    from ches.a import _helper\n    return _helper\n")
    (tmp_path / "ches" / "c.py").write_text("from ches import a\nx = a._secret\nfrom ches.b import f\n")
    planted = sorted((tmp_path / "ches").glob("*.py"))
    assert import_circles(planted, tmp_path) == [["ches.a", "ches.b"]]
    assert private_imports(planted, tmp_path) == ["ches/b.py:2 ches.a._helper", "ches/c.py:2 ches.a._secret"]
