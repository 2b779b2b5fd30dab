"""The jobs panel: each job's progress bar (what it is doing) and Cancel, how a stopped one ended (or why a
job record is broken) and Dismiss.

Shown in the sidebar (running jobs of every kind), on Data & score ("main": the scoring jobs, stopped ones
too, and the other kinds while they run) and, for a probe, a curation check, the Map's layout or a token view,
where its page starts it (`page_job`, `in_place`). Jobs are read from the workspace (ches.engine.jobs), so every tab
and session sees the same ones. The session that started or watched a scoring job opens its run when it is
complete (`follow_job`); one that started or watched another job opens its result (`start`, `page_job`,
`finished`); a fresh session of Data & score shows the data and settings a running job scores with
(`running_form`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import streamlit as st

from ches import workspace as wsp
from ches.engine import jobs, store
from ches.engine.hub import HUB_PREFIX
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
    live = [j for j in jobs.list_jobs(state.ws().jobs) if j.kind == "score" and jobs.status(j).running]
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


def start(kind: str, run_dir: Path, args: list[str], *, label: str, follow: str, opens: object) -> jobs.Job:
    """Start `ches <kind> *args` as a job (or attach to the one running with these arguments) and follow it in
    this session under the session key `follow`: `finished(follow)` gives back `opens` once it is done."""
    job, started = jobs.start(state.ws().jobs, run_dir, args, kind=kind, label=label)
    st.session_state[follow] = (str(job.file), opens)
    if not started:
        since = datetime.fromisoformat(job.started_at).strftime("%H:%M:%S")
        state.flash("info", f"This {jobs.WHAT[kind]} is already running with these settings (since {since} UTC): "
                            "this page follows it.")
    return job


def page_job(kind: str, run_dir: Path, args: Sequence[str], *, follow: str, opens: object) -> jobs.Job | None:
    """The job of this kind for `run_dir` and `args`, if one is recorded (running or stopped), for a page to
    show where it starts it (`in_place`). One that runs is followed in this session from now on (another tab,
    a reload), as `start` does."""
    job = jobs.find(state.ws().jobs, run_dir, kind=kind, args=args)
    if job is not None and jobs.status(job).running:
        st.session_state[follow] = (str(job.file), opens)
    return job


def finished(follow: str) -> object | None:
    """The `opens` of the job followed under `follow`, once that job is complete or its record is gone (the
    jobs panel removes a complete job's record; check that its result is there); None while it runs, when it
    stopped without finishing (its page shows how, with Dismiss), or when none is followed. Given once."""
    held = st.session_state.get(follow)
    if not held:
        return None
    job = jobs.read(Path(held[0]))
    if job is not None and jobs.status(job).state != "complete":
        return None
    del st.session_state[follow]
    return held[1]


def in_place(job: jobs.Job | None, follow: str, ready: Callable[[], bool] | None = None) -> None:
    """`job` (from `page_job`) where its page starts it: running, its bar (read again every POLL_S) and
    Cancel; stopped, how it ended and Dismiss; complete, nothing (its record removed). When it stops running,
    or `ready()` turns true while it runs (what the page waits for is stored; the job goes on), the whole
    page runs again, and opens its result (`finished`)."""
    if job is None:
        return
    s = jobs.status(job)
    if s.state == "complete":
        with contextlib.suppress(OSError, ValueError):
            jobs.forget(job)
        return
    _row(job, s, follow, ready)


def _watch(job: jobs.Job, s: jobs.JobStatus, ready: Callable[[], bool] | None = None) -> None:
    """A running job's bar and what it is, read again every POLL_S by a fragment that holds no widget: under
    load a click on a widget inside a polling fragment is lost (bench/click_bench.py, in_fragment), so its
    Cancel is drawn beside it by the page run. When the job stops (or `ready()`), the fragment's own run
    reruns the page (never the page run itself: a rerun there would drop a click the run carries)."""
    st.session_state[_PAGE_RUN] = True
    try:
        st.fragment(_poll, run_every=POLL_S)(job, ready)
    finally:
        st.session_state[_PAGE_RUN] = False


def _poll(job: jobs.Job, ready: Callable[[], bool] | None = None) -> None:
    now = jobs.read(job.file)
    s = jobs.status(job) if now is not None and now.started_at == job.started_at else None
    if s is None or not s.running or (ready is not None and ready()):
        if not st.session_state.get(_PAGE_RUN):
            st.rerun()                            # over (or gone, or started again): the page shows how
        return
    _job_bar(st, job.kind, s)
    st.caption(escape_md(job_title(job)) + (f" · {escape_md(s.estimate)}" if s.estimate else ""))


_PAGE_RUN = "_jobs_page_run"    # True while the page run draws a job's fragment (it must not rerun then)


def job_title(job: jobs.Job) -> str:
    """What a job is called in the panel: "Scoring <label>", "Probe: <label>", "Map: <label>", ..."""
    return f"Scoring {job.label}" if job.kind == "score" else f"{jobs.WHAT[job.kind].capitalize()}: {job.label}"


def job_outcome(s: jobs.JobStatus, kind: str = "score") -> str:
    """What a job that is over left behind, in the words the user acts on."""
    if s.state == "broken":
        return f"{s.error[:1].upper()}{s.error[1:]}. Dismiss removes the record."
    what = jobs.WHAT[kind].capitalize()
    if kind != "score":
        return f"{what} failed: {s.error}" if s.state == "failed" else f"{what} {s.state}: nothing was stored."
    kept = (f"{s.kept:,} of {s.total:,} pairs kept; Score again to resume." if s.total
            else "It stopped before any pair was scored.")
    if s.state == "failed":
        return f"Scoring failed: {s.error}" + (f" ({kept})" if s.kept else "")
    return ("Scoring cancelled: " if s.state == "cancelled" else "Scoring interrupted: ") + kept


def open_finished() -> None:
    """A scoring job this session started or watched has finished: its run becomes the active one, and a
    message says so. ui.frame.page calls it before the page reads the active run (no rerun needed)."""
    mine = st.session_state.setdefault(MY_JOBS, [])
    finished_runs = [r for r in mine if store.is_complete(Path(r))]
    if finished_runs:
        for r in finished_runs:
            mine.remove(r)
        state.set_run(finished_runs[-1])
        m = loaders.manifest(finished_runs[-1])
        state.flash("success", f"Scored {m['pairs']} pairs ({m.get('seconds', 0):.1f} s of scoring). The run is "
                               "active: open Browse, Map or Pair / tokens.")


def show(place: str) -> None:
    """Every job of the workspace, from any tab or session: a running one with its progress bar and Cancel; on
    Data & score ("main") also how a stopped scoring job ended."""
    for job in jobs.list_jobs(state.ws().jobs):
        s = jobs.status(job)
        if s.state == "complete":                 # listed (a run) or stored (a probe, check, map) now: done
            with contextlib.suppress(OSError, ValueError):
                jobs.forget(job)
        elif place != "sidebar" and (s.running or job.kind == "score"):
            if s.running and job.kind == "score":
                follow_job(job.run_dir)           # watched here (after a reload too): open its run when done
            _row(job, s)
        elif s.running:
            _watch(job, s)
            st.button("Cancel scoring" if job.kind == "score" else f"Cancel the {jobs.WHAT[job.kind]}",
                      key=f"sidebar_cancel_{job.name}", on_click=_cancel, args=(job,), icon=":material/stop:",
                      disabled=not auth.can("score"), help=auth.refuse("score") or _CANCEL_HELP[job.kind == "score"])


_CANCEL_HELP = {True: "Stops after the current batch; the finished chunks are kept, and scoring the same data "
                      "with the same settings again resumes there.",
                False: "Stops it at once; nothing is stored."}


def _row(job: jobs.Job, s: jobs.JobStatus, follow: str | None = None, ready: Callable[[], bool] | None = None) -> None:
    """One job on a page: running, its bar, Cancel and what it is; stopped, how it ended and Dismiss."""
    if s.running:
        bar, stop = st.columns([5, 1], vertical_alignment="top")
        with bar:
            _watch(job, s, ready)
        stop.button("Cancel", key=f"main_cancel_{job.name}", on_click=_cancel, args=(job,), icon=":material/stop:",
                    width="stretch", disabled=not auth.can("score"),
                    help=auth.refuse("score") or _CANCEL_HELP[job.kind == "score"])
        return
    note, dismiss = st.columns([5, 1], vertical_alignment="center")
    failed = s.state in ("failed", "broken")
    (note.error if failed else note.warning)(f"{escape_md(job.label)}: {escape_md(job_outcome(s, job.kind))}",
                                            icon=":material/error:" if failed else ":material/cancel:")
    dismiss.button("Dismiss", key=f"main_dismiss_{job.name}", on_click=_dismiss, args=(job, follow), width="stretch")


def _cancel(job: jobs.Job) -> None:
    if state.allowed("score"):                    # the role as it is now, not when the button was drawn
        jobs.cancel(job)


def _dismiss(job: jobs.Job, follow: str | None) -> None:
    with contextlib.suppress(ValueError):        # restarted meanwhile: it shows its progress instead
        jobs.forget(job)
    held = st.session_state.get(follow) if follow else None
    if held and held[0] == str(job.file):
        del st.session_state[follow]              # nothing to open: it stopped without finishing


def _job_bar(where, kind: str, s: jobs.JobStatus) -> None:
    """A running job's progress bar: what it is doing (a scoring job: until it scores), what is done, speed
    and time left, as the job itself reports them (figures that cannot be true left out, and said so)."""
    doing = escape_md(s.step[:1].upper() + s.step[1:]) + " …" if s.step and s.step != "scoring" else ""
    doubt = f" · {escape_md(s.unreadable[:1].upper() + s.unreadable[1:])}" if s.unreadable else ""
    if not s.total:
        waiting = f"{jobs.WHAT[kind].capitalize()} …" if s.step else f"Starting the {jobs.WHAT[kind]} process …"
        where.progress(0.0, text=(doing or waiting) + doubt)
        return
    figures = f"{s.done:,} / {s.total:,} {jobs.UNITS[kind][1]}" + (f" · {s.rate}" if s.rate else "") \
        + (f" · {s.seconds_left} left" if s.seconds_left else "")
    where.progress(min(1.0, s.done / s.total), text=(f"{doing} · " if doing else "") + figures + doubt)
