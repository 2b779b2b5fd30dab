"""Every page of the app on a large run: cold and rerun times, the Map figure's bytes, peak memory,
and bulk decisions. Measured with Streamlit's AppTest (the page scripts run in-process, as on the
server, without the browser's drawing time).

    python bench/app_bench.py [--pairs 100000] [--dim 4096] [--pages browse,map] [--keep DIR]

The run is synthetic in its numbers but its texts are real HH-RLHF dialogues from ../shared/data,
repeated with a row suffix to reach --pairs. S+ and S- (float32, as the run store is about to write
them) hold 24 clusters of pairs, so UMAP has structure to find; they are written in blocks, so the
bench itself never holds n x d in memory.

Each page runs in a fresh Python process (so "peak RSS" is that page's, imports included):
- cold: the first run in a fresh session (Streamlit caches empty; for Map: PCA + UMAP computed and
  cached in the run folder, numba compiled), with the CPU seconds it used (all threads): on a shared
  machine the wall time grows with the load, the CPU time much less;
- rerun: the next run of the same session (what every click costs);
- Map is then opened again in another fresh process: "cached" = a new server process whose run
  already has its map on disk.
Bulk: 2,000 pairs kept through the Map page (a lasso selection injected as the browser sends it), and
the same through decisions.record_many, against the reference of one record() call per pair.
Reads: every decision in force after one more decision (decisions.in_force, incremental) against the
whole log's query, on a log of 1.25 x --pairs decisions by two annotators.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ches import __version__  # noqa: E402
from ches.engine.files import load_dataset  # noqa: E402
from ches.engine.records import load_records  # noqa: E402
from ches.engine.chunks import write_run  # noqa: E402

HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PAGES = ["score", "browse", "map", "pair", "export"]
BULK = 2000
TARGETS = {"map rerun s": 1.0, "map figure MB": 3.0, "map peak RSS GiB": 4.0, "map cold s": 180.0,
           "bulk 2,000 s": 2.0}


def synthetic_run(runs: Path, n: int, d: int, clusters: int = 12, block: int = 8192) -> Path:
    """A complete run of n pairs with d-dimensional float32 sums, written block by block: a continuous
    6-dimensional structure, clusters of different spreads on top of it, and a large shared offset."""
    base = load_dataset(HH).pairs
    ds = load_records([{"prompt": list(p.prompt), "chosen": [{"role": "assistant", "content": p.chosen + f" [{i}]"}],
                        "rejected": [{"role": "assistant", "content": p.rejected}]}
                       for i, p in ((i, base[i % len(base)]) for i in range(n))])
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, d)) * 1.5                                 # (6, d) the continuous part
    centres = rng.normal(size=(clusters, d)) * 1.2                    # (C, d) where pairs gather
    spread = rng.uniform(0.3, 1.2, clusters)                          # some clusters tight, some loose
    offset = rng.normal(size=d) * 20                                  # the large shared part of LM states
    lp, lm = rng.integers(2, 300, n), rng.integers(2, 300, n)
    tmp = runs / "arrays"
    tmp.mkdir(parents=True)
    S_plus = np.lib.format.open_memmap(tmp / "S_plus.npy", "w+", np.float32, (n, d))
    S_minus = np.lib.format.open_memmap(tmp / "S_minus.npy", "w+", np.float32, (n, d))
    ln_ches, ches = np.empty(n), np.empty(n)
    for a in range(0, n, block):
        b = min(n, a + block)
        c = rng.integers(0, clusters, b - a)
        m_p = (offset + rng.normal(size=(b - a, 6)) @ W + centres[c]
               + rng.normal(size=(b - a, d)) * spread[c, None])                            # (b, d)
        m_m = m_p + 0.3 * centres[(c + 1) % clusters] + rng.normal(size=(b - a, d)) * 0.5
        S_plus[a:b] = m_p * lp[a:b, None]
        S_minus[a:b] = m_m * lm[a:b, None]
        ln_ches[a:b] = np.einsum("nd,nd->n", m_p, m_m - m_p)
        ches[a:b] = np.einsum("nd,nd->n", S_plus[a:b].astype(np.float64), (S_minus[a:b] - S_plus[a:b]).astype(np.float64))
    S_plus.flush(), S_minus.flush()
    table = pd.DataFrame({
        "row": [p.row for p in ds.pairs], "pair_id": [p.pair_id for p in ds.pairs], "ln_ches": ln_ches, "ches": ches,
        "edit_sim": -rng.random(n), "last_hidden_ip": rng.normal(size=n), "len_chosen": lp, "len_rejected": lm,
        "truncated": np.zeros(n, bool), "flags": [",".join(p.flags) for p in ds.pairs]})
    manifest = {"key": {"dataset_hash": ds.content_hash, "model_id": "smollm2", "fingerprint": "synthetic",
                        "template": "t", "max_length": 2048, "dtype": "float32", "engine_version": 1},
                "run": "bench", "created_at": "2026-01-01T00:00:00+00:00", "app_version": __version__,
                "source": "synthetic-hh.jsonl", "format": ds.format, "pairs": n, "rows_skipped": [], "flag_counts": {}}
    run = write_run(runs / "bench", manifest=manifest, scores=table, pairs=ds.pairs,
                    arrays={"S_plus": S_plus, "S_minus": S_minus})
    del S_plus, S_minus
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return run


# The child: one page, two runs, in a fresh process. Prints one JSON line.
CHILD = r"""
import json, sys, time
from pathlib import Path
from streamlit.testing.v1 import AppTest
root, run, page, bulk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
at = AppTest.from_file(root + "/app.py", default_timeout=3600)
at.session_state["run_dir"] = run
at.session_state["annotator"] = "bench"
at.session_state["pair_row"] = 1
at.run()
at.switch_page(f"pages/{page}.py")
times, cpu = [], time.process_time()
for _ in range(2):
    t = time.perf_counter(); at.run(); times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu if len(times) == 1 else cpu
