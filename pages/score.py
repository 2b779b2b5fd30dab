"""Data & score: load a dataset (sample, upload, path, Hub), check the load report, score it, open runs.

Scoring is a job (ches/jobs.py): Score starts `ches score ...` as its own process, named by the run it
writes, and this page only polls it. A reload, another tab or another page (sidebar) shows its progress
and can cancel it; Score pressed twice, or by two people, attaches to the job already running; a
cancelled job keeps its finished chunks, and Score again resumes there. The session that started a job
opens its run when it is complete.

Estimate is a job too (`ches estimate`, with Score's arguments): its progress and Cancel show beside the
buttons (the jobs panel), a reload or another tab with the same settings finds it, and the sentence it keeps
beside the run folder (ches.engine.estimates) is shown, with its time, once it is done. A stored run needs
no job: the page says at once that it is already scored, or damaged (cheap reads).
"""
from dataclasses import replace
from pathlib import Path

import streamlit as st

from ui import auth, frame, jobspanel, loaders, render, state
from ches.engine import estimates, jobs, repair, store
from ches import workspace as wsp
from ches.engine.hub import HUB_PREFIX
from ches.engine.formats import FORMATS, MAPPED
from ches.engine.hub import hub_id
from ches.engine.pairs import Dataset, UnknownFormat
from ches.engine.models import DEFAULT_MODEL, app_model
from ches.engine.models import DEFAULT_MAX_LENGTH
from ches.engine.report import load_report, runs_table
from ches.engine.runs import list_runs, list_unfinished
from ches.review.assignment import ASSIGNMENT_FILE, AssignmentError, read_assignment
from ches.review.probe.check import checks_dir
from ches.review.probe.storage import list_folders, list_probes

frame.page("Data & score")      # first: page config, sign-in gate, the URL's state, the sidebar

MAPPING = jobspanel.FORM_COLUMNS   # {file path: {prompt / chosen / rejected: its column}} chosen on this page
DELETE = "_score_delete"     # the run folder waiting for the user to confirm its deletion
ESTIMATE = "_score_estimate"  # (settings, run folder, sentence or None: the kept one): shown while the settings stay
ESTIMATING = "_score_estimating"  # the estimate job this session follows: (job file, (settings, run folder))
SOURCES = ("Bundled sample", "Upload a file", "Path under the data root", "Hugging Face dataset")

st.title("Data & score")
st.caption("Load preference pairs, check what was read, then embed every pair with a causal LM and "
           "score it with CHES (Razin et al., ICLR 2025). Higher scores mean the chosen and rejected "
           "responses look alike to the model: the pairs most likely to cause likelihood displacement.")
state.show_flash()


def _open_selected() -> None:
    """Selecting a row in the runs table opens that run (a callback: fires only when the selection changes)."""
    rows = st.session_state["score_runs"].selection.rows
    order = st.session_state.get("_runs_order", [])
    if rows and rows[0] < len(order):
        state.set_run(order[rows[0]])
        state.flash("success", f"Opened {loaders.run_label(order[rows[0]])}.")


# ------------------------------------------------------------------------------------ 1. dataset
st.subheader("1 · Dataset")
if "score_source" not in st.session_state:      # a fresh session (a reload): what a running job scores, if one does
    st.session_state.update(jobspanel.running_form(SOURCES))
source = st.radio("Source", SOURCES, horizontal=True, key="score_source", label_visibility="collapsed")
fmt = st.selectbox("Format", [None, *FORMATS], format_func=lambda f: "auto-detect" if f is None else f,
                   help="\n\n".join(f"**{f.name}**: {f.help}" for f in FORMATS.values()), key="score_format")

