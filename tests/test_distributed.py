"""`torchrun -m ches score` shards pairs across ranks and writes the same numbers as one process."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ches.store import read_arrays, read_scores

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.real_model
def test_torchrun_two_ranks_match_one_process(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": f"Question {i}: what is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": f"{2 * i + 1}"}
            for i in range(5)]
    data.write_text("\n".join(map(json.dumps, rows)))
    args = ["score", str(data), "--max-length", "64", "--top", "1"]
    env_cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
               "-m", "ches", *args, "--out", str(tmp_path / "multi")]
    done = subprocess.run(env_cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("pairs scored: 5") == 1            # only rank 0 reports
    single = subprocess.run([sys.executable, "-m", "ches", *args, "--out", str(tmp_path / "single")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    (multi,), (one,) = (list((tmp_path / d).iterdir()) for d in ("multi", "single"))
    assert multi.name == one.name                                # same key
    a, b = read_scores(multi), read_scores(one)
    assert a["pair_id"].tolist() == b["pair_id"].tolist()
    np.testing.assert_allclose(a["ln_ches"], b["ln_ches"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(read_arrays(multi)["S_plus"], read_arrays(one)["S_plus"], rtol=1e-5, atol=1e-4)
