"""Curate & export: choose which pairs to keep, preview the effect, check the rule on the model beside the rules
the user picks to compare it with, write the subset with a manifest. The curation check runs as a job
(`ches check-curation`, ches/engine/jobs.py), one per run, rules and settings: its progress and Cancel show
under its button, and its arms and verdict when it is stored."""
import hashlib
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ui import auth, frame, jobspanel, loaders, render, state
from ches.cli.probe import check_args
from ches.engine import jobs
from ches.review.charts import before_after_histogram, check_arms
from ches.atomic import atomic_write_text
from ches.review.probe.analysis import short_notice
from ches.review.probe.check import RANDOM_DRAWS, CheckSettings, arm_name, as_rules, check_fit, check_key, \
    arms_frame, check_digest, checks_dir, counterpart, read_check
from ches.review.probe.storage import citation, is_complete
from ches.review.probe.settings import MIN_PAIRS, defaults as probe_defaults
from ches.engine.pairs import FLAGS
from ches.review.team_rules import DEFAULT_TEAM_RULE, TEAM_RULES
from ches.review.decision_context import jsonl_with_context
from ches.review.export import (DEFAULT_DROP_FLAGS, Rule, default_export_name, export, export_path, manifest_path, only,
                                preview, select, team_report)
from ches.review.hub_export import DATA_FILE, HF_FORMATS, export_folder, export_hf
from ches.engine.report import dataset_stem
from ches.engine.metrics import METRICS

frame.page("Curate & export")      # first: page config, sign-in gate, the URL's state, the sidebar

LAST = "export_last"          # (run folder, written file) of this session's latest export
CONFIRM = "_export_confirm"   # the file an export would overwrite, waiting for the user's word
FOLLOW = "_check_job"         # the check job this session started or watched: (job file, its check folder)
FORMATS = {"input": "As in the source (each pair's original record; CSV / Parquet sources become JSON Lines)",
           "trl": "TRL conversational (prompt / chosen / rejected as messages)",
           "hf": "Hugging Face dataset folder, as in the source (Parquet + a dataset card with the manifest)",
           "hf-trl": "Hugging Face dataset folder, TRL conversational (ready for trl.DPOTrainer)"}

run = state.require_run()
table = loaders.scores(run)
st.title("Curate & export")
st.caption("Higher scores = more similar responses = more likely likelihood displacement, so curation keeps the "
           "LOWEST scores. The paper (Razin et al. 2025, Sec. 6) trains on the 5% lowest LN-CHES; dropping "
           "only the riskiest few percent is the gentler choice. Decisions override the rule: keep = always "
           "kept, drop = always dropped, flag = follows the rule.")

# ------------------------------------------------------------------------------------ the rule
c1, c2 = st.columns(2)
metric = c1.selectbox("Metric", list(METRICS), format_func=lambda m: METRICS[m].label, key="export_metric",
                      help="Rank with one metric only; never mix CHES and LN-CHES.")
c1.caption(METRICS[metric].help)
mode = c2.radio("Rule", ["percent", "threshold"], key="export_mode", horizontal=True,
                format_func={"percent": "Keep the lowest %", "threshold": "Keep scores ≤ threshold"}.get)
if mode == "percent":
    percent = c2.slider("Keep the lowest … % of pairs", 0.0, 100.0, 95.0, 0.5, key="export_percent",
                        help="5 follows the paper; 95 drops the riskiest 5%.")
    threshold = None
else:
    default = float(np.nanquantile(table[metric], 0.95)) if table[metric].notna().any() else 0.0
    threshold = c2.number_input(f"Keep pairs with {METRICS[metric].label} ≤", value=default, format="%.6g",
                                key=f"export_threshold_{metric}")
    percent = 95.0
drop_flags = st.multiselect("Drop pairs with these flags", list(FLAGS), default=list(DEFAULT_DROP_FLAGS),
                            key="export_flags", format_func=lambda f: f"{f} — {FLAGS[f]}")
