"""The scoring jobs panel: each job's progress bar (what it is doing) and Cancel, how a stopped one ended
(or why a job record is broken) and Dismiss.

Shown in the sidebar (running jobs only) and on Data & score ("main": also the stopped ones). Jobs are
read from the workspace (ches.engine.jobs), so every tab and session sees the same ones; the session that
started or watched a job opens its run when it is complete (`follow_job`).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import streamlit as st

from ches.engine import jobs, store
from ches.engine.report import dataset_name
from ui import auth, loaders, state
from ui.render import escape_md

MY_JOBS = "_my_jobs"     # run folders whose job this session started or watched on Data & score: opened when done
POLL_S = 1.0             # how often a page with a running job reads its progress


def job_label(source: object, pairs: int, model_spec: str, max_length: int) -> str:
    return f"{dataset_name(source)} · {pairs:,} pairs · {model_spec} · max {max_length}"


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
    as the job itself reports them."""
    doing = escape_md(s.step[:1].upper() + s.step[1:]) + " …" if s.step and s.step != "scoring" else ""
    if not s.total:
        where.progress(0.0, text=doing or "Starting the scoring process …")
        return
    where.progress(min(1.0, s.done / s.total), text=(f"{doing} · " if doing else "") + f"{s.done:,} / {s.total:,} pairs"
                   + (f" · {s.rate}" if s.rate else "") + (f" · {s.seconds_left} left" if s.seconds_left else ""))
