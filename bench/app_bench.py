"""Render time of every page on a large run, measured with Streamlit's AppTest (the page scripts run
in-process, as on the server, without the browser's drawing time).

    python bench/app_bench.py [--pairs 10000]

The run is synthetic in its numbers (random sums, d = 576) but its texts are real HH-RLHF dialogues
from ../shared/data, repeated with a row suffix to reach --pairs. Each page is rendered twice: cold
(first visit in a fresh session: caches empty, UMAP computed) and warm (the next rerun).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ches import __version__  # noqa: E402
from ches.data import load_dataset, load_records  # noqa: E402
from ches.store import write_run  # noqa: E402

HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PAGES = ["score", "browse", "map", "pair", "export"]


def synthetic_run(runs: Path, n: int, d: int = 576) -> Path:
    base = load_dataset(HH).pairs
    records = [{"prompt": list(p.prompt), "chosen": p.chosen + f" [{i}]", "rejected": p.rejected}
               for i, p in ((i, base[i % len(base)]) for i in range(n))]
    ds = load_records([{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in records])
    rng = np.random.default_rng(0)
    S_plus = rng.normal(size=(n, d)) * 30
    S_minus = S_plus + rng.normal(size=(n, d)) * 10
    lp, lm = rng.integers(2, 300, n), rng.integers(2, 300, n)
    m_p, m_m = S_plus / lp[:, None], S_minus / lm[:, None]
    table = pd.DataFrame({
        "row": [p.row for p in ds.pairs], "pair_id": [p.pair_id for p in ds.pairs],
        "ln_ches": np.einsum("nd,nd->n", m_p, m_m - m_p), "ches": np.einsum("nd,nd->n", S_plus, S_minus - S_plus),
        "edit_sim": -rng.random(n), "last_hidden_ip": rng.normal(size=n), "len_chosen": lp, "len_rejected": lm,
        "truncated": np.zeros(n, bool), "flags": [",".join(p.flags) for p in ds.pairs]})
    manifest = {"key": {"dataset_hash": ds.content_hash, "model_id": "smollm2", "fingerprint": "synthetic",
                        "template": "t", "max_length": 2048, "dtype": "float32", "engine_version": 1},
                "run": "bench", "created_at": "2026-01-01T00:00:00+00:00", "app_version": __version__,
                "source": "synthetic", "format": ds.format, "pairs": n, "rows_skipped": [], "flag_counts": {}}
    arrays = {"S_plus": S_plus, "S_minus": S_minus}
    return write_run(runs / "bench", manifest=manifest, scores=table, pairs=ds.pairs, arrays=arrays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10_000)
    args = ap.parse_args()
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHES_WORKSPACE"] = tmp
        os.chdir(ROOT)
        t = time.perf_counter()
        run = synthetic_run(Path(tmp) / "runs", args.pairs)
        print(f"{args.pairs} pairs: run written in {time.perf_counter() - t:.1f} s")
        for page in PAGES:
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
            at.session_state["run_dir"] = str(run)
            at.session_state["annotator"] = "bench"
            at.session_state["pair_row"] = 1
            at.switch_page(f"pages/{page}.py")
            times = []
            for _ in range(2):
                t = time.perf_counter()
                at.run()
                times.append(time.perf_counter() - t)
            errors = [e.value for e in at.exception] + [e.value for e in at.error]
            print(f"{page:<8} cold {times[0]:6.2f} s   warm {times[1]:6.2f} s" + (f"   errors: {errors}" if errors else ""))


if __name__ == "__main__":
    main()