t1, t2 = st.columns(2)
only_mine = t2.toggle(f"Apply only my decisions ({state.annotator() or 'no name given'})", key="export_only_mine",
                      disabled=not state.annotator(), help="Off: the team's decision applies, by the team rule.")
only_mine = only_mine and bool(state.annotator())
team_rule = t1.selectbox("Team rule", list(TEAM_RULES), key="export_team_rule", disabled=only_mine,
                         format_func=lambda r: f"{r.replace('_', ' ')}: {TEAM_RULES[r]}",
                         help="How several annotators' decisions on a pair become the team's. An adjudicator's "
                         "decision wins under every rule; a pair the rule gives no decision follows the score rule.")

rule = None
with render.user_errors():
    rule = Rule(metric=metric, keep_lowest_percent=percent, threshold=threshold, drop_flags=tuple(drop_flags),
                team=DEFAULT_TEAM_RULE if only_mine else team_rule)
if rule is None:
    st.stop()
decisions = only(loaders.team(), state.annotator(), rule) if only_mine else loaders.team()

# ------------------------------------------------------------------------------------ preview
summary = preview(table, rule, decisions)
sel = select(table, rule, decisions)
kept = sel[sel["kept"]]
m1, m2, m3 = st.columns(3)
m1.metric("Pairs kept", summary["after"], delta=f"{summary['after'] / max(summary['before'], 1):.1%} of "
          f"{summary['before']}", delta_color="off", delta_arrow="off")
m2.metric("Pairs dropped", summary["dropped"])
m3.metric("Overridden by decisions", summary["overridden"],
          help="Pairs whose keep / drop decision changed what the rule and flags alone would do.")
short = short_notice(kept["len_chosen"], "the kept set")
if short:
    st.warning(render.escape_md(short), icon=":material/short_text:")
h1, h2 = st.columns(2)
h1.plotly_chart(before_after_histogram(table[metric], kept[metric], title=f"{METRICS[metric].label}: before vs after",
                                       xlabel=METRICS[metric].label), key="export_hist_metric")
lengths = lambda t: np.concatenate([t["len_chosen"].to_numpy(), t["len_rejected"].to_numpy()])  # noqa: E731
h2.plotly_chart(before_after_histogram(lengths(table), lengths(kept), title="Response length: before vs after",
                                       xlabel="tokens (chosen and rejected)", ylabel="responses"),
                key="export_hist_lengths")
r1, r2 = st.columns(2)
with r1:
    st.markdown("**Removed by flags**")
    if summary["flags_removed"]:
        st.dataframe(pd.DataFrame({"flag": list(summary["flags_removed"]),
                                   "pairs removed": list(summary["flags_removed"].values())}), hide_index=True)
    else:
        st.caption("No pair removed by a flag.")
with r2:
    st.markdown("**Outcome by reason**")
    reasons = [(r, "kept", n) for r, n in summary["kept_by_reason"].items()] + \
              [(r, "dropped", n) for r, n in summary["dropped_by_reason"].items()]
    st.dataframe(pd.DataFrame(reasons, columns=["reason", "outcome", "pairs"]), hide_index=True)
team = team_report(decisions, rule, sel)
if team["conflicts"]:
    settled = ", ".join(f"{n} by {'the ' * (k != 'adjudication')}{k}" for k, n in team["settled_by"].items())
    with st.expander(f"{team['conflicts']} conflict(s) among annotators on this run: {settled}", icon=":material/groups:"):
        if state.assignment(run)[0].blind and not auth.can("adjudicate"):
            st.info("Review is blind: which annotator decided what is shown to admins only.",
                    icon=":material/visibility_off:")
        else:
            st.dataframe(pd.DataFrame(team["conflict_pairs"]).drop(columns="pair_id"), hide_index=True)

# ------------------------------------------------------------------------------------ curation check
st.subheader("Curation check")