dataset = None
path = None                   # the file to load (sample, upload, data root); None for the Hub
uploaded = False              # an upload is capped at the upload limit once decompressed (a .gz bomb stops there)
mapping = None
with render.user_errors():
    if source == SOURCES[0]:
        st.caption(f"165 hand-written pairs in TRL conversational format: `{wsp.SAMPLE.name}`")
        path = wsp.SAMPLE
    elif source == SOURCES[1]:
        limit_mb = wsp.megabytes(wsp.MAX_UPLOAD_BYTES)
        # no `type=` filter: a file of another kind then gets our message, which replaces the last one
        up = st.file_uploader(f"Dataset file: .jsonl, .json, .csv, .parquet, optionally .gz (up to {limit_mb:.0f} MB)",
                              key="score_upload")
        if up is not None:
            wsp.check_upload_size(up.size)
            path = wsp.save_upload(state.ws().uploads, up.getvalue(), up.name)
            uploaded = True
        elif st.session_state.get(jobspanel.FORM_UPLOAD):         # the upload a running job scores
            path, uploaded = wsp.existing(state.ws().uploads, st.session_state[jobspanel.FORM_UPLOAD], "uploads"), True
            st.caption(f"Being scored: `{render.escape_md(loaders.dataset_name(path))}`, uploaded earlier "
                       "(an upload replaces it).")
    elif source == SOURCES[2]:
        root = wsp.data_root()
        typed = st.text_input("Path (relative to the data root)", key="score_path",
                              placeholder="e.g. sample.jsonl or my/prefs.parquet")
        st.caption(f"Data root: `{render.escape_md(root)}` (set `CHES_DATA_ROOT` to change it).")
        if typed.strip():
            path = wsp.existing(root, typed)
    else:
        c1, c2, c3 = st.columns([3, 2, 1])
        name = c1.text_input("Dataset name", key="score_hub_name", placeholder="owner/name")
        config = c2.text_input("Config (optional)", key="score_hub_config")
        split = c3.text_input("Split", value="train", key="score_hub_split")
        if st.button("Load from the Hub", key="score_hub_load") and name.strip():
            st.session_state.pop("_hub_spec", None)
            st.session_state["_hub_spec"] = (hub_id(name), config.strip() or None, split.strip() or "train")
        spec = st.session_state.get("_hub_spec")
        if spec:
            dataset = loaders.dataset_hub(*spec, fmt)
    if path is not None:
        mapping = st.session_state.get(MAPPING, {}).get(str(path))
        try:
            dataset = loaders.dataset_file(path, fmt, mapping,
                                           **({"max_bytes": wsp.MAX_UPLOAD_BYTES} if uploaded else {}))
        except UnknownFormat as e:
            st.warning(render.escape_md(e), icon=":material/help:")
            with st.form("score_mapping", border=True):
                st.markdown("**Which columns hold the pair?**")
                cols = st.columns(3)
                for i, (col, part) in enumerate(zip(cols, MAPPED)):
                    col.selectbox(part.capitalize(), e.columns, index=min(i, len(e.columns) - 1),
                                  key=f"score_map_{part}")
                st.form_submit_button("Load with these columns", type="primary", on_click=lambda file=str(path):
                                      st.session_state.setdefault(MAPPING, {}).update(
                                          {file: {part: st.session_state[f"score_map_{part}"] for part in MAPPED}}))
        if mapping:
            st.caption("Columns: " + ", ".join(f"{ours} ← {render.escape_md(theirs)}"
                                               for ours, theirs in mapping.items()))

if dataset is not None:
    report = load_report(dataset)
    c1, c2, c3 = st.columns(3)
    c1.metric("Pairs loaded", report["pairs"])
    c2.metric("Rows skipped", report["skipped"], help="Rows that could not be read (below); ties are counted apart.")
    c3.metric("Format", report["format"])
    if report["ties"]:
        st.caption(f"{report['ties']:,} tie(s) skipped: rows that prefer neither response (rows "
                   + ", ".join(str(r) for r in report["tie_rows"][:20]) + (", …" if report["ties"] > 20 else "") + ").")
    if report["skipped"]:
        with st.expander(f"{report['skipped']} rows could not be read", expanded=report["pairs"] == 0,
                         icon=":material/warning:"):
            st.dataframe(report["errors"], hide_index=True, width="stretch",
                         column_config={"row": st.column_config.NumberColumn("row", format="%d")})
    if dataset.notes:
        st.caption("Converted while reading (the records keep every value): "
                   + "; ".join(render.escape_md(n) for n in dataset.notes))
    if len(report["flags"]):
        with st.expander("Flags (pairs are kept; review them on Browse)", icon=":material/flag:"):
            st.dataframe(report["flags"], hide_index=True, width="stretch")

