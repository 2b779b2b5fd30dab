"""`python -m ches` / `ches`: everything the app does, from a terminal.

    ches score DATA [--split S] [--column OURS=THEIRS ...] [--limit N] [--model M] [--format F] [--max-length N] [--dtype D]
               [--batch-tokens N] [--chunk-size N] [--out DIR]
    ches runs [--out DIR]
    ches export RUN --out FILE [--keep-lowest-percent X | --threshold T] [--format input|trl]
    ches decisions export|import FILE
    ches probe RUN --subset top|bottom|band LO HI|ids FILE [--n N] [--steps K] [--lr LR] [--beta B] [--seed S]
    ches app [streamlit args]

User errors print one line on stderr and exit 2; they never show a traceback.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ches import __version__
from ches.engine.data import FORMATS, DataError, load_dataset
from ches.engine.models import DEFAULT_MODEL, ModelError
from ches.engine.store import DEFAULT_CHUNK_PAIRS
from ches.workspace import workspace


class UserError(Exception):
    """Printed as `ches: error: ...` without a traceback."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "ches " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args) or 0
    except (UserError, DataError, ModelError, OSError, ValueError) as e:
        print(f"ches: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ches: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ches", description="CHES Studio: find preference pairs that cause "
                                "likelihood displacement in DPO (Razin et al., ICLR 2025).")
    p.add_argument("--version", action="version", version=f"ches {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="embed a dataset with a causal LM and score every pair",
                       description="Score every pair of DATA with CHES, LN-CHES and the paper's baselines. "
                       "The run is written under --out in chunks as it goes, keyed by the dataset's records, "
                       "model, template, max length and dtype: scoring the same thing again reuses it, and "
                       "after Ctrl-C, SIGTERM or a crash the same command resumes where it stopped. "
                       "Under torchrun every rank scores its own chunks (see README: Several GPUs).")
    s.add_argument("data", help="dataset: a .jsonl, .jsonl.gz, .json, .parquet or .csv file, a folder laid out "
                   "as a Hugging Face dataset (data/<split>-00000-of-00002.parquet, README with configs), or a "
                   "Hugging Face dataset name (owner/name)")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"'{DEFAULT_MODEL}' (SmolLM2-135M-Instruct, "
                   "offline, the default), a Hugging Face model id, or a local model folder")
    s.add_argument("--format", choices=sorted(FORMATS), help="dataset format (default: auto-detected)")
    s.add_argument("--split", help="split of a dataset folder or Hugging Face dataset (default: train, or the "
                   "only split); an error with a single file")
    s.add_argument("--config", help="config of a dataset folder (README configs) or Hugging Face dataset")
    s.add_argument("--column", action="append", metavar="OURS=THEIRS", help="for rows in no known format: "
                   "which column holds the prompt, the chosen and the rejected response, given three times, e.g. "
                   "--column prompt=question --column chosen=better --column rejected=worse")
    s.add_argument("--limit", type=int, metavar="N", help="score only the first N usable pairs (reading stops there)")
    s.add_argument("--max-length", type=int, default=2048, metavar="N",
                   help="max tokens per prompt+response sequence; longer pairs are cut and flagged "
                   "'truncated' (default: 2048)")
    s.add_argument("--dtype", default="auto", help="model dtype: auto (bf16 on GPU, fp32 on CPU), "
                   "float32, bfloat16, float16")
    s.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    s.add_argument("--batch-tokens", type=int, metavar="N", help="token budget per forward batch, "
                   "padding included (default: 1024 on CPU, 32768 on GPU)")
    s.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_PAIRS, metavar="N",
                   help="pairs per chunk, the unit that is committed to disk and resumed (default: "
                   f"{DEFAULT_CHUNK_PAIRS}); a resumed run keeps the size it started with")
    s.add_argument("--out", help="runs folder (default: $CHES_WORKSPACE/runs, i.e. ./workspace/runs)")
    s.add_argument("--top", type=int, default=10, metavar="K", help="pairs listed in the summary (default: 10)")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model's own Python code to run (off by default: only for models you trust)")
    s.set_defaults(func=cmd_score)

    from ches.cli.export import add_decisions_parser, add_export_parser
    add_export_parser(sub)
    add_decisions_parser(sub)

    add_probe_parser(sub)

    r = sub.add_parser("runs", help="list stored runs")
    r.add_argument("--out", help="runs folder (default: $CHES_WORKSPACE/runs)")
    r.set_defaults(func=cmd_runs)

    a = sub.add_parser("app", help="start the Streamlit app (extra arguments go to streamlit run)")
    a.add_argument("streamlit_args", nargs=argparse.REMAINDER)
    a.set_defaults(func=cmd_app)
    return p


