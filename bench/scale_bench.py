"""Scoring at scale on the CPU with a tiny random model (so the engine's speed is not what is measured).

    python bench/scale_bench.py [--pairs 100000] [--chunk-size 1024] [--hidden 64] [--overlap-pairs 4000]

1. Kill and resume: `ches score` (a subprocess) on a synthetic dataset is killed with SIGKILL (no
   clean-up: a preempted node, an out-of-memory kill) once about half of the chunks are on disk, then the
   same command resumes it. Printed: the peak RSS of each process, the resumed share of the work, the
   time to finalise (stream the chunks into the run's files) and the run folder's size against the
   goal of n x d x 8 bytes plus texts.
2. Overlap, in this process on the same pairs: the engine alone (embed_pairs on pre-tokenised chunks)
   against score_dataset end to end (tokenising, edit distance and writing on threads beside the
   embedding), and against the same steps run one after another; and the host-side steps' own
   throughput, which bounds how fast an accelerator can go before it waits on the CPU. Torch uses one
   thread and a wider model here (d = 256), so that the other core plays the host CPU beside a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the a model answer question data pair token likely because which would should safe harmful "
         "explain step first second then result value number large small people time example reason "
         "help please sure cannot provide information about this that with from into over under more "
         "less good bad better worse right wrong true false code python function list string error").split()


def synthetic_rows(n: int, seed: int = 0):
    rng = random.Random(seed)
    say = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    for i in range(n):
        chosen = say(rng.randint(5, 60))
        rejected = chosen if rng.random() < 0.01 else say(rng.randint(3, 60))
        yield {"prompt": f"Question {i}: {say(rng.randint(8, 40))}?", "chosen": chosen, "rejected": rejected,
               "id": f"syn-{i}", "score": rng.random()}


def tiny_model(folder: Path, hidden: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ches.engine.models import default_model_dir

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_cli(argv: list[str], kill_at_chunks: int | None = None, runs: Path | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS bytes, stderr) of `python -m ches ...`, SIGKILLed once `kill_at_chunks` are on disk."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ches", *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        while kill_at_chunks is not None:
            done = sum(1 for c in runs.glob("*/chunks/*") if c.name.isdigit())
            if done >= kill_at_chunks:
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        return seconds, usage.ru_maxrss * 1024, err.read()


def kill_and_resume(args, tiny: Path, work: Path) -> None:
    from ches.engine.files import load_dataset
    from ches.engine.store import read_manifest

    data, runs = work / "synthetic.jsonl", work / "runs"
    with open(data, "w") as f:
        for row in synthetic_rows(args.pairs):
            f.write(json.dumps(row) + "\n")
    argv = ["score", str(data), "--model", str(tiny), "--max-length", "256", "--chunk-size", str(args.chunk_size),
            "--out", str(runs), "--top", "3"]
    chunks = -(-args.pairs // args.chunk_size)
    first_s, first_rss, _ = run_cli(argv, kill_at_chunks=chunks // 2, runs=runs)
    (run,) = list(runs.iterdir())
    kept = sum(1 for c in (run / "chunks").iterdir() if c.name.isdigit())
    second_s, second_rss, err = run_cli(argv)
    resumed_from = int(re.search(r"resuming .*: (\d+) of \d+ pairs already scored", err).group(1))
    m = read_manifest(run)
    d = m["hidden_size"]
    size = {p.name: p.stat().st_size for p in run.iterdir()}
    arrays = size["S_plus.npy"] + size["S_minus.npy"]
    MB = 1e6
    print(f"{args.pairs:,} synthetic pairs ({m['tokens']:,} tokens), tiny random Llama (d = {d}, 2 layers), "
          f"chunks of {args.chunk_size}")
    print(f"first run   SIGKILL with {kept} of {chunks} chunks on disk after {first_s:.1f} s; peak RSS {first_rss / MB:.0f} MB")
    print(f"resumed     {args.pairs - resumed_from:,} pairs = {(args.pairs - resumed_from) / args.pairs:.1%} of the work "
          f"(started at {resumed_from:,}) in {second_s:.1f} s; peak RSS {second_rss / MB:.0f} MB")
    print(f"finalise    {m['finalise_seconds']:.2f} s to stream {chunks} chunks into the run's files")
    print(f"run folder  {sum(size.values()) / MB:.1f} MB: S_plus + S_minus {arrays / MB:.1f} MB "
          f"(n x d x 8 = {args.pairs * d * 8 / MB:.1f} MB), texts {size['texts.parquet'] / MB:.1f} MB, "
          f"scores {size['scores.parquet'] / MB:.1f} MB")
    t = time.perf_counter()
    ds = load_dataset(data)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    ds.source_hash
    print(f"start-up    {load_s:.1f} s to load the {len(ds.pairs):,} pairs, {time.perf_counter() - t:.1f} s to hash "
          "their records for the run key (each process does both)")
    print(f"bound       working set <= 104 x chunk x d bytes = {104 * args.chunk_size * d / MB:.1f} MB here, "
          f"{104 * args.chunk_size * 4096 / MB:.0f} MB at d = 4096 (beyond the model and the dataset's texts)")


def overlap(args, tiny: Path, work: Path) -> None:
    import torch

    from ches.engine import pipeline
    from ches.engine.chunks import finalise, start_run
    from ches.engine.records import load_records
    from ches.engine.forward import embed_pairs
    from ches.engine.models import load_model

    torch.set_num_threads(1)
    lm = load_model(str(tiny))
    ds = load_records(list(synthetic_rows(args.overlap_pairs, seed=1)))
    chunks = [range(i, min(i + args.chunk_size, len(ds.pairs))) for i in range(0, len(ds.pairs), args.chunk_size)]
    t = time.perf_counter()
    tokenised = [pipeline._tokenise(lm, ds.pairs, rows, i, 256) for i, rows in enumerate(chunks)]
    tokenise_s = time.perf_counter() - t
    tokens = sum(len(e.prompt_plus) + len(e.chosen) + len(e.prompt_minus) + len(e.rejected)
                 for c in tokenised for e in c.encoded)
    embed_pairs(lm, tokenised[0].encoded[:8])                          # warm-up
    t = time.perf_counter()
    embedded = [embed_pairs(lm, c.encoded) for c in tokenised]
    engine_s = time.perf_counter() - t
    run = work / "sequential"
    start_run(run, {"chunk_size": args.chunk_size}, ds.pairs)
    t = time.perf_counter()
    for c, emb in zip(tokenised, embedded):
        pipeline._commit(run, c, emb, lm.model.config.hidden_size, lm)
    finalise(run)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.score_dataset(ds, lm, runs_root=work / "overlapped", max_length=256, chunk_size=args.chunk_size)
    end_to_end_s = time.perf_counter() - t
    sequential_s = tokenise_s + engine_s + write_s
    print(f"\noverlap     {len(ds.pairs):,} pairs, {tokens:,} tokens, random Llama d = {lm.model.config.hidden_size}, "
          "torch threads 1, same process")
    print(f"  engine alone        {tokens / engine_s:>9,.0f} tokens/s  ({engine_s:.1f} s)")
    print(f"  end to end          {tokens / end_to_end_s:>9,.0f} tokens/s  ({end_to_end_s:.1f} s)   "
          f"ratio to the engine {engine_s / end_to_end_s:.2f}")
    print(f"  one after another   {tokens / sequential_s:>9,.0f} tokens/s  ({sequential_s:.1f} s = tokenise {tokenise_s:.1f} "
          f"+ engine {engine_s:.1f} + score and write {write_s:.1f})   ratio {engine_s / sequential_s:.2f}")
    print(f"  host side alone     tokenise {tokens / tokenise_s:,.0f} tokens/s, score and write {tokens / write_s:,.0f} "
          "tokens/s on one core: an engine up to that fast need not wait on the CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--overlap-pairs", type=int, default=4000)
    ap.add_argument("--overlap-hidden", type=int, default=256,
                    help="hidden size for part 2: wide enough that the model's matrix products (which run "
                    "without the GIL, as a GPU does) outweigh its Python overhead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = tiny_model(work / "tiny", args.hidden)
        kill_and_resume(args, tiny, work)
        overlap(args, tiny_model(work / "overlap-model", args.overlap_hidden), work)


if __name__ == "__main__":
    main()
