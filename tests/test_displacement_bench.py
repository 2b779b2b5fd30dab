"""bench/displacement_bench.py's Section 5 slices leave out the pairs the curation check leaves out (issue 25)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def test_section5_leaves_out_flagged_pairs_as_the_check_does():
    path = Path(__file__).resolve().parents[1] / "bench" / "displacement_bench.py"
    spec = importlib.util.spec_from_file_location("displacement_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = pd.DataFrame({"row": [0, 1, 2, 3, 4], "pair_id": list("abcde"), "ln_ches": [1.0, -5, 2, -9, 0],
                          "flags": ["", "empty_chosen", "truncated", "identical,truncated", "empty_rejected"]})
    assert bench.unflagged(table)["row"].tolist() == [0, 2]      # truncated alone is not a drop flag