out = {"page": page, "cold": times[0], "rerun": times[1], "cold_cpu": cpu,
       "errors": [str(e.value)[:300] for e in at.exception] + [str(e.value)[:300] for e in at.error]}
charts = at.get("plotly_chart")
if page == "map" and charts:
    out["figure_bytes"] = len(charts[0].proto.spec.encode())
if page == "map" and bulk:
    import pandas as pd
    from streamlit.proto.WidgetStates_pb2 import WidgetState
    rows = pd.read_parquet(Path(run) / "scores.parquet", columns=["row"])["row"].tolist()[:bulk]
    def with_selection():
        states = at._tree.get_widget_states()
        sel = {"selection": {"points": [{"curve_number": 0, "point_index": i, "customdata": r} for i, r in enumerate(rows)],
                             "point_indices": list(range(len(rows))), "box": [], "lasso": []}}
        states.widgets.append(WidgetState(id=charts[0].proto.id, string_value=json.dumps(sel)))
        return at._run(states)
    with_selection()
    t = time.perf_counter()
    at.button(key="map_keep").click()
    with_selection()
    out["bulk_click"] = time.perf_counter() - t
    out["bulk_message"] = [s.value for s in at.success][:1]
# VmHWM: this process's own peak (ru_maxrss would also count the parent's memory at fork time)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out["peak_rss_gib"] = int(hwm.split()[1]) / 2**20
print("RESULT " + json.dumps(out))
"""


def page_in_child(run: Path, page: str, env: dict, bulk: int = 0) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(run), page, str(bulk)], env=env,
                          cwd=ROOT, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{page}: the child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def bulk_api(db: Path, pair_ids: list[str]) -> tuple[float, float]:
    """Seconds per pair: record_many over all of them, and one record() per pair (the reference, on 200)."""
    from ches.review import decisions

    t = time.perf_counter()
    decisions.record_many(db, pair_ids, "drop", annotator="bench-bulk")
    many = (time.perf_counter() - t) / len(pair_ids)
    t = time.perf_counter()
    for pid in pair_ids[:200]:
        decisions.record(db, pid, "flag", annotator="bench-single")
    return many, (time.perf_counter() - t) / 200


def in_force_reads(db: Path, pair_ids: list[str]) -> tuple[float, float, int]:
    """Seconds to read every decision in force after one more decision, as each rerun of a page does:
    decisions.in_force (re-reads the keys touched since its last read) against the reference, the whole
    log's window query (what it did before); median of 5 each, and how many decisions are in force."""
    from ches.review import decisions
    from ches.review.decisions import inforce

    for old in db.parent.glob(db.name + "*"):                        # a kept workspace: start from an empty log
        old.unlink()
    half = len(pair_ids) // 2
    decisions.record_many(db, pair_ids[:half], "keep", annotator="bench-a")
    decisions.record_many(db, pair_ids[half // 2:], "drop", annotator="bench-b")
    decisions.in_force(db)
    fast, full = [], []
    for i in range(5):
        decisions.record(db, pair_ids[i], "flag", annotator="bench-a")
        t = time.perf_counter()
        got = decisions.in_force(db)
        fast.append(time.perf_counter() - t)
        t = time.perf_counter()
        want = inforce.read_all(db)
        full.append(time.perf_counter() - t)
        assert got == want, "in_force differs from the whole log's query"
    return sorted(fast)[2], sorted(full)[2], len(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=576, help="hidden size d (576 = SmolLM2-135M; 4096 = an 8B model)")
    ap.add_argument("--pages", default=",".join(PAGES), help=f"comma-separated subset of {', '.join(PAGES)}")
    ap.add_argument("--keep", metavar="DIR", help="build the run in DIR and keep it (reused when already there)")
    args = ap.parse_args()
    pages = [p for p in args.pages.split(",") if p]
    unknown = set(pages) - set(PAGES)
    if unknown:
        ap.error(f"unknown page(s) {sorted(unknown)}; choose from {PAGES}")

    with tempfile.TemporaryDirectory() as scratch:
        ws = Path(args.keep or scratch).resolve()
        env = {**os.environ, "CHES_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
        run = ws / "runs" / "bench"
        t = time.perf_counter()
        if not (run / "manifest.json").is_file():
            run = synthetic_run(ws / "runs", args.pairs, args.dim)
        print(f"{args.pairs:,} pairs x d = {args.dim}: run ready in {time.perf_counter() - t:.1f} s ({run})")
        for old in ws.glob("*decisions.sqlite*"):                 # a kept workspace: the bulk starts undecided
            old.unlink()
        results = []
        for page in pages:
            results.append(page_in_child(run, page, env))
            if page == "map":                                      # its map is on disk now: a new server process
                results.append({**page_in_child(run, "map", env, bulk=BULK), "page": "map (cached)"})
        print(f"{'page':<14}{'cold s':>9}{'(CPU s)':>9}{'rerun s':>9}{'peak RSS GiB':>14}  notes")
        for r in results:
            notes = []
            if "figure_bytes" in r:
                notes.append(f"figure {r['figure_bytes'] / 1e6:.2f} MB")
            if "bulk_click" in r:
                notes.append(f"'Keep all' on {BULK:,} selected: {r['bulk_click']:.2f} s {r['bulk_message']}")
            if r["errors"]:
                notes.append(f"ERRORS {r['errors']}")
            print(f"{r['page']:<14}{r['cold']:>9.2f}{r['cold_cpu']:>9.1f}{r['rerun']:>9.2f}{r['peak_rss_gib']:>14.2f}  "
                  f"{'; '.join(notes)}")
        ids = pd.read_parquet(run / "scores.parquet", columns=["pair_id"])["pair_id"].tolist()[:BULK]
        many, single = bulk_api(ws / "bench-bulk.sqlite", ids)
        print(f"decisions on {len(ids):,} pairs: record_many {many * len(ids):.3f} s ({many * 1e3:.3f} ms/pair); "
              f"reference, one record() per pair: {single * 1e3:.1f} ms/pair, {single * len(ids):.1f} s for "
              f"{len(ids):,}; ratio {single / many:.0f}x")
        ids = pd.read_parquet(run / "scores.parquet", columns=["pair_id"])["pair_id"].tolist()
        fast, full, n = in_force_reads(ws / "bench-in-force.sqlite", ids)
        print(f"decisions in force after one more ({n:,} in force): in_force {fast * 1e3:.0f} ms; reference, "
              f"the whole log's query: {full * 1e3:.0f} ms; ratio {full / fast:.1f}x")
        maps = {r["page"]: r for r in results if r["page"].startswith("map")}
        if maps:
            m, c = maps["map"], maps["map (cached)"]
            print("targets (issue 8): " + "; ".join([
                f"map cold {m['cold']:.0f} s (< {TARGETS['map cold s']:.0f})",
                f"map rerun {max(m['rerun'], c['rerun']):.2f} s (< {TARGETS['map rerun s']})",
                f"figure {m.get('figure_bytes', 0) / 1e6:.2f} MB (< {TARGETS['map figure MB']})",
                f"map peak RSS {max(m['peak_rss_gib'], c['peak_rss_gib']):.2f} GiB (< {TARGETS['map peak RSS GiB']})",
                f"bulk {c.get('bulk_click', float('nan')):.2f} s (< {TARGETS['bulk 2,000 s']})"]))


if __name__ == "__main__":
    main()
