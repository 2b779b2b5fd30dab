"""`torchrun -m ches score` (gloo, CPU): ranks score their own chunks and give, bit for bit, the table one
process gives;
a run whose ranks died part-way resumes under another number of ranks.

Run as a script, this file is a torchrun worker that dies like a preempted node (no clean-up, no
message) right after committing its N-th chunk:  python tests/test_distributed.py N score DATA ...
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], script: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           *(script or ["-m", "ches"]), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def assert_same_table(mine, theirs):
    """The same bits: every score and every stored sum (a run key promises its numbers: pipeline, point 1)."""
    from ches.engine.store import read_arrays, read_scores

    pd.testing.assert_frame_equal(read_scores(mine), read_scores(theirs), check_exact=True)
    a, b = read_arrays(mine), read_arrays(theirs)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_ranks_equal_one_process_and_a_killed_run_resumes_on_one(tiny_model_dir, tmp_path):
    from ches.engine.files import load_dataset
    from ches.engine.models import load_model
    from ches.engine.pipeline import score_dataset
    from ches.engine.chunks import done_chunks
    from ches.engine.runs import run_progress
    from ches.engine.store import is_complete

    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"Question {i}: what is {i} + {i}?", "chosen": f"It is {2 * i}.",
                                          "rejected": f"{2 * i + 1}" * (i % 4)}) for i in range(40)))
    args = ["score", str(data), "--model", str(tiny_model_dir), "--max-length", "64", "--chunk-size", "8", "--top", "1"]
    lm = load_model(str(tiny_model_dir))
    one = score_dataset(load_dataset(data), lm, runs_root=tmp_path / "one", max_length=64, chunk_size=16)

    both = torchrun([*args, "--out", str(tmp_path / "two")])
    assert both.returncode == 0, both.stderr[-3000:]
    assert both.stdout.count("pairs scored: 40") == 1                # only rank 0 reports
    two = tmp_path / "two" / one.name                                 # the same key
    assert is_complete(two)
    assert_same_table(two, one)                                       # 2 ranks, chunks of 8 = 1 process, 16

    killed = torchrun([*args, "--out", str(tmp_path / "killed")], script=[__file__, "2"])
    assert killed.returncode != 0
    run = tmp_path / "killed" / one.name
    kept = run_progress(run)
    assert not kept.complete and 0 < kept.done < 40 and done_chunks(run)
    resumed = score_dataset(load_dataset(data), lm, runs_root=tmp_path / "killed", max_length=64, chunk_size=8)
    assert resumed == run and is_complete(run)
    assert_same_table(run, one)


if __name__ == "__main__":
    import ches.cli
    import ches.engine.chunks

    die_after, commit, committed = int(sys.argv[1]), ches.engine.chunks.commit_chunk, []

    def commit_then_die(*args, **kwargs):
        done = commit(*args, **kwargs)
        committed.append(done)
        if len(committed) >= die_after:
            os._exit(1)
        return done

    ches.engine.chunks.commit_chunk = commit_then_die
    sys.exit(ches.cli.main(sys.argv[2:]))