def _check(argv: list[str], target: str, label: str) -> None:
    """The check's start button: trains model copies on the server, so the role is checked when pressed."""
    if state.allowed("score") and not is_complete(Path(target)):      # a stored one is shown below
        with state.errors_flashed():
            jobspanel.start("check-curation", run, argv, label=label, follow=FOLLOW, opens=target)


if (done := jobspanel.finished(FOLLOW)) and is_complete(Path(done)):
    st.success("Curation check finished and stored with the run: its verdict is below.", icon=":material/science:")
st.caption("Does training on what this rule keeps spare the chosen response's likelihood, and better than the "
           "rules you compare it with? For each seed the check trains fresh copies of the run's model with the "
           "probe's DPO, one per arm (n pairs drawn from what each rule keeps, and n drawn at random from the run, "
           "by default matched to this rule's response lengths), with the same seeds and settings, and compares "
           "the change of log π(y⁺|x). The export's manifest cites the latest check with an arm of this rule.")


def _compare_options(rule: Rule) -> list[Rule]:
    """The rules a user can compare the exported one with: the same share of pairs by each other metric."""
    share = rule.keep_lowest_percent if rule.threshold is None else 100 * float(sel["rule_kept"].mean())
    return [Rule(metric=m, keep_lowest_percent=round(share, 2), drop_flags=rule.drop_flags, team=rule.team)
            for m in METRICS if m != rule.metric]


def _write_prompts(text: str) -> str | None:
    """The held-out prompts typed on the page, one per line, as a file for the job (None when there are none)."""
    lines = "".join(f"{x.strip()}\n" for x in text.splitlines() if x.strip())
    if not lines:
        return None
    path = state.ws().jobs / f"prompts-{hashlib.sha256(lines.encode()).hexdigest()[:16]}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, lines)
    return str(path)


