"""The scoring jobs panel: each job's progress bar (what it is doing) and Cancel, how a stopped one ended
(or why a job record is broken) and Dismiss.

Shown in the sidebar (running jobs only) and on Data & score ("main": also the stopped ones). Jobs are
read from the workspace (ches.engine.jobs), so every tab and session sees the same ones; the session that
started or watched a job opens its run when it is complete (`follow_job`); a fresh session of Data & score
shows the data and settings a running job scores with (`running_form`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from ches import workspace as wsp
from ches.engine import jobs, store
from ches.engine.files import HUB_PREFIX
from ches.engine.formats import FORMATS
from ches.engine.hub import hub_id
from ches.engine.report import dataset_name
from ui import auth, loaders, state
from ui.render import escape_md

MY_JOBS = "_my_jobs"     # run folders whose job this session started or watched on Data & score: opened when done
POLL_S = 1.0             # how often a page with a running job reads its progress
FORM_COLUMNS = "_score_columns"     # Data & score's column mappings: {file path: {prompt / chosen / rejected: column}}
FORM_UPLOAD = "_score_kept_upload"  # an upload being scored, under the uploads folder: shown until another is uploaded
DTYPES = ("auto", "float32", "bfloat16")    # Data & score's dtype choices
MAX_LENGTHS = (16, 131072)                  # and the max lengths it accepts


def job_label(source: object, pairs: int, model_spec: str, max_length: int, dtype: str) -> str:
    """What a job is called on a page: dataset, pairs, model (a model folder by its name), max length, dtype."""
    model = Path(model_spec).name if Path(model_spec).is_absolute() else model_spec
    return f"{dataset_name(source)} · {pairs:,} pairs · {model} · max {max_length} · {dtype}"


def running_form(sources: Sequence[str]) -> dict[str, object]:
    """Data & score's fields (session state keys) as the newest running scoring job was started with, for a
    fresh session: a reload shows the data being scored, not the default. `sources` are the page's four
    source choices (sample, upload, path under the data root, Hub). Only a file the page may read (the
    bundled sample, an upload: FORM_UPLOAD, a file in the data root) and values its fields accept are set;
    {} when no job runs, or it reads another file, or its arguments cannot be read."""
    live = [j for j in jobs.list_jobs(state.ws().jobs) if jobs.status(j).running]
    s = jobs.settings_of(live[-1].args) if live else None
    if s is None:
        return {}
    if s.data.startswith(HUB_PREFIX):
        try:
            name = hub_id(s.data.removeprefix(HUB_PREFIX))
        except ValueError:
            return {}
        split = s.split or "train"
        form: dict[str, object] = {"score_source": sources[3], "score_hub_name": name, "score_hub_split": split,
                                   "score_hub_config": s.config or "", "_hub_spec": (name, s.config, split)}
    else:
        placed = _placed(Path(s.data), sources)
        if placed is None:
            return {}
        form, file = placed
        if s.columns:
            form[FORM_COLUMNS] = {str(file): dict(s.columns)}
    form["score_model"] = s.model
    if s.format is None or s.format in FORMATS:
        form["score_format"] = s.format
    if MAX_LENGTHS[0] <= s.max_length <= MAX_LENGTHS[1]:
        form["score_max_length"] = s.max_length
    if s.dtype in DTYPES:
        form["score_dtype"] = s.dtype
    if s.limit is not None:
        form["score_limit"] = s.limit
    return form


def _placed(file: Path, sources: Sequence[str]) -> tuple[dict[str, object], Path] | None:
    """Where Data & score reads `file` from (its source and the field naming the file) and the file as the
    page names it: the bundled sample, an upload, a file in the data root; None for any other file."""
    with contextlib.suppress(OSError):
        if file.resolve() == wsp.SAMPLE.resolve():
            return {"score_source": sources[0]}, wsp.SAMPLE
    for index, root, key in ((1, state.ws().uploads, FORM_UPLOAD), (2, wsp.data_root(), "score_path")):
        with contextlib.suppress(OSError, ValueError):
            found = wsp.existing(root, file)
            if found.is_file():
                return {"score_source": sources[index], key: str(found.relative_to(Path(root).resolve()))}, found
    return None


def follow_job(run_dir: str | Path) -> None:
    """Open `run_dir` in this session once its scoring job has finished."""
    mine = st.session_state.setdefault(MY_JOBS, [])
    if str(run_dir) not in mine:
        mine.append(str(run_dir))


def job_outcome(s: jobs.JobStatus) -> str:
    """What a job that is over left behind, in the words the user acts on."""
    if s.state == "broken":
        return f"{s.error[:1].upper()}{s.error[1:]}. Dismiss removes the record."
    kept = (f"{s.kept:,} of {s.total:,} pairs kept; Score again to resume." if s.total
            else "It stopped before any pair was scored.")
    if s.state == "failed":
        return f"Scoring failed: {s.error}" + (f" ({kept})" if s.kept else "")
    return ("Scoring cancelled: " if s.state == "cancelled" else "Scoring interrupted: ") + kept


def show(place: str) -> None:
    """Every scoring job of the workspace, from any tab or session: a running one with its progress bar and
    Cancel; on the page itself ("main") also how a stopped one ended. Polls while a job runs."""
    running = any(jobs.status(j).running for j in jobs.list_jobs(state.ws().jobs))
    st.fragment(_panel, run_every=POLL_S if running else None)(place, running)


def _panel(place: str, was_running: bool) -> None:
    mine = st.session_state.setdefault(MY_JOBS, [])
    finished = [r for r in mine if store.is_complete(Path(r))]
    shown = []
    for job in jobs.list_jobs(state.ws().jobs):
        s = jobs.status(job)
        if s.state == "complete":                 # the run is listed everywhere now; the record has done its work
            with contextlib.suppress(OSError, ValueError):
                jobs.forget(job)
        elif place == "main" or s.running:
            shown.append((job, s))
            if place == "main" and s.running:
                follow_job(job.run_dir)           # watched here (after a reload too): open its run when done
    if finished:
        for r in finished:
            mine.remove(r)
        state.set_run(finished[-1])
        m = loaders.manifest(finished[-1])
        state.flash("success", f"Scored {m['pairs']} pairs ({m.get('seconds', 0):.1f} s of scoring). The run is "
                               "active: open Browse, Map or Pair / tokens.")
        st.rerun()
    if any(s.running for _, s in shown) != was_running:
        st.rerun()                                # a job started or ended elsewhere: poll, or stop polling
    for job, s in shown:
        name = job.run_dir.name
        if s.running:
            if place == "sidebar":
                st.caption(f"Scoring {escape_md(job.label)}")
                _job_bar(st, s)
                st.button("Cancel scoring", key=f"sidebar_cancel_{name}", on_click=_cancel, args=(job,),
                          icon=":material/stop:", disabled=not auth.can("score"),
                          help=auth.refuse("score") or "Stops after the current batch; finished chunks are kept.")
                continue
            bar, stop = st.columns([5, 1], vertical_alignment="bottom")
            _job_bar(bar, s)
            stop.button("Cancel", key=f"main_cancel_{name}", on_click=_cancel, args=(job,), icon=":material/stop:",
                        width="stretch", disabled=not auth.can("score"), help=auth.refuse("score") or "Stops after "
                        "the current batch; the finished chunks are kept, and scoring the same data with the same "
                        "settings again resumes there.")
            st.caption(f"Scoring {escape_md(job.label)}" + (f" · {escape_md(s.estimate)}" if s.estimate else ""))
        else:
            note, dismiss = st.columns([5, 1], vertical_alignment="center")
            failed = s.state in ("failed", "broken")
            (note.error if failed else note.warning)(f"{escape_md(job.label)}: {escape_md(job_outcome(s))}",
                                                    icon=":material/error:" if failed else ":material/cancel:")
            dismiss.button("Dismiss", key=f"main_dismiss_{name}", on_click=_dismiss, args=(job,), width="stretch")


def _cancel(job: jobs.Job) -> None:
    if state.allowed("score"):                    # the role as it is now, not when the button was drawn
        jobs.cancel(job)


def _dismiss(job: jobs.Job) -> None:
    with contextlib.suppress(ValueError):        # restarted meanwhile: it shows its progress instead
        jobs.forget(job)


def _job_bar(where, s: jobs.JobStatus) -> None:
    """A running job's progress bar: what it is doing (until it scores), pairs done, speed and time left,
    as the job itself reports them (figures that cannot be true left out, and said so)."""
    doing = escape_md(s.step[:1].upper() + s.step[1:]) + " …" if s.step and s.step != "scoring" else ""
    doubt = f" · {escape_md(s.unreadable[:1].upper() + s.unreadable[1:])}" if s.unreadable else ""
    if not s.total:
        where.progress(0.0, text=(doing or ("Scoring …" if s.step else "Starting the scoring process …")) + doubt)
        return
    figures = f"{s.done:,} / {s.total:,} pairs" + (f" · {s.rate}" if s.rate else "") \
        + (f" · {s.seconds_left} left" if s.seconds_left else "")
    where.progress(min(1.0, s.done / s.total), text=(f"{doing} · " if doing else "") + figures + doubt)