# -------------------------------------------------------------------------------------- 2. score
st.subheader("2 · Score")
c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
model_typed = c1.text_input("Model", value=DEFAULT_MODEL, key="score_model",
                            help=f"'{DEFAULT_MODEL}' = SmolLM2-135M-Instruct (offline, the default); or a "
                            "Hugging Face model id (owner/name), or a model folder in the models root "
                            "(CHES_MODELS_ROOT).")
model_spec = None
with render.user_errors():
    model_spec = app_model(model_typed, DEFAULT_MODEL)
max_length = int(c2.number_input("Max length", min_value=jobspanel.MAX_LENGTHS[0],
                                 max_value=jobspanel.MAX_LENGTHS[1], value=DEFAULT_MAX_LENGTH,
                                 step=256, key="score_max_length",
                                 help="Max tokens per prompt + response; longer pairs are cut and flagged 'truncated'."))
dtype = c3.selectbox("dtype", jobspanel.DTYPES, key="score_dtype",
                     help="auto = bf16 on a GPU, fp32 on CPU. Sums are always accumulated in float64.")
n_pairs = len(dataset.pairs) if dataset is not None else 0
limit = c4.number_input("First N pairs", min_value=1, value=None, step=100,
                        key="score_limit", placeholder=f"all {n_pairs:,}",
                        help="Score only the first N pairs (a quick look at a large dataset); empty = all.")
limit = int(limit) if limit is not None and limit < n_pairs else None


def _todo(ds: Dataset) -> Dataset:
    """The pairs to score: the first N (as `ches score --limit N` reads them), or all."""
    return ds if limit is None else replace(ds, pairs=ds.pairs[:limit])


def _target(ds: Dataset):
    """(the model's identity, read from its files: a job loads the model; the pairs to score; their run folder):
    the run key names the job."""
    with st.spinner(f"Reading {model_spec}'s tokenizer and weight files for the run key (the model itself "
                    "is loaded by the job; the bundled one is unpacked once, on first use) …"):
        lm = loaders.model_identity(model_spec, dtype)
    todo = _todo(ds)
    return lm, todo, store.run_path(state.ws().runs, store.run_key(todo, lm, max_length))


def _argv() -> list[str]:
    """The `ches score` arguments of the data and settings on the page (`ches estimate` takes the same)."""
    hub = st.session_state.get("_hub_spec") if path is None else None
    return jobs.score_args(path if hub is None else HUB_PREFIX + hub[0], runs=state.ws().runs, model=model_spec,
                           max_length=max_length, dtype=dtype, format=fmt, columns=mapping, limit=limit,
                           config=hub[1] if hub else None, split=hub[2] if hub else None)


def _score(ds: Dataset) -> None:
    _, todo, run_dir = _target(ds)
    damage = repair.reopen_damaged(run_dir)    # a complete run with a damaged file: scored again, as `ches score` does
    if store.is_complete(run_dir):
        state.set_run(run_dir)
        notice = store.version_notice(run_dir)
        state.flash("warning" if notice else "success",
                 "Reopened the stored run for these pairs (same data, model and settings): nothing recomputed. "
                 "The run is active: open Browse, Map or Pair / tokens." + (f" {notice}" if notice else ""))
        return
    job, started = jobs.start(state.ws().jobs, run_dir, _argv(),
                              label=jobspanel.job_label(ds.source, len(todo.pairs), model_spec, max_length, dtype))
    jobspanel.follow_job(run_dir)
    if damage is not None:
        state.flash("warning", f"The stored run for these pairs could not be used: {damage.path.name} cannot be read "
                               f"({damage.why}). It is scored again; its review plan, probes and checks are kept.")
    if not started:
        state.flash("info", f"These pairs are already being scored with these settings (since "
                         f"{job.started_at[11:19]} UTC): this page follows that job.")


