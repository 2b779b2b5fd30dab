"""Data & score: load a dataset (sample, upload, path, Hub), check the load report, score it, open runs.

Cancelling: scoring runs inside this script. Clicking "Cancel" (or Streamlit's own Stop) makes
Streamlit rerun the page, which interrupts the running script at its next progress update; the
Cancel button's callback also sets a session flag that `should_stop` reads between batches. Nothing
is stored for a cancelled run (a run folder appears only when complete).
"""
import time

import streamlit as st

import ui
from ches import store
from ches import workspace as wsp
from ches.data import FORMATS
from ches.embed import Cancelled
from ches.models import DEFAULT_MODEL
from ches.pipeline import DEFAULT_MAX_LENGTH, run_key, score_dataset
from ches.report import load_report, runs_table

CANCEL = "_cancel_scoring"
SOURCES = ("Bundled sample", "Upload a file", "Path under the data root", "Hugging Face dataset")

st.title("Data & score")
st.caption("Load preference pairs, check what was read, then embed every pair with a causal LM and "
           "score it with CHES (Razin et al., ICLR 2025). Higher scores mean the chosen and rejected "
           "responses look alike to the model: the pairs most likely to cause likelihood displacement.")
ui.show_flash()
if st.session_state.pop(CANCEL, False):
    st.warning("Scoring cancelled; nothing was stored.", icon=":material/cancel:")


def _cancel() -> None:
    st.session_state[CANCEL] = True


def _open_selected() -> None:
    """Selecting a row in the runs table opens that run (a callback: fires only when the selection changes)."""
    rows = st.session_state["score_runs"].selection.rows
    order = st.session_state.get("_runs_order", [])
    if rows and rows[0] < len(order):
        ui.set_run(order[rows[0]])
        ui.flash("success", f"Opened {ui.run_label(order[rows[0]])}.")


# ------------------------------------------------------------------------------------ 1. dataset
st.subheader("1 · Dataset")
source = st.radio("Source", SOURCES, horizontal=True, key="score_source", label_visibility="collapsed")
fmt = st.selectbox("Format", [None, *FORMATS], format_func=lambda f: "auto-detect" if f is None else f,
                   help="\n\n".join(f"**{k}**: {v}" for k, v in FORMATS.items()), key="score_format")

dataset = None
with ui.user_errors():
    if source == SOURCES[0]:
        st.caption(f"165 hand-written pairs in TRL conversational format: `{wsp.SAMPLE.name}`")
        dataset = ui.dataset_file(wsp.SAMPLE, fmt)
    elif source == SOURCES[1]:
        limit_mb = wsp.MAX_UPLOAD_BYTES / 2**20
        up = st.file_uploader(f"Dataset file (up to {limit_mb:.0f} MB)", key="score_upload",
                              type=["jsonl", "ndjson", "json", "csv", "parquet", "gz"])
        if up is not None:
            wsp.check_upload_size(up.size)
            saved = wsp.save_upload(ui.ws().uploads, up.getvalue(), up.name)
            dataset = ui.dataset_file(saved, fmt)
    elif source == SOURCES[2]:
        root = wsp.data_root()
        typed = st.text_input("Path (relative to the data root)", key="score_path",
                              placeholder="e.g. sample.jsonl or my/prefs.parquet")
        st.caption(f"Data root: `{ui.escape_md(root)}` (set `CHES_DATA_ROOT` to change it).")
        if typed.strip():
            dataset = ui.dataset_file(wsp.confine(root, typed), fmt)
    else:
        c1, c2, c3 = st.columns([3, 2, 1])
        name = c1.text_input("Dataset name", key="score_hub_name", placeholder="owner/name")
        config = c2.text_input("Config (optional)", key="score_hub_config")
        split = c3.text_input("Split", value="train", key="score_hub_split")
        if st.button("Load from the Hub", key="score_hub_load") and name.strip():
            st.session_state["_hub_spec"] = (name.strip(), config.strip() or None, split.strip() or "train")
        spec = st.session_state.get("_hub_spec")
        if spec:
            dataset = ui.dataset_hub(*spec, fmt)

