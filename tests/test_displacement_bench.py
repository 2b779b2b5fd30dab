"""bench/displacement_bench.py's Section 5 slices leave out the pairs the curation check leaves out (issue 25)."""
from __future__ import annotations

import pandas as pd

from conftest import load_bench


def test_section5_leaves_out_flagged_pairs_as_the_check_does():
    bench = load_bench("displacement_bench")
    table = pd.DataFrame({"row": [0, 1, 2, 3, 4], "pair_id": list("abcde"), "ln_ches": [1.0, -5, 2, -9, 0],
                          "flags": ["", "empty_chosen", "truncated", "identical,truncated", "empty_rejected"]})
    assert bench.unflagged(table)["row"].tolist() == [0, 2]      # truncated alone is not a drop flag
