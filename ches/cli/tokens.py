"""`ches tokens`: Pair / tokens' views of rows of a run, computed with the run's model and stored with the run.

    ches tokens RUN --row R [--row R ...] [--runs DIR] [--device D]

The views go to RUN/tokens/<row>.json (ches/review/tokenview.py), the files Pair / tokens reads; a row
already stored is not computed again. Pair / tokens runs this command as a job (ches/engine/jobs.py) for the
row it opens and the next ones of its ranking (`tokenview.tokens_args`); its events: a step before loading
the model, progress after each pair ("pairs"), "complete" with the folder.
"""
from __future__ import annotations

import argparse
import sys

from ches.cli.common import UserError, help_page, job_events, resolve_run, runs_folder
from ches.review.tokenview import FOLDER, store_views


def add_parsers(sub) -> None:
    p = sub.add_parser("tokens", help="store Pair / tokens' per-token view of rows of a run", **help_page(
                       "Recompute each given source row's hidden states with the run's model (the pair alone, at the "
                       "run's max length) and store its per-token CHES and LN-CHES contributions, the rejected "
                       "side's alignment and the token diff's tokens in RUN/tokens/, as Pair / tokens shows them. "
                       "Rows already stored are kept.",
                       "ches tokens RUN --row 17",
                       "ches tokens RUN --row 17 --row 4 --row 120 --device cuda"))
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--row", type=int, action="append", required=True, metavar="R",
                   help="a source row (1-based line / record number in the dataset); give it once per row")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps (default: auto, the best available)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.set_defaults(func=cmd_tokens)


def cmd_tokens(args: argparse.Namespace) -> int:
    """`ches tokens`: each row's view computed (or found) and stored; one line on stdout; the job's events."""
    from ches.engine.models import load_model
    from ches.engine.store import read_manifest

    with job_events() as events:
        run_dir = resolve_run(args.run, runs_folder(args.runs))
        key = read_manifest(run_dir)["key"]
        rows = list(dict.fromkeys(args.row))
        events("step", what=f"loading the model {key['model_id']}")
        print(f"loading {key['model_id']} …", file=sys.stderr)
        lm = load_model(key["model_id"], device=args.device, dtype=key["dtype"])
        if lm.fingerprint != key["fingerprint"]:
            print(f"warning: the weights of {key['model_id']} differ from the ones the run was scored with; the "
                  "token values may not match the stored scores", file=sys.stderr)
        events("step", what="computing the token view")
        events("progress", done=0, total=len(rows))
        try:
            computed = store_views(run_dir, rows, lm, progress=lambda done: events("progress", done=done,
                                                                                   total=len(rows)))
        except KeyError as e:
            raise UserError(e.args[0]) from None
        print(f"token views of {len(rows)} row(s) of {run_dir.name} ({computed} computed now) in "
              f"{run_dir / FOLDER}")
        events("complete", result=str(run_dir / FOLDER))
    return 0