if dataset is not None:
    report = load_report(dataset)
    c1, c2, c3 = st.columns(3)
    c1.metric("Pairs loaded", report["pairs"])
    c2.metric("Rows skipped", report["skipped"])
    c3.metric("Format", report["format"])
    if report["skipped"]:
        with st.expander(f"{report['skipped']} rows could not be read", expanded=report["pairs"] == 0,
                         icon=":material/warning:"):
            st.dataframe(report["errors"], hide_index=True, width="stretch",
                         column_config={"row": st.column_config.NumberColumn("row", format="%d")})
    if len(report["flags"]):
        with st.expander("Flags (pairs are kept; review them on Browse)", icon=":material/flag:"):
            st.dataframe(report["flags"], hide_index=True, width="stretch")

# -------------------------------------------------------------------------------------- 2. score
st.subheader("2 · Score")
c1, c2, c3 = st.columns([3, 1, 1])
model_spec = c1.text_input("Model", value=DEFAULT_MODEL, key="score_model",
                           help=f"'{DEFAULT_MODEL}' = SmolLM2-135M-Instruct (offline, the default); or a "
                           "Hugging Face model id, or a local model folder.")
max_length = c2.number_input("Max length", min_value=16, max_value=131072, value=DEFAULT_MAX_LENGTH,
                             step=256, key="score_max_length",
                             help="Max tokens per prompt + response; longer pairs are cut and flagged 'truncated'.")
dtype = c3.selectbox("dtype", ["auto", "float32", "bfloat16"], key="score_dtype",
                     help="auto = bf16 on a GPU, fp32 on CPU. Sums are always accumulated in float64.")

if st.button("Score", type="primary", icon=":material/play_arrow:", disabled=dataset is None or not dataset.pairs,
             key="score_go"):
    st.session_state[CANCEL] = False
    st.button("Cancel", on_click=_cancel, icon=":material/stop:", key="score_cancel",
              help="Stops after the current batch; nothing is stored.")
    bar = st.progress(0.0, text="Loading the model …")
    with ui.user_errors():
        with st.spinner(f"Loading {model_spec} …"):
            lm = ui.model(model_spec.strip() or DEFAULT_MODEL, dtype)
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            rate = done / 2 / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / 2 / rate if rate > 0 else float("nan")
            bar.progress(min(1.0, done / max(total, 1)),
                         text=f"{done // 2} / {total // 2} pairs · {rate:.1f} pairs/s · ETA {eta:.0f} s")

        reused = store.is_complete(store.run_path(ui.ws().runs, run_key(dataset, lm, int(max_length))))
        try:
            run_dir = score_dataset(dataset, lm, runs_root=ui.ws().runs, max_length=int(max_length),
                                    progress=progress, should_stop=lambda: bool(st.session_state.get(CANCEL)))
        except Cancelled:
            st.session_state.pop(CANCEL, None)
            st.warning("Scoring cancelled; nothing was stored.")
        else:
            st.session_state.pop(CANCEL, None)
            m = store.read_manifest(run_dir)
            ui.set_run(run_dir)
            done = ("Reopened the stored run for these pairs (same data, model and settings): nothing recomputed."
                    if reused else f"Scored {m['pairs']} pairs in {m.get('seconds', 0):.1f} s.")
            ui.flash("success", done + " The run is active: open Browse, Map or Pair / tokens.")
            st.rerun()

# ----------------------------------------------------------------------------------- 3. runs
st.subheader("3 · Stored runs")
runs = store.list_runs(ui.ws().runs)
if not runs:
    st.caption("No stored runs yet. Scoring the same data with the same model and settings again reuses its run.")
else:
    table = runs_table(runs)
    active = str(ui.active_run() or "")
    table.insert(0, "active", table["run"] == active)
    st.session_state["_runs_order"] = list(table["run"])
    st.caption("Select a row to open that run (it becomes the active run for every page).")
    st.dataframe(table, hide_index=True, width="stretch", on_select=_open_selected, selection_mode="single-row",
                 key="score_runs", column_order=["active", "created", "source", "pairs", "model",
                                                 "max length", "dtype", "seconds"],
                 column_config={"active": st.column_config.CheckboxColumn("active", width="small"),
                                "seconds": st.column_config.NumberColumn("seconds", format="%.1f")})
    if active:
        st.page_link("pages/browse.py", label="Browse the active run", icon=":material/table_rows:")