def cmd_score(args) -> int:
    from ches.engine.models import load_model
    from ches.engine.pipeline import Interrupted, estimate, pending_pairs, run_key, score_dataset
    from ches.engine.store import is_complete, read_manifest, read_scores, read_texts, run_path, run_progress

    if args.max_length < 2:
        raise UserError("--max-length must be at least 2")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    say = (lambda text: print(text, file=sys.stderr)) if rank == 0 else (lambda text: None)  # noqa: E731
    runs_root = Path(args.out) if args.out else workspace().runs
    ds = load_dataset(args.data, format=args.format, split=args.split, config=args.config, limit=args.limit,
                      columns=column_mapping(args.column))
    say(f"loaded {len(ds.pairs)} pairs from {ds.source}" + (f" (split {ds.split})" if ds.split else "")
        + f" (format: {ds.format})" + (f", the first {args.limit} asked for" if args.limit else ""))
    for note in ds.notes:
        say(f"  note: {note}")
    if rank == 0:
        report_errors(ds.errors)
    lm = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    say(f"model {args.model} on {lm.device} ({str(lm.dtype).removeprefix('torch.')})")
    run_dir = run_path(runs_root, run_key(ds, lm, args.max_length))
    state = run_progress(run_dir)
    if not is_complete(run_dir) and rank == 0:
        say(f"resuming {run_dir}: {state.done} of {state.total} pairs already scored" if state and state.done
            else f"scoring into {run_dir}")
        est = estimate(pending_pairs(ds, run_dir), lm, max_length=args.max_length, batch_tokens=args.batch_tokens,
                       ranks=world)
        say(f"{est} (measured in a warm-up" + (f", x {world} ranks)" if world > 1 else ")"))
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ProgressBar(len(ds.pairs), initial=state.done if state else 0, disable=rank != 0) as bar:
            run_dir = score_dataset(ds, lm, runs_root=runs_root, max_length=args.max_length,
                                    batch_tokens=args.batch_tokens, chunk_size=args.chunk_size,
                                    progress=bar.update, command=args.command_line)
    except Interrupted as e:
        say(f"ches: {e}")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if rank != 0:                                      # torchrun: rank 0 finalises and reports
        return 0
    manifest, table = read_manifest(run_dir), read_scores(run_dir)
    known = {e.row for e in ds.errors}
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


def report_errors(errors, limit: int = 20) -> None:
    if not errors:
        return
    print(f"skipped {len(errors)} row(s) that could not be scored:", file=sys.stderr)
    for e in errors[:limit]:
        print(f"  {e}", file=sys.stderr)
    if len(errors) > limit:
        print(f"  ... and {len(errors) - limit} more (all listed in the run's manifest.json)", file=sys.stderr)


