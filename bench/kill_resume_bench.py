"""How much of a run a SIGKILL at half costs, with default settings (chunks sized by timing.chunk_size_for).

    python bench/kill_resume_bench.py [--pairs 1000] [--hidden 256] [--layers 4] [--chunk-size N]

`ches score` (a subprocess, no --chunk-size unless given) scores a synthetic dataset with a random Llama
of the given size; it is SIGKILLed (no clean-up) once its progress events report half of the pairs
done. The run is then resumed in this process, counting the pairs the resume embeds. Printed: the
plan's chunk size, the pairs kept, and the resumed share of the work (the goal: under 0.7).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_bench import synthetic_rows  # noqa: E402


def model(folder: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ches.engine.models import default_model_dir

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def kill_at_half(argv: list[str], status: Path, total: int) -> tuple[float, int]:
    """(seconds, pairs done by the last progress event) of `python -m ches score ...`, SIGKILLed at total / 2."""
    from ches.engine.jobs import read_events

    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ches", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "CHES_JOB_STATUS": str(status)})
    done = 0
    while proc.poll() is None:
        done = max([e.get("done", 0) for e in read_events(status) if e.get("event") == "progress"] or [0])
        if done >= total / 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit(f"the first run ended before half (exit {proc.returncode}): use a slower model (--hidden)")
    return time.perf_counter() - started, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, help="passed to the first run (default: none, the time rule)")
    args = ap.parse_args()

    from ches.engine import chunks, pipeline, store
    from ches.engine.runs import run_progress
    from ches.engine.files import load_dataset
    from ches.engine.models import load_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = model(work / "model", args.hidden, args.layers)
        data, runs = work / "data.jsonl", work / "runs"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(args.pairs)))
        argv = ["score", str(data), "--model", str(tiny), "--max-length", "256", "--out", str(runs), "--top", "1",
                *(["--chunk-size", str(args.chunk_size)] if args.chunk_size else [])]
        seconds, at = kill_at_half(argv, work / "status.jsonl", args.pairs)
        (run,) = runs.iterdir()
        plan, kept = chunks.read_plan(run), run_progress(run)

        lm, ds = load_model(str(tiny)), load_dataset(data)
        embedded, embed = [], pipeline.embed_pairs

        def counting(lm_, encoded, **kwargs):
            embedded.append(len(encoded))
            return embed(lm_, encoded, **kwargs)

        pipeline.embed_pairs = counting
        started = time.perf_counter()
        assert pipeline.score_dataset(ds, lm, runs_root=runs, max_length=256) == run and store.is_complete(run)
        resume_s = time.perf_counter() - started
        share = sum(embedded) / args.pairs
        print(f"{args.pairs:,} pairs, random Llama d = {args.hidden}, {args.layers} layers, max length 256; "
              f"chunks of {plan['chunk_size']} pairs ({chunks.chunk_count(plan)} chunks)")
        print(f"first run   SIGKILL at {at:,} of {args.pairs:,} pairs reported done, after {seconds:.1f} s "
              f"(start-up and estimate included); {kept.done:,} pairs kept on disk")
        print(f"resume      embedded {sum(embedded):,} of {args.pairs:,} pairs = {share:.2f} of the work "
              f"in {resume_s:.1f} s (goal: under 0.70) -> {'OK' if share < 0.7 else 'FAIL'}")
        print(f"run         complete: {store.read_manifest(run)['pairs']:,} pairs; left in the folder: "
              f"{sorted(p.name for p in run.iterdir())}")


if __name__ == "__main__":
    main()
