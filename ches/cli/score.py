"""`ches score`, `ches estimate` and `ches runs`: score a dataset into a run folder, say how long that would take,
list the stored runs.

    ches score DATA [--split S] [--config C] [--column OURS=THEIRS ...] [--limit N] [--model M] [--format F]
               [--max-length N] [--dtype D] [--device D] [--batch-tokens N] [--chunk-size N] [--out DIR] [--top K]
    ches estimate DATA [the arguments of ches score]
    ches runs [--out DIR] [--repair RUN]

People read stderr (what was loaded, the estimate, a progress bar) and stdout (the summary). A scoring job
(ches/engine/jobs.py) reads neither: with $CHES_JOB_STATUS set, `score` appends its events to that file as
JSON lines (jobs.Events: step before each long step, planned, estimate, progress, interrupted, error,
complete). `estimate` (Data & score's Estimate runs it as a job) prints its sentence on stdout and keeps it
beside the run folder (ches/engine/estimates.py), where the page reads it once the job's record is gone.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ches.cli.common import UserError, help_page, job_events, runs_folder
from ches.engine import jobs
from ches.engine.chunks import DEFAULT_CHUNK_PAIRS
from ches.engine.files import load_dataset
from ches.engine.formats import FORMATS
from ches.engine.metrics import METRICS
from ches.engine.models import DEFAULT_MAX_LENGTH, DEFAULT_MODEL
from ches.engine.timing import CHUNK_SECONDS
from ches.workspace import megabytes


def add_parsers(sub) -> None:
    s = sub.add_parser("score", help="embed a dataset with a causal LM and score every pair", **help_page(
                       "Score every pair of DATA with CHES, LN-CHES and the paper's baselines. "
                       "The run is written under --out in chunks as it goes, keyed by the dataset's records, "
                       "model, template, max length and dtype: scoring the same thing again reuses it, and "
                       "after Ctrl-C, SIGTERM or a crash the same command resumes where it stopped. "
                       "Under torchrun every rank scores its own chunks (docs/cli-and-api.md: Several GPUs).",
                       "ches score data/sample.jsonl --limit 32          # the bundled sample's first 32 pairs, the "
                       "bundled model",
                       "ches score pairs.jsonl.gz --max-length 1024 --out runs/",
                       "ches score owner/dataset --split train_prefs --model HuggingFaceTB/SmolLM2-360M-Instruct",
                       "ches score table.csv --column prompt=question --column chosen=better --column rejected=worse"))
    score_options(s)
    s.set_defaults(func=cmd_score)

    e = sub.add_parser("estimate", help="say how long `ches score` would take with the same arguments", **help_page(
                       "Read DATA and load the model as `ches score` would with the same arguments, find the run "
                       "folder they score into, and say how many pairs are left to score, their tokens and the time, "
                       "measured on a short warm-up forward pass; nothing is scored. The sentence is printed and kept "
                       "beside the run folder (--out/<run id>.estimate.json), where Data & score's Estimate reads it.",
                       "ches estimate data/sample.jsonl --limit 32",
                       "ches estimate pairs.jsonl.gz --max-length 1024 --out runs/"))
    score_options(e)
    e.set_defaults(func=cmd_estimate)

    r = sub.add_parser("runs", help="list stored runs, or mend a damaged one", **help_page(
                       "List the stored runs: complete, unfinished (with the command that resumes them) and "
                       "damaged ones (with the command that mends them).",
                       "ches runs", "ches runs --repair 1bb49c0a      # a run id, a unique prefix of one, or a folder"))
    r.add_argument("--out", help="runs folder (default: $CHES_WORKSPACE/runs)")
    r.add_argument("--repair", metavar="RUN", help="mend the run folder RUN (a path, or a run id under --out) and "
                   "say what was done to each file: a complete run with a cut-short or garbled file is made "
                   "unfinished (the next `ches score` of its data scores it again), an unfinished run whose "
                   "plan.json cannot be read is removed (its finished chunks cannot be checked without it), "
                   "and what a killed tidy-up left in a complete run is removed")
    r.set_defaults(func=cmd_runs)


def score_options(p: argparse.ArgumentParser) -> None:
    """The arguments of `ches score`, which `ches estimate` takes too."""
    p.add_argument("data", help="dataset: a .jsonl, .jsonl.gz, .json, .parquet or .csv file, a folder laid out "
                   "as a Hugging Face dataset (data/<split>-00000-of-00002.parquet, README with configs), or a "
                   "Hugging Face dataset name (owner/name; hf://datasets/owner/name is the Hub only, never a "
                   "local folder)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"'{DEFAULT_MODEL}' (SmolLM2-135M-Instruct, "
                   "offline, the default), a Hugging Face model id, or a local model folder")
    p.add_argument("--format", choices=sorted(FORMATS), help="dataset format (default: auto-detected)")
    p.add_argument("--split", help="split of a dataset folder or Hugging Face dataset (default: train, or the "
                   "only split); an error with a single file")
    p.add_argument("--config", help="config of a dataset folder (README configs) or Hugging Face dataset")
    p.add_argument("--column", action="append", metavar="OURS=THEIRS", help="for rows in no known format: "
                   "which column holds the prompt, the chosen and the rejected response, given three times, e.g. "
                   "--column prompt=question --column chosen=better --column rejected=worse")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N usable pairs (reading stops there)")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, metavar="N",
                   help="max tokens per prompt+response sequence; longer pairs are cut and flagged "
                   f"'truncated' (default: {DEFAULT_MAX_LENGTH})")
    p.add_argument("--dtype", default="auto", help="model dtype: auto (bf16 on GPU, fp32 on CPU), "
                   "float32, bfloat16, float16")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--batch-tokens", type=int, metavar="N", help="token budget per forward batch, "
                   "padding included (default: 1024 on CPU, 32768 on GPU)")
    p.add_argument("--chunk-size", type=int, metavar="N",
                   help="pairs per chunk, the unit that is committed to disk and resumed: a multiple of the "
                   "block of pairs embedded together (8 on CPU, 128 on GPU), which keeps every number independent "
                   f"of the chunk size (default: about {CHUNK_SECONDS:.0f} s of work at the rate the warm-up "
                   f"measures, at most a twentieth of the run but at least 16 pairs, at most {DEFAULT_CHUNK_PAIRS}, "
                   "in whole blocks: a Ctrl-C or kill loses about the last half-minute); a resumed run, or a second "
                   "process on the same run, keeps the size the run was planned with")
    p.add_argument("--out", help="runs folder (default: $CHES_WORKSPACE/runs, i.e. ./workspace/runs)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="pairs listed in the summary (default: 10)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model's own Python code to run (off by default: only for models you trust)")


def cmd_score(args: argparse.Namespace) -> int:
    """`ches score`, with the job's events (rank 0's): "interrupted", "error" (the message main prints) or
    "complete" (`job_events`)."""
    rank = int(os.environ.get("RANK", "0"))
    with job_events(write=rank == 0) as events:
        code = _score(args, rank, events)
        if code == 0:
            events("complete")
        return code


def cmd_estimate(args: argparse.Namespace) -> int:
    """`ches estimate`: what `ches score` with these arguments would score and how long it would take, on stdout
    and kept beside the run folder (ches.engine.estimates); the job's events: a step before each long step,
    "complete" with the file kept. The run folder is only read (a damaged run is said so, not reopened)."""
    from ches.engine import estimates
    from ches.engine.pipeline import estimate, pending_pairs
    from ches.engine.store import run_key, run_path

    with job_events() as events:
        say = lambda text: print(text, file=sys.stderr)  # noqa: E731
        ds = _read(args, events, say, 0)
        lm = _load(args, events, say)
        run_dir = run_path(runs_folder(args.out), run_key(ds, lm, args.max_length))
        text = estimates.note(run_dir)
        if text is None:
            events("step", what="estimating the time (a short measured warm-up)")
            pending = pending_pairs(ds, run_dir)
            est = estimate(pending, lm, max_length=args.max_length, batch_tokens=args.batch_tokens)
            text = estimates.sentence(est, lm.device, len(ds.pairs) - len(pending))
        kept = estimates.write(run_dir, text)
        print(text)
        events("complete", result=str(kept))
    return 0


def _read(args: argparse.Namespace, events: jobs.Events, say, rank: int):
    """DATA read as `ches score` reads it (what was read on stderr; rank 0 lists the rows left out); UserError for
    a number out of range or no usable pair, before the model loads."""
    if args.max_length < 2:
        raise UserError("--max-length must be at least 2")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    events("step", what="reading the data")
    ds = load_dataset(args.data, format=args.format, split=args.split, config=args.config, limit=args.limit,
                      columns=column_mapping(args.column))
    say(f"loaded {len(ds.pairs)} pairs from {ds.source}" + (f" (split {ds.split})" if ds.split else "")
        + f" (format: {ds.format})" + (f", the first {args.limit} asked for ({ds.records_read:,} of "
                                       f"{_count(ds.source_records)} records read)" if args.limit else ""))
    for note in ds.notes:
        say(f"  note: {note}")
    if rank == 0:
        report_errors(ds.errors)
        report_ties(ds.skipped)
    if not ds.pairs:                                   # before the model loads
        first = f" (first: {min(ds.errors, key=lambda e: e.row)})" if ds.errors else ""
        raise UserError(f"no usable pair in {ds.source}: {len(ds.errors)} row(s) could not be read{first}, "
                        f"{len(ds.skipped)} tie(s) skipped")
    return ds


def _load(args: argparse.Namespace, events: jobs.Events, say):
    """The model as `ches score` loads it; UserError for a --chunk-size that is not whole blocks on its device."""
    from ches.engine.forward import block_pairs
    from ches.engine.models import load_model

    events("step", what=f"loading the model {args.model}")
    lm = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    say(f"model {args.model} on {lm.device} ({str(lm.dtype).removeprefix('torch.')})")
    block = block_pairs(lm.device)
    if args.chunk_size is not None and args.chunk_size % block:
        raise UserError(f"--chunk-size must be a multiple of {block} on {lm.device.type} (pairs are embedded in "
                        f"blocks of {block}, so that no pair's numbers depend on the chunk size)")
    return lm


def _score(args: argparse.Namespace, rank: int, events: jobs.Events) -> int:
    from ches.engine.forward import block_pairs
    from ches.engine.pipeline import Interrupted, estimate, pending_pairs, score_dataset
    from ches.engine.timing import chunk_size_for
    from ches.engine.repair import reopen_damaged
    from ches.engine.runs import run_progress
    from ches.engine.store import is_complete, read_manifest, read_scores, read_texts, run_key, run_path

    world = int(os.environ.get("WORLD_SIZE", "1"))
    say = (lambda text: print(text, file=sys.stderr)) if rank == 0 else (lambda text: None)  # noqa: E731
    ds = _read(args, events, say, rank)
    lm = _load(args, events, say)
    runs_root = runs_folder(args.out)
    block = block_pairs(lm.device)
    run_dir = run_path(runs_root, run_key(ds, lm, args.max_length))
    reopen_damaged(run_dir)                            # a cut-short file of a complete run: scored again
    state = run_progress(run_dir)
    done = len(ds.pairs) if is_complete(run_dir) else state.done if state else 0
    events("planned", run=str(run_dir), total=len(ds.pairs), done=done)
    chunk_size = args.chunk_size
    if not is_complete(run_dir) and rank == 0:
        say(f"resuming {run_dir}: {done} of {len(ds.pairs)} pairs already scored" if done
            else f"scoring into {run_dir}")
        events("step", what="estimating the time (a short measured warm-up)")
        est = estimate(pending_pairs(ds, run_dir), lm, max_length=args.max_length, batch_tokens=args.batch_tokens,
                       ranks=world)
        events("estimate", **asdict(est))
        say(f"{est} (measured in a warm-up" + (f", x {world} ranks)" if world > 1 else ")"))
        if state is None:                                  # a new run (a resume keeps its plan's size)
            chunk_size = chunk_size or chunk_size_for(len(ds.pairs), est, block)
    events("step", what="scoring")
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ProgressBar(len(ds.pairs), initial=done, disable=rank != 0, events=events) as bar:
            run_dir = score_dataset(ds, lm, runs_root=runs_root, max_length=args.max_length,
                                    batch_tokens=args.batch_tokens, chunk_size=chunk_size,
                                    progress=bar.update, command=args.command_line)
    except Interrupted as e:
        events("interrupted", done=e.done, total=e.total)
        say(f"ches: {e}")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if rank != 0:                                      # torchrun: rank 0 finalises and reports
        return 0
    manifest, table = read_manifest(run_dir), read_scores(run_dir)
    known = {e.row for e in ds.errors + ds.skipped}
    report_errors([f"row {e['row']}: {e['reason']}" for e in manifest["rows_skipped"] if e["row"] not in known])
    fresh = time.perf_counter() - started
    print(summary(table, manifest, read_texts, run_dir, args.top, fresh))
    return 0


def column_mapping(given: list[str] | None) -> dict[str, str] | None:
    """--column prompt=question ... as {"prompt": "question", ...}; the column name may itself hold '='."""
    if not given:
        return None
    pairs = [g.partition("=") for g in given]
    if any(not sep for _, sep, _ in pairs):
        raise UserError(f"--column takes OURS=THEIRS (e.g. prompt=question), got {given}")
    return {ours.strip(): theirs for ours, _, theirs in pairs}


def _interrupt(signum, frame) -> None:
    """SIGTERM (a scheduler, torchrun, the app's Stop) ends scoring like Ctrl-C: finished chunks are kept."""
    raise KeyboardInterrupt


def _count(n: int | None) -> str:
    return "an unknown number of" if n is None else f"{n:,}"


def report_ties(ties, limit: int = 20) -> None:
    """Ties (rows that prefer neither response) are skipped on purpose: counted apart from unreadable rows."""
    if ties:
        rows = ", ".join(str(e.row) for e in ties[:limit]) + (", ..." if len(ties) > limit else "")
        print(f"tie: skipped {len(ties)} row(s) that prefer neither response (rows {rows})", file=sys.stderr)


def report_errors(errors, limit: int = 20) -> None:
    if not errors:
        return
    print(f"skipped {len(errors)} row(s) that could not be scored:", file=sys.stderr)
    for e in errors[:limit]:
        print(f"  {e}", file=sys.stderr)
    if len(errors) > limit:
        print(f"  ... and {len(errors) - limit} more (all listed in the run's manifest.json)", file=sys.stderr)


def summary(table, manifest: dict, read_texts, run_dir: Path, top: int, seconds: float) -> str:
    """The run in a few lines: counts, flags, time, quantiles of every metric, the top pairs by LN-CHES."""
    q = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    width = max(12, *(len(m) + 1 for m in METRICS))
    lines = [f"run {run_dir}", f"pairs scored: {len(table)}   rows skipped: {len(manifest['rows_skipped'])}"
             + (f" (rows {', '.join(str(e['row']) for e in manifest['rows_skipped'][:20])})"
                if manifest["rows_skipped"] else ""),
             f"flags: {manifest['flag_counts'] or 'none'}   time: {seconds:.1f} s",
             f"{'quantiles':<{width}}" + " ".join(f"{f'q{int(x * 100)}':>11}" for x in q)]
    for metric in METRICS:
        lines.append(f"{metric:<{width}}" + " ".join(f"{v:>11.4g}" for v in np.quantile(table[metric], q)))
    best = table.nlargest(top, "ln_ches")
    texts = read_texts(run_dir, best["row"].tolist()).set_index("row")
    lines.append(f"\ntop {len(best)} by {METRICS['ln_ches'].label} (most likely to cause likelihood displacement):")
    for r in best.itertuples():
        chosen, rejected = (_short(texts.loc[r.row, k]) for k in ("chosen", "rejected"))
        lines.append(f"  row {r.row:>6}  ln_ches {r.ln_ches:>10.4g}  + {chosen}\n{'':>37}- {rejected}")
    return "\n".join(lines)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class ProgressBar:
    """tqdm over pairs, fed with (responses done, responses total) from the engine; also the job's
    "progress" events, at most one per `every_s` seconds (and the last one). rate = pairs scored by this
    process / seconds since its first update; seconds_left = pairs left / rate."""

    def __init__(self, total_pairs: int, initial: int = 0, disable: bool = False,
                 events: jobs.Events | None = None, every_s: float = 1.0):
        from tqdm import tqdm
        self.bar = tqdm(total=total_pairs, initial=initial, unit="pair", desc="scoring", file=sys.stderr,
                        dynamic_ncols=True, disable=disable)
        self.events, self.every_s = events, every_s
        self.first: tuple[float, int] | None = None     # (time, pairs) at the first update
        self.sent = float("-inf")

    def update(self, done: int, total: int) -> None:
        pairs, total_pairs = done // 2, total // 2
        self.bar.n = pairs
        self.bar.refresh()
        if self.events is None:
            return
        now = time.monotonic()
        self.first = self.first or (now, pairs)
        if now - self.sent < self.every_s and pairs < total_pairs:
            return
        self.sent = now
        t0, p0 = self.first
        rate = (pairs - p0) / (now - t0) if pairs > p0 else None
        self.events("progress", done=pairs, total=total_pairs, rate=rate,
                    seconds_left=(total_pairs - pairs) / rate if rate else None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def cmd_runs(args: argparse.Namespace) -> int:
    """`ches runs`: every run, one line each (a damaged one with the command that mends it); with --repair
    RUN, what ches.engine.repair.repair did to that run, one line per file."""
    from ches.engine.repair import repair
    from ches.engine.runs import list_runs, list_unfinished
    from ches.engine.store import run_size

    root = runs_folder(args.out)
    if args.repair:
        folder = Path(args.repair) if Path(args.repair).is_dir() else root / args.repair
        said = repair(folder)
        print(f"{folder}:\n" + "\n".join(f"  {line}" for line in said))
        return 0
    runs, unfinished = list_runs(root), list_unfinished(root)
    if not runs and not unfinished:
        print("no runs yet: ches score DATA")
    for path, m in runs:
        if damage := _damage(path):
            print(damage)
            continue
        print(f"{path.name}  {m['created_at'][:19]}  {m['pairs']:>7} pairs  {megabytes(run_size(path)):>8.1f} MB  "
              f"{m['key']['model_id']}  max_length {m['key']['max_length']}  {m['source']}")
    for path, plan, p in unfinished:
        if p is None:
            print(_damage(path) or f"{path.name}  broken: it cannot be read (delete the folder)")
            continue
        print(f"{path.name}  {plan['created_at'][:19]}  unfinished: {p.done} of {p.total} pairs  "
              f"{plan['key']['model_id']}  {plan['source']}" + (f"\n    resume: {plan['command']}" if plan.get("command") else ""))
    return 0


def _damage(run_dir: Path) -> str | None:
    """`ches runs`' line for a damaged run (the file, why, the command that mends it), or None."""
    from ches.engine.repair import check_run
    from ches.engine.store import DamagedRun

    try:
        check_run(run_dir)
    except DamagedRun as e:
        return f"{run_dir.name}  broken: its {e.path.name} cannot be read: {e.why}; mend it with: {e.command}"
    return None
