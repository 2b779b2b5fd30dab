"""`ches project`: the Map's 2-D layout of a run, computed once and stored with the run (ches/review/projection.py).

    ches project RUN [--view pairs|responses] [--n-neighbors K] [--min-dist D] [--runs DIR]

The layout goes to RUN/projection/, the cache the Map page reads (`projection.cached_layout`); the same
run and parameters again reuse it. The Map page runs this command as a job (ches/engine/jobs.py) with the
arguments `project_args` writes; its events: a step before each pass ("Centring ...", "UMAP of ..."),
"complete" with the projection folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ches.cli.common import UserError, help_page, job_events, resolve_run, runs_folder
from ches.review.projection import DEFAULTS, VIEWS, cached_layout, map_coordinates


def add_parsers(sub) -> None:
    p = sub.add_parser("project", help="compute the Map's UMAP layout of a run (stored with the run)", **help_page(
                       "Centre the run's hidden-state means and lay them out in 2-D with UMAP (above "
                       f"{DEFAULTS['pca_above']:,} points, a randomized PCA to {DEFAULTS['pca_dims']} dimensions "
                       "first), as the Map shows them, and store the layout in RUN/projection/; the same run and "
                       "parameters again reuse it.",
                       "ches project RUN", "ches project RUN --view responses --n-neighbors 30 --min-dist 0.05"))
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--view", choices=VIEWS, default=VIEWS[0], help="pairs: one point per pair (m- - m+); "
                   "responses: the chosen and the rejected means (default: pairs)")
    p.add_argument("--n-neighbors", type=int, default=DEFAULTS["n_neighbors"], metavar="K",
                   help=f"UMAP's n_neighbors (default: {DEFAULTS['n_neighbors']})")
    p.add_argument("--min-dist", type=float, default=DEFAULTS["min_dist"], metavar="D",
                   help=f"UMAP's min_dist (default: {DEFAULTS['min_dist']})")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_project)


def project_args(run_dir: str | Path, view: str, *, n_neighbors: int, min_dist: float) -> list[str]:
    """The `ches project` arguments that compute the Map of `run_dir` for this view and these UMAP parameters."""
    return [str(run_dir), "--view", view, "--n-neighbors", str(int(n_neighbors)), "--min-dist", repr(float(min_dist))]


def cmd_project(args: argparse.Namespace) -> int:
    """`ches project`: the layout computed (or found) and stored; one line on stdout; the job's events."""
    with job_events() as events:
        run_dir = resolve_run(args.run, runs_folder(args.runs))

        def say(message: str) -> None:
            events("step", what=message)
            print(message, file=sys.stderr)

        params = {"n_neighbors": args.n_neighbors, "min_dist": args.min_dist}
        coords = map_coordinates(run_dir, args.view, progress=say, **params)
        if cached_layout(run_dir, args.view, **params) is None:     # a page waits for the stored one
            raise UserError(f"the map could not be stored in {run_dir / 'projection'} (see the warning above)")
        print(f"map of {run_dir.name} ({args.view}, n_neighbors {args.n_neighbors}, min_dist {args.min_dist:g}): "
              f"{len(coords):,} points, stored in {run_dir / 'projection'}")
        events("complete", result=str(run_dir / "projection"))
    return 0