with render.user_errors():
    preset = probe_defaults(loaders.manifest(run)["key"]["model_id"])
    options = {arm_name(r): r for r in _compare_options(rule)}
    default = arm_name(counterpart(rule, options.values())) if counterpart(rule, options.values()) else None
    if "check_compare" not in st.session_state or not set(st.session_state["check_compare"]) <= set(options):
        st.session_state["check_compare"] = [default] if default in options else []
    k0, k4 = st.columns([3, 1])
    compare = k0.multiselect("Compare with", list(options), key="check_compare",
                             help="Rules trained beside the one being exported, with the same seeds and settings: "
                             "the same share of pairs, lowest by another metric. Default: its CHES / LN-CHES "
                             "counterpart.")
    random_arm = k4.selectbox("Random arm", list(RANDOM_DRAWS), key="check_random",
                              format_func={"length": "length-matched", "uniform": "uniform", "none": "none"}.get,
                              help="length-matched: each seed's random pairs matched, nearest |y+| first, to the "
                              "exported rule's draw, so the summed change is not a length effect.")
    rules = as_rules([rule, *(options[c] for c in compare)])
    sels = [sel] + [select(table, r, decisions) for r in rules[1:]]
    fewest = min(int(x["kept"].sum()) for x in sels)
    with st.expander("Behaviour: refusal rate on held-out prompts (optional)", icon=":material/psychology:"):
        st.text_area("Held-out prompts, one per line", key="check_prompts", height=120,
                     help="Greedy answers before training and after every arm, judged by the built-in refusal "
                     "judge (ches/review/probe/behaviour.py). Empty: no behaviour measure.")
    if fewest < MIN_PAIRS:
        st.caption(f"A rule keeps {fewest} pair(s): a check needs at least {MIN_PAIRS}.")
    else:
        k1, k2, k3 = st.columns([1, 1, 2])
        check_n = k1.number_input("Pairs per arm", min_value=MIN_PAIRS, value=None, placeholder="fitted to the rule",
                                  key="check_n", help=f"Empty: {preset['n']}, or all the kept pairs if a rule "
                                  "keeps fewer (the batch size follows n, as on the Probe page).")
        check_seeds = k2.number_input("Seeds", min_value=2, max_value=20, value=3, key="check_seeds")
        fit = check_fit(preset, fewest, None if check_n is None else int(check_n))
        cs = CheckSettings(n=fit.n, seeds=int(check_seeds), batch_size=fit.batch_size, lr=preset["lr"],
                           beta=preset["beta"], random=random_arm)
        k3.caption(render.escape_md(cs.describe() + (f" ({fit.note})" if fit.note else "")))
        prompts = st.session_state.get("check_prompts") or ""
        db = state.ws().decisions
        prompts_file = _write_prompts(prompts) if prompts.strip() else None
        argv = check_args(run, rules, cs, decisions=db if db.is_file() else None,
                          annotator=state.annotator() if only_mine else None, behaviour_prompts=prompts_file)
        behaviour = None
        if prompts_file:
            from ches.review.probe.check import Behaviour, read_prompts
            behaviour = Behaviour(prompts=read_prompts(prompts_file))
        target = str(checks_dir(run) / check_key(run, rules, check_digest(sels), cs, behaviour))
        job = jobspanel.page_job("check-curation", run, argv, follow=FOLLOW, opens=target)
        busy = job is not None and jobs.status(job).running
        st.button("Check these rules on the model", icon=":material/science:", key="check_go", on_click=_check,
                  args=(argv, target, f"{' vs '.join(arm_name(r) for r in rules)}; {cs.describe()} · run "
                        f"{run.name[:8]}"),
                  disabled=not auth.can("score") or busy, help=auth.refuse("score") or (
                      "Running: its progress is below." if busy else "Trains in the background: you can leave "
                      "this page, reload it or cancel; the verdict shows here when it is stored."))
        jobspanel.in_place(job, FOLLOW)
    cited = citation(run, rule.as_dict(), sel)
    if cited is None:
        st.caption("No check of this rule yet.")
    elif cited["outdated"]:
        st.warning(f"The latest check of this rule (check {cited['key']}) was stored by an older version of CHES "
                   "Studio: it has no response lengths, no per-token change and no length-matched random arm. "
                   "Run the check again to compare rules.", icon=":material/history:")
        if cited["verdict"]:
            st.caption("Its stored verdict: " + render.escape_md(cited["verdict"]))
    else:
        m, _ = read_check(checks_dir(run) / cited["key"])
        stats = m["stats"]
        best = stats["best"]
        beyond = bool(stats["comparisons"]) and all(c["beyond"] for c in stats["comparisons"])
        (st.success if best == cited["arm"] and beyond else st.info)(render.escape_md(m["verdict"]),
                                                                     icon=":material/science:")
        st.caption(f"Check {cited['key']} of {cited['created_at'][:16].replace('T', ' ')}; this rule is its arm "
                   f"“{cited['arm']}”"
                   + ("" if cited["same_decisions"] else " · it applied other decisions than the ones in force now"))
        st.dataframe(arms_frame(m), hide_index=True, key="check_table")
        st.caption(f"change = after − before of log π(y|x), in {m['unit']}; per token = the mean over the pairs of "
                   "change / |y⁺|; mean |y⁺| in tokens; each value ± sd over "
                   f"{stats['seeds']} seeds. The verdict is a two-standard-error screen, not a significance test.")
        st.plotly_chart(check_arms(stats), key="check_arms")

# ------------------------------------------------------------------------------------ export
st.subheader("Export")
fmt = st.radio("Format", list(FORMATS), format_func=FORMATS.get, key="export_format")
suggested = default_export_name(dataset_stem(loaders.manifest(run).get("source")), rule, datetime.now()) + \
    ("" if fmt == "input" else f"-{fmt}")
st.text_input("File name (a folder's for a Hugging Face dataset; saved in the workspace's exports folder)", key="export_name", placeholder=suggested,
                     help="Leave it empty for the suggested name: the dataset, the rule and the time.")