def summary(table, manifest: dict, read_texts, run_dir: Path, top: int, seconds: float) -> str:
    q = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    lines = [f"run {run_dir}", f"pairs scored: {len(table)}   rows skipped: {len(manifest['rows_skipped'])}"
             + (f" (rows {', '.join(str(e['row']) for e in manifest['rows_skipped'][:20])})"
                if manifest["rows_skipped"] else ""),
             f"flags: {manifest['flag_counts'] or 'none'}   time: {seconds:.1f} s",
             "quantiles   " + " ".join(f"{f'q{int(x * 100)}':>11}" for x in q)]
    for metric in ("ln_ches", "ches", "edit_sim", "last_hidden_ip"):
        lines.append(f"{metric:<12}" + " ".join(f"{v:>11.4g}" for v in np.quantile(table[metric], q)))
    best = table.nlargest(top, "ln_ches")
    texts = read_texts(run_dir, best["row"].tolist()).set_index("row")
    lines.append(f"\ntop {len(best)} by LN-CHES (most likely to cause likelihood displacement):")
    for r in best.itertuples():
        chosen, rejected = (_short(texts.loc[r.row, k]) for k in ("chosen", "rejected"))
        lines.append(f"  row {r.row:>6}  ln_ches {r.ln_ches:>10.4g}  + {chosen}\n{'':>37}- {rejected}")
    return "\n".join(lines)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class ProgressBar:
    """tqdm over pairs, fed with (responses done, responses total) from the engine."""

    def __init__(self, total_pairs: int, initial: int = 0, disable: bool = False):
        from tqdm import tqdm
        self.bar = tqdm(total=total_pairs, initial=initial, unit="pair", desc="scoring", file=sys.stderr,
                        dynamic_ncols=True, disable=disable)

    def update(self, done: int, total: int) -> None:
        self.bar.n = done // 2
        self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def cmd_runs(args) -> int:
    from ches.engine.store import list_runs, list_unfinished, run_size

    root = Path(args.out) if args.out else workspace().runs
    runs, unfinished = list_runs(root), list_unfinished(root)
    if not runs and not unfinished:
        print("no runs yet: ches score DATA")
    for path, m in runs:
        print(f"{path.name}  {m['created_at'][:19]}  {m['pairs']:>7} pairs  {run_size(path) / 2**20:>8.1f} MB  "
              f"{m['key']['model_id']}  max_length {m['key']['max_length']}  {m['source']}")
    for path, plan, p in unfinished:
        print(f"{path.name}  {plan['created_at'][:19]}  unfinished: {p.done} of {p.total} pairs  "
              f"{plan['key']['model_id']}  {plan['source']}" + (f"\n    resume: {plan['command']}" if plan.get("command") else ""))
    return 0


def cmd_app(args) -> int:
    import subprocess

    app = Path(__file__).resolve().parent.parent / "app.py"
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(app), *args.streamlit_args])


def add_probe_parser(sub) -> None:
    from ches.review.probe import BUNDLED, OPTIMIZERS, PAPER

    p = sub.add_parser("probe", help="check CHES's prediction: a few DPO steps on a subset, log-probs before/after",
                       description="Train a fresh copy of RUN's model (same weights, template and dtype) with DPO "
                       "(TRL's sigmoid loss) on a subset of RUN's pairs, and report per pair log pi(y+|x) and "
                       "log pi(y-|x) before and after (summed over the response tokens and EOS: the positions CHES "
                       "uses), their mean changes and how many pairs lost chosen likelihood. The probe is stored "
                       "in RUN/probes/<key>/; the same settings again reuse it. Defaults: the paper's (Sec. 5: "
                       f"n {PAPER['n']}, batch {PAPER['batch_size']}, RMSprop, lr {PAPER['lr']:g}, beta "
                       f"{PAPER['beta']:g}, one epoch); for the bundled model n {BUNDLED['n']}, batch "
                       f"{BUNDLED['batch_size']}, lr {BUNDLED['lr']:g} (what shows the effect on it, see "
                       "bench/displacement_bench.py).")
    p.add_argument("run", metavar="RUN", help="run folder, or run id (or unique prefix) under --runs")
    p.add_argument("--subset", nargs="+", required=True, metavar="KIND",
                   help="top (the n highest --metric), bottom (the n lowest), band LO HI (n pairs centred in "
                   "that percentile band of --metric), or ids FILE (the source rows listed in FILE)")
    p.add_argument("--metric", default="ches", choices=["ches", "ln_ches", "edit_sim", "last_hidden_ip"],
                   help="ranks top / bottom / band (default: ches, as in the paper's Sec. 5)")
    p.add_argument("--n", type=int, metavar="N", help="pairs in the subset (default: see above)")
    p.add_argument("--steps", type=int, metavar="K", help="optimizer steps (default: one epoch over the subset)")
    p.add_argument("--batch-size", type=int, metavar="B", help="pairs per step (default: see above)")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: see above)")
    p.add_argument("--beta", type=float, metavar="B", help="DPO's beta (default: 0.1)")
    p.add_argument("--optimizer", default="rmsprop", choices=list(OPTIMIZERS), help="(default: rmsprop)")
    p.add_argument("--seed", type=int, default=0, help="order of the pairs across steps (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--top", type=int, default=10, metavar="K", help="pairs listed that lost the most (default: 10)")
    p.add_argument("--runs", metavar="DIR", help="runs folder for a run id (default: $CHES_WORKSPACE/runs)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own Python code to run (only for models you trust)")
    p.set_defaults(func=cmd_probe)