def _estimate(ds: Dataset, settings: tuple) -> None:
    """Estimate's callback: a stored run is said at once (cheap reads: already scored, or damaged); else the
    `ches estimate` job starts (or this session follows the one running), and its sentence shows when kept."""
    st.session_state.pop(ESTIMATE, None)
    with state.errors_flashed():
        _, todo, run_dir = _target(ds)
        said = estimates.note(run_dir)
        if said is not None:
            st.session_state[ESTIMATE] = (settings, str(run_dir), said)
            return
        jobspanel.start("estimate", run_dir, _argv(), follow=ESTIMATING, opens=(settings, str(run_dir)),
                        label=jobspanel.job_label(ds.source, len(todo.pairs), model_spec, max_length, dtype))


def _estimate_job(settings: tuple) -> jobs.Job | None:
    """The estimate job recorded for the settings on the page (this session's, another tab's, or from before a
    reload), followed in this session while it runs (`jobspanel.page_job`)."""
    argv = _argv()
    found = [j for j in jobs.list_jobs(state.ws().jobs) if j.kind == "estimate" and list(j.args) == argv]
    if not found:
        return None
    return jobspanel.page_job("estimate", found[-1].run_dir, argv, follow=ESTIMATING,
                              opens=(settings, str(found[-1].run_dir)))


def _said(guess: tuple) -> str | None:
    """The estimate to show: the page's own sentence, or the one the job kept, with when it was measured."""
    _, run_dir, said = guess
    if said is not None:
        return said
    kept = estimates.read(run_dir)
    return f"{kept.text} (estimated {kept.measured_at:%Y-%m-%d %H:%M} UTC)" if kept else None


settings = (dataset.source, n_pairs, limit, model_spec, max_length, dtype) if dataset is not None else None
ready = dataset is not None and bool(dataset.pairs) and model_spec is not None
go, est, where = st.columns([1, 1, 4])          # the progress sits beside the buttons, in view
with where:
    jobspanel.show("main")                      # a running estimate job too: its bar and Cancel
def _score_pressed(ds: Dataset) -> None:
    """Score's callback: the job starts (or the stored run opens) before the page is drawn: no rerun."""
    if state.allowed("score"):
        with state.errors_flashed():
            _score(ds)


go.button("Score", type="primary", icon=":material/play_arrow:", disabled=not ready or not auth.can("score"),
          key="score_go", width="stretch", on_click=_score_pressed, args=(dataset,), help=auth.refuse("score") or
          "Scores in the background: you can leave this page, reload it or cancel; the run opens when done.")
est.button("Estimate", icon=":material/timer:", disabled=not ready or not auth.can("score"), key="score_estimate",
           width="stretch", on_click=_estimate, args=(dataset, settings), help=auth.refuse("score") or "Token count "
           "and time for these settings, from a short measured warm-up (in the background: the job loads the model).")
with render.user_errors():
    if (done := jobspanel.finished(ESTIMATING)) is not None:
        st.session_state[ESTIMATE] = (*done, None)
    job = _estimate_job(settings) if ready else None
    if job is not None and not jobs.status(job).running:   # running: the panel beside the buttons shows it
        jobspanel.in_place(job, ESTIMATING)
    guess = st.session_state.get(ESTIMATE)
    if guess and guess[0] == settings and (said := _said(guess)):
        st.caption(render.escape_md(said))

# ----------------------------------------------------------------------------------- 3. runs
def _goes_with(run_dir: str) -> str:
    """What a run's folder holds besides its numbers: its stored probes, curation checks and review plan."""
    n_probes, n_checks = len(list_probes(Path(run_dir))), len(list_folders(checks_dir(Path(run_dir))))
    goes = f"{n_probes} stored probe(s) and {n_checks} curation check(s)"
    if not (Path(run_dir) / ASSIGNMENT_FILE).exists():
        return goes
    try:
        assignment = read_assignment(run_dir)
        what = (f"{assignment.n:,} pair(s) assigned to {len(assignment.queues)} annotator(s)" if assignment.queues
                else "no assignment")
        what += ", blind" if assignment.blind else ""
    except AssignmentError:
        what = "unreadable"
    return f"{goes}, and its review plan ({what})"