def _export(path: Path, overwrite: bool) -> None:
    st.session_state.pop(CONFIRM, None)
    written = (export_hf if fmt in HF_FORMATS else export)(run, rule, decisions, path, fmt=fmt, overwrite=overwrite,
                                                           annotator=state.annotator() if only_mine else None)
    st.session_state[LAST] = (str(run), str(path))
    state.flash("success", f"Wrote {written['counts']['kept']} of {written['counts']['pairs']} pairs to {path.name}.")


def _export_pressed(suggested: str) -> None:
    """Export's callback: the file is written (or its overwrite asked for) before the page is drawn."""
    if not state.allowed("export"):
        return
    with state.errors_flashed():
        name = str(st.session_state.get("export_name") or "").strip()
        path = (export_folder if fmt in HF_FORMATS else export_path)(state.ws().exports, name or suggested)
        if path.exists():
            st.session_state[CONFIRM] = str(path)
        else:
            _export(path, overwrite=False)


def _overwrite(pending: str) -> None:
    if state.allowed("export"):
        with state.errors_flashed():
            _export(Path(pending), overwrite=True)


st.button("Export", type="primary", key="export_go", icon=":material/download:", on_click=_export_pressed,
          args=(suggested,), disabled=not auth.can("export"), help=auth.refuse("export"))
pending = st.session_state.get(CONFIRM)
if pending:
    st.warning(f"{Path(pending).name} already exists in the exports folder. Overwrite it and its manifest?",
               icon=":material/warning:")
    o1, o2, _ = st.columns([1, 1, 3])
    o1.button("Overwrite", key="export_overwrite", type="primary", on_click=_overwrite, args=(pending,))
    o2.button("Cancel", key="export_cancel", on_click=lambda: st.session_state.pop(CONFIRM, None))

state.show_flash()
last = st.session_state.get(LAST)
if last and last[0] == str(run) and Path(last[1]).is_dir():
    path = Path(last[1])
    st.text(f"Dataset folder: {path}\nRead it back:   datasets.load_dataset({str(path)!r})\n"
            f"Push it:        hf upload OWNER/NAME {path} --repo-type dataset")
    d1, d2 = st.columns(2)
    d1.download_button("Download Parquet", data=partial((path / DATA_FILE).read_bytes), file_name=f"{path.name}.parquet",
                       mime="application/vnd.apache.parquet", key="export_dl_parquet", icon=":material/file_download:")
    d2.download_button("Download dataset card", data=partial((path / "README.md").read_bytes), file_name="README.md",
                       mime="text/markdown", key="export_dl_card", icon=":material/description:")
elif last and last[0] == str(run) and Path(last[1]).is_file():
    path = Path(last[1])
    st.text(f"Exported file: {path}\nManifest:      {manifest_path(path)}")
    d1, d2 = st.columns(2)
    d1.download_button("Download JSONL", data=partial(path.read_bytes), file_name=path.name,
                       mime="application/jsonl", key="export_dl_jsonl", icon=":material/file_download:")
    if manifest_path(path).is_file():
        d2.download_button("Download manifest", data=partial(manifest_path(path).read_bytes),
                           file_name=manifest_path(path).name, mime="application/json", key="export_dl_manifest",
                           icon=":material/description:")

db = state.ws().decisions
if db.is_file():
    st.download_button("Download the decision log", data=partial(jsonl_with_context, db, run), icon=":material/rule:",
                       file_name=f"decisions-{Path(run).name[:12]}.jsonl", mime="application/jsonl",
                       key="export_dl_decisions", disabled=not auth.can("export"), help=auth.refuse("export") or
                       "Every decision event of the workspace (JSON Lines, as `ches decisions export --run`), each "
                       "with its pair's run, row and prompt (the last user turn) where this run holds the pair; "
                       "`ches decisions import` reads it back.")