def probe_settings(args, model_id: str):
    """ProbeSettings from `ches probe` arguments (model-dependent defaults filled in)."""
    from ches.review.probe import ProbeError, ProbeSettings, defaults, read_ids

    kind, extra = args.subset[0], args.subset[1:]
    wants = {"top": 0, "bottom": 0, "band": 2, "ids": 1}
    if kind not in wants:
        raise ProbeError(f"unknown subset {kind!r}; choose top, bottom, band LO HI or ids FILE")
    if len(extra) != wants[kind]:
        raise ProbeError({0: f"--subset {kind} takes no values", 1: "--subset ids needs one FILE",
                          2: "--subset band needs LO HI (percentiles, 0-100)"}[wants[kind]])
    band = ids = None
    if kind == "band":
        try:
            band = (float(extra[0]), float(extra[1]))
        except ValueError:
            raise ProbeError(f"--subset band needs two numbers, got {' '.join(extra)}") from None
    if kind == "ids":
        ids = read_ids(extra[0])
    d = defaults(model_id)
    pick = lambda value, name: d[name] if value is None else value  # noqa: E731
    return ProbeSettings(subset=kind, n=pick(args.n, "n"), metric=args.metric, band=band, ids=ids or (),
                         steps=args.steps, batch_size=pick(args.batch_size, "batch_size"), lr=pick(args.lr, "lr"),
                         beta=pick(args.beta, "beta"), optimizer=args.optimizer, seed=args.seed)


def cmd_probe(args) -> int:
    from tqdm import tqdm

    from ches.review import probe
    from ches.cli.export import resolve_run
    from ches.engine.store import read_manifest

    run_dir = resolve_run(args.run, Path(args.runs) if args.runs else workspace().runs)
    s = probe_settings(args, read_manifest(run_dir)["key"]["model_id"])
    found = probe.find_probe(run_dir, s)
    if found is None:
        lm = probe.load_policy(run_dir, device=args.device, trust_remote_code=args.trust_remote_code)
        print(f"probe: {s.describe()}; model {lm.model_id} on {lm.device}", file=sys.stderr)
        with tqdm(desc="probe", unit="pass", file=sys.stderr, dynamic_ncols=True) as bar:
            def tick(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            found = probe.run_probe(run_dir, s, lm, progress=tick)
    else:
        print("reusing the stored probe with these settings (nothing retrained)", file=sys.stderr)
    print(probe_summary(run_dir, found, s.metric, args.top))
    return 0


def probe_summary(run_dir: Path, probe_dir: Path, metric: str, top: int) -> str:
    from ches.review import probe

    m, results = probe.read_probe(probe_dir)
    t = probe.probe_table(run_dir, results)
    s = m["summary"]
    lines = [f"probe {probe_dir}", m["describe"],
             f"pairs: {s['pairs']}   steps: {m['steps']}   time: {m['seconds']:.1f} s   device: {m['device']}",
             f"mean change of log pi(y+|x): {s['mean_delta_chosen']:+.4f}   of log pi(y-|x): "
             f"{s['mean_delta_rejected']:+.4f}   of the margin: {s['mean_delta_margin']:+.4f}",
             f"pairs that lost chosen likelihood: {s['lost_chosen']} of {s['pairs']}",
             f"Spearman({metric}, change of log pi(y+|x)) over these pairs: "
             f"{probe.spearman(t[metric], t['delta_chosen']):.3f}",
             f"per-pair values: {probe_dir / 'results.parquet'}",
             f"\n{'row':>7} {metric:>12} {'pct':>6} {'logp(y+) before':>16} {'after':>10} {'change':>9} "
             f"{'logp(y-) change':>16}"]
    for r in t.nsmallest(top, "delta_chosen").itertuples():
        lines.append(f"{r.row:>7} {getattr(r, metric):>12.4g} {getattr(r, metric + '_pct'):>6.1f} "
                     f"{r.logp_chosen_before:>16.3f} {r.logp_chosen_after:>10.3f} {r.delta_chosen:>+9.3f} "
                     f"{r.delta_rejected:>+16.3f}")
    return "\n".join(lines)