def _delete(run_dir: str, label: str) -> None:
    st.session_state.pop(DELETE, None)
    if not auth.can("delete_run"):
        state.flash("error", auth.refuse("delete_run") or "Not allowed.")
        return
    goes = _goes_with(run_dir)
    store.delete_run(Path(run_dir))
    if st.session_state.get(state.RUN_DIR) == run_dir:
        state.clear_run()
    state.flash("success", f"Deleted the run {label}, with its map, {goes}. Decisions on its pairs are kept: "
                           "they follow the pairs' content.")


st.subheader("3 · Stored runs")
runs = list_runs(state.ws().runs)
labels: dict[str, str] = {}      # every run that can be deleted: complete, unfinished or broken
if not runs:
    st.caption("No stored runs yet. Scoring the same data with the same model and settings again reuses its run.")
else:
    table = runs_table(runs)
    active = str(state.active_run() or "")
    table.insert(0, "active", table["run"] == active)
    st.session_state["_runs_order"] = list(table["run"])
    st.caption(f"{len(table)} run(s), {table['size MB'].sum():,.1f} MB on disk. Select a row to open that run (it "
               "becomes the active run for every page).")
    st.dataframe(table, hide_index=True, width="stretch", on_select=_open_selected, selection_mode="single-row",
                 key="score_runs", column_order=["active", "dataset", "pairs", "model", "max length", "dtype",
                                                 "created", "seconds", "size MB"],
                 column_config={"active": st.column_config.CheckboxColumn("active", width="small"),
                                "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
                                "size MB": st.column_config.NumberColumn("size MB", format="%.1f")})
    if active:
        st.page_link("pages/browse.py", label="Browse the active run", icon=":material/table_rows:")
    labels |= {r: f"{loaders.run_label(r)} · {mb:,.1f} MB" for r, mb in zip(table["run"], table["size MB"])}
for run, plan, progress in list_unfinished(state.ws().runs):     # not while a job scores it
    job = jobs.find(state.ws().jobs, run)
    if job is None or not jobs.status(job).running:
        labels[str(run)] = (f"unfinished: {progress.done:,} of {progress.total:,} pairs · "
                            f"{loaders.dataset_name(plan.get('source'))} · {run.name[:8]}" if progress
                            else f"broken run folder · {run.name[:8]}")
if labels:
    with st.expander("Delete a run", icon=":material/delete:", expanded=bool(st.session_state.get(DELETE))):
        d1, d2 = st.columns([4, 1], vertical_alignment="bottom")
        doomed = d1.selectbox("Run", list(labels), format_func=labels.get, key="score_delete_pick", index=None,
                              placeholder="Pick the run to delete")
        if d2.button("Delete …", key="score_delete", disabled=doomed is None or not auth.can("delete_run"),
                     width="stretch", help=auth.refuse("delete_run")):
            st.session_state[DELETE] = doomed
        if refused := auth.refuse("delete_run"):
            st.caption(f":material/lock: {render.escape_md(refused)}")
        pending = st.session_state.get(DELETE)
        if pending in labels:
            st.warning(f"Delete {render.escape_md(labels[pending])}? Everything in its folder goes: its scores, sums, "
                       f"texts, map, {_goes_with(pending)}. Decisions stay (they are keyed by the pairs' content "
                       "and apply again if you score the data again).", icon=":material/warning:")
            c1, c2, _ = st.columns([1, 1, 3])
            c1.button("Delete the run", key="score_delete_confirm", type="primary", on_click=_delete,
                      args=(pending, labels[pending]))
            c2.button("Cancel", key="score_delete_cancel", on_click=lambda: st.session_state.pop(DELETE, None))
