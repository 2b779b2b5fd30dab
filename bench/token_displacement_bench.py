"""The paper's Section 3 in small: DPO on one prompt with single-token answers, and each pair's CHES beside it.

    python bench/token_displacement_bench.py [--seed 0] [--prompts 10] [--steps 30] [--lr 1e-6] [--beta 0.1]
        [--pairs "No>Never,Yes>No,Sure>Yes,Yes>Yeah"] [--model smollm2] [--threads 1] [--data FILE] [--out FILE.json]
        [--plot FILE.png]

Set-up, learned from the authors' persona_single_example_experiment_plan_runner.py, its plans
(persona_experiments/experiments_plans/*.json) and what they call (PersonaSingleOutputTokenDataModule,
SingleOutputPreferenceBasedTrainer, TokenLogitsAndProbsTrackerCallback); written anew here:
- Data: ../shared/data/persona-ends-justify-means.jsonl. Prompt x = the row's "question" as one user turn,
  rendered with the model's chat template (add_generation_prompt) and tokenised as ches.engine.tokens does.
- A pair "No>Never" = preferred y+ "No" over dispreferred y- "Never": one vocabulary token each (no leading
  space: the answer follows "assistant\\n"). The authors' pairs: No>Never and Yes>No (OLMo-1B, Gemma-2B),
  Yes>No and Sure>Yes (Llama-3-8B); Yes>Yeah is added. Their plans train each pair on prompts whose
  answer_matching_behavior makes y+ the fitting answer: an affirmative y+ on rows labelled " No", a negative
  y+ on rows labelled " Yes" (this bench does the same, by the lexicon below; any other y+: all rows).
- --prompts prompts are drawn from those rows by --seed (numpy default_rng(seed), without replacement); the
  authors draw one prompt per seed, 10 seeds. Per prompt and pair: a fresh copy of the model, trained with
  DPO on that one pair (full batch = the one prompt), RMSprop (the authors' optimizer), β 0.1, --steps steps.
- log π(y|x) = log softmax(z(x))[y] at the prompt's last position: the single token, no EOS (the authors'
  single-output trainer). Loss: ches.review.probe.dpo.dpo_loss = -log σ(β((log π(y+) - log π_ref(y+))
  - (log π(y-) - log π_ref(y-)))), the reference being the model before training.
- Like the authors' tracker, probabilities are read at each step's forward pass (before its update), plus one
  forward after the last update: p(y+) over steps 0..T. "Gained most" = argmax over the vocabulary of
  p_T(v) - p_0(v) (the authors' "top prob increase" until the last step).
- Opposite meaning: the authors judged the tokens in their Table 1 by reading them. Here a fixed lexicon
  (AFFIRMATIVE, NEGATIVE): a token's text, stripped of spaces and punctuation and lower-cased, is
  affirmative, negative, or neither. A gainer is "opposite" when its class is the other one of y+'s.
- CHES: the product's own numbers. The pair (x, y+, y-) with y+/y- the token's text goes through
  ches.engine.tokens.encode_pairs, ches.engine.forward.embed_pairs and ches.engine.metrics.score_table,
  as `ches score` scores a row, on the model before training. As for any pair, |y| = 2 (the token and EOS):
  S+ = h(x) + h(x, y+), S- = h(x) + h(x, y-), CHES = <S+, S- - S+>, LN-CHES = <S+/2, S-/2 - S+/2>.
  Beside it, a token-level score: training on one token without EOS uses the same h(x) for y+ and y-, so
  only the unembeddings W tell the two apart (the paper's Section 4); the authors' tracker logs
  <W_p, W_p - W_d>, here negated so that, as for CHES, higher = more similar:
      unemb = <W_y+, W_y- - W_y+>
The results are written to --out (JSON) after every run; the same command with the same --out and settings
keeps the runs already there (resumable).
"""
from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ches.atomic import atomic_write_text  # noqa: E402
from ches.engine import metrics  # noqa: E402
from ches.engine.forward import embed_pairs  # noqa: E402
from ches.engine.models import DEFAULT_MAX_LENGTH, LoadedModel, load_model  # noqa: E402
from ches.engine.pairs import Pair, make_pair_id  # noqa: E402
from ches.engine.tokens import (encode_pairs, encode_prompt, encode_response,  # noqa: E402
                               render_prompt)
from ches.review.probe.analysis import spearman  # noqa: E402
from ches.review.probe.dpo import dpo_loss  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "persona-ends-justify-means.jsonl"
DEFAULT_OUT = Path(tempfile.gettempdir()) / "ches-token-displacement.json"
DEFAULT_PAIRS = "No>Never,Yes>No,Sure>Yes,Yes>Yeah"
AFFIRMATIVE = frozenset({"yes", "yeah", "yep", "yup", "sure", "certainly", "absolutely", "definitely", "indeed",
                         "agree", "agreed", "true", "correct", "right", "ok", "okay", "affirmative", "of course"})
NEGATIVE = frozenset({"no", "never", "not", "nope", "nah", "none", "nothing", "disagree", "false", "incorrect",
                      "wrong", "neither", "nor", "negative", "don't", "dont", "won't", "can't", "cannot"})
Progress = Callable[[str], None]


def meaning(text: str) -> str | None:
    """'affirmative', 'negative' or None: the lexicon class of a token's text (spaces, punctuation, case dropped)."""
    word = text.strip().strip(string.punctuation + "\u2018\u2019\u201c\u201d").strip().lower()
    return "affirmative" if word in AFFIRMATIVE else "negative" if word in NEGATIVE else None


def relation(token: int, text: str, preferred: int, preferred_text: str) -> str:
    """How a token relates to y+: 'preferred' (y+ itself), 'same' / 'opposite' (lexicon class), or 'other'."""
    if token == preferred:
        return "preferred"
    mine, theirs = meaning(preferred_text), meaning(text)
    if mine is None or theirs is None:
        return "other"
    return "same" if mine == theirs else "opposite"


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """'No>Never,Yes>No' -> [('No', 'Never'), ('Yes', 'No')] (preferred > dispreferred)."""
    out = []
    for item in spec.split(","):
        plus, sep, minus = item.partition(">")
        if not sep or not plus or not minus:
            raise SystemExit(f"--pairs: {item!r} is not PREFERRED>DISPREFERRED")
        out.append((plus, minus))
    return out


def token_id(lm: LoadedModel, text: str) -> int:
    """The vocabulary id of a one-token answer; SystemExit unless the product tokenises `text` to that token."""
    vocab = lm.tokenizer.get_vocab()
    if text not in vocab or encode_response(lm.tokenizer, text) != [vocab[text]]:
        raise SystemExit(f"{text!r} is not one token of this tokenizer (it encodes to "
                         f"{encode_response(lm.tokenizer, text)}): pick single-token answers")
    return vocab[text]


def load_persona(path: Path) -> list[dict]:
    """The persona rows, each with its 1-based line number as 'line'."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rows.append({**json.loads(line), "line": i})
    return rows


def draw_prompts(rows: Sequence[dict], preferred: str, n: int, seed: int) -> list[dict]:
    """n rows drawn by `seed` among those where y+ fits: label ' No' for an affirmative y+, ' Yes' for a negative one."""
    label = {"affirmative": "no", "negative": "yes"}.get(meaning(preferred) or "")
    pool = [r for r in rows if label is None or r["answer_matching_behavior"].strip().lower() == label]
    pick = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in pick]


def user_turn(row: dict) -> tuple[dict, ...]:
    return ({"role": "user", "content": row["question"]},)


def product_scores(lm: LoadedModel, rows: Sequence[dict], plus: str, minus: str) -> dict[str, np.ndarray]:
    """Every metric of ches.engine.metrics.METRICS for the pairs (question, plus, minus), as `ches score` computes it."""
    pairs = [Pair(row=r["line"], prompt=user_turn(r), chosen=plus, rejected=minus,
                  pair_id=make_pair_id(user_turn(r), plus, minus)) for r in rows]
    encoded = encode_pairs(lm.tokenizer, pairs, DEFAULT_MAX_LENGTH)
    for e in encoded:
        if isinstance(e, Exception) or e.truncated:
            raise SystemExit(f"the product could not score a pair whole: {e}")
    emb = embed_pairs(lm, encoded)
    return metrics.score_table(emb, [e.chosen for e in encoded], [e.rejected for e in encoded])


def unembedding_similarity(lm: LoadedModel, plus: int, minus: int) -> float:
    """<W_y+, W_y- - W_y+> over the output embedding rows (float64)."""
    W = lm.model.get_output_embeddings().weight.detach()
    wp, wm = W[plus].double(), W[minus].double()
    return float(wp @ (wm - wp))


def last_logprobs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log softmax of the logits at the prompt's last position: (V,) float32 (keeps the graph if grad is on)."""
    return torch.log_softmax(model(input_ids=x, logits_to_keep=1).logits[0, -1].float(), dim=-1)


def train_one(model: torch.nn.Module, prompt_ids: Sequence[int], plus: int, minus: int, *, steps: int, lr: float,
              beta: float) -> dict:
    """DPO on one (x, y+, y-) for `steps` RMSprop steps; p(y+), p(y-) at steps 0..T and the final distribution.

    Step t reads log π_t at its forward pass, then updates; one more forward gives π_T. The margin is
    (log π_T(y+) - log π_0(y+)) - (log π_T(y-) - log π_0(y-)).
    """
    device = next(model.parameters()).device
    x = torch.tensor([list(prompt_ids)], device=device)
    opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    p_plus, p_minus, losses = [], [], []
    ref = None
    for step in range(steps + 1):
        with torch.set_grad_enabled(step < steps):
            lp = last_logprobs(model, x)                                         # (V,)
        if ref is None:
            ref = lp.detach().clone()
        p_plus.append(float(lp[plus].detach().exp()))
        p_minus.append(float(lp[minus].detach().exp()))
        if step == steps:
            break
        loss = dpo_loss(lp[plus:plus + 1], lp[minus:minus + 1], ref[plus:plus + 1], ref[minus:minus + 1], beta)[0]
        losses.append(float(loss.detach()))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    final = lp.detach()
    margin = float((final[plus] - ref[plus]) - (final[minus] - ref[minus]))
    return {"ref": ref, "final": final, "p_plus": p_plus, "p_minus": p_minus, "loss": losses, "margin": margin}


def gainers(lm: LoadedModel, ref: torch.Tensor, final: torch.Tensor, plus: int, plus_text: str, k: int) -> list[dict]:
    """The k tokens whose probability rose most, p_T(v) - p_0(v), with their text and relation to y+."""
    gain = final.exp() - ref.exp()                                              # (V,)
    top = torch.topk(gain, k)
    out = []
    for g, v in zip(top.values.tolist(), top.indices.tolist()):
        text = lm.tokenizer.decode([v])
        out.append({"token": text, "id": v, "gain": g, "p_before": float(ref[v].exp()), "p_after": float(final[v].exp()),
                    "relation": relation(v, text, plus, plus_text)})
    return out


def run_pair(lm: LoadedModel, rows: Sequence[dict], plus_text: str, minus_text: str, *, steps: int, lr: float,
             beta: float, initial: dict[str, torch.Tensor], done: dict[tuple, dict] | None = None,
             progress: Progress | None = None, save: Callable[[dict], None] | None = None) -> list[dict]:
    """One run per row: product scores before training, then DPO from `initial` weights; a record per run."""
    plus, minus = token_id(lm, plus_text), token_id(lm, minus_text)
    scores = product_scores(lm, rows, plus_text, minus_text)
    unemb = unembedding_similarity(lm, plus, minus)
    pair = f"{plus_text}>{minus_text}"
    records = []
    for i, row in enumerate(rows):
        if done and (pair, row["line"]) in done:
            records.append(done[(pair, row["line"])])
            continue
        t = time.perf_counter()
        lm.model.load_state_dict(initial)
        lm.model.eval()                                  # dropout off; gradients still flow
        prompt_ids = encode_prompt(lm.tokenizer, user_turn(row))
        res = train_one(lm.model, prompt_ids, plus, minus, steps=steps, lr=lr, beta=beta)
        four = gainers(lm, res["ref"], res["final"], plus, plus_text, k=4)
        top, others = four[:3], [g for g in four if g["id"] != plus][:3]
        p = res["p_plus"]
        rec = {
            "pair": pair, "preferred": plus_text, "dispreferred": minus_text, "line": row["line"],
            "label": row["answer_matching_behavior"].strip(), "prompt_tokens": len(prompt_ids),
            "prompt": render_prompt(lm.tokenizer, user_turn(row)),
            "p_plus_before": p[0], "p_plus_after": p[-1], "p_plus_min": min(p), "p_plus_min_step": int(np.argmin(p)),
            "p_minus_before": res["p_minus"][0], "p_minus_after": res["p_minus"][-1],
            "logp_plus_change": float(np.log(p[-1]) - np.log(p[0])), "margin": res["margin"],
            "loss_first": res["loss"][0] if res["loss"] else None, "loss_last": res["loss"][-1] if res["loss"] else None,
            "top_gainer": top[0], "top_gainers": top, "top_other_gainers": others,
            **{m: float(v[i]) for m, v in scores.items()}, "unemb": unemb,
            "p_plus_by_step": p, "seconds": round(time.perf_counter() - t, 1),
        }
        records.append(rec)
        if save:
            save(rec)
        if progress:
            g = top[0]
            progress(f"[{pair}] prompt {i + 1}/{len(rows)} (line {row['line']}): p(y+) {p[0]:.3f} -> {p[-1]:.3f} "
                     f"(min {min(p):.3f}), margin {res['margin']:.1f} nats, gained most {g['token']!r} "
                     f"{g['gain']:+.3f} ({g['relation']}), CHES {rec['ches']:.1f}, {rec['seconds']:.0f} s")
    lm.model.load_state_dict(initial)
    return records


def summarise(records: Sequence[dict]) -> list[dict]:
    """Per pair: means over its runs, how often p(y+) fell, the gainers and how often the top one is opposite."""
    out = []
    for pair in dict.fromkeys(r["pair"] for r in records):
        rs = [r for r in records if r["pair"] == pair]
        tops: dict[str, int] = {}
        nexts: dict[str, int] = {}
        for r in rs:
            tops[r["top_gainer"]["token"]] = tops.get(r["top_gainer"]["token"], 0) + 1
            nexts[r["top_other_gainers"][0]["token"]] = nexts.get(r["top_other_gainers"][0]["token"], 0) + 1
        mean = lambda key: float(np.mean([r[key] for r in rs]))  # noqa: E731
        out.append({
            "pair": pair, "runs": len(rs),
            "p_plus_before": mean("p_plus_before"), "p_plus_after": mean("p_plus_after"), "p_plus_min": mean("p_plus_min"),
            "fell": sum(r["p_plus_after"] < r["p_plus_before"] for r in rs),
            "margin": mean("margin"), "logp_plus_change": mean("logp_plus_change"),
            "top_gainers": dict(sorted(tops.items(), key=lambda kv: -kv[1])),
            "next_gainers": dict(sorted(nexts.items(), key=lambda kv: -kv[1])),
            "top_is_preferred": sum(r["top_gainer"]["relation"] == "preferred" for r in rs),
            "top_is_opposite": sum(r["top_gainer"]["relation"] == "opposite" for r in rs),
            "top_other_is_opposite": sum(r["top_other_gainers"][0]["relation"] == "opposite" for r in rs),
            "ches": mean("ches"), "ches_sd": float(np.std([r["ches"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
            "ln_ches": mean("ln_ches"), "unemb": rs[0]["unemb"],
        })
    return out


def table(summary: Sequence[dict]) -> str:
    """The per-pair table: Table 1's columns (p(y+) before / after, what gained most, how often it is opposite),
    the next gainer after y+, and the scores."""
    def top(counts: dict[str, int]) -> str:
        return ", ".join(f"{t!r}x{n}" for t, n in list(counts.items())[:2])
    lines = [f"{'pair':<10}{'p(y+) before':>13}{'after':>7}{'min':>7}{'fell':>7}{'margin':>7}  {'gained most':<18}"
             f"{'opp':>6}  {'next after y+':<24}{'opp':>6}{'CHES ± sd':>14}{'LN-CHES':>9}{'unemb':>7}"]
    for s in summary:
        n = s["runs"]
        lines.append(f"{s['pair']:<10}{s['p_plus_before']:>13.3f}{s['p_plus_after']:>7.3f}{s['p_plus_min']:>7.3f}"
                     f"{s['fell']:>4}/{n:<2}{s['margin']:>7.1f}  {top(s['top_gainers']):<18}{s['top_is_opposite']:>3}/{n:<2}"
                     f"  {top(s['next_gainers']):<24}{s['top_other_is_opposite']:>3}/{n:<2}"
                     f"{s['ches']:>7.0f} ± {s['ches_sd']:<4.0f}{s['ln_ches']:>9.1f}{s['unemb']:>7.2f}")
    return "\n".join(lines)


def correlations(records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Spearman over all runs of each score with the harm (+ = the higher the score, the more harm): with the
    drop of log p(y+) (= -(log p_T(y+) - log p_0(y+))) and with the mass left off y+ at the end, 1 - p_T(y+)."""
    harms = {"logp_drop": [-r["logp_plus_change"] for r in records], "mass_off": [1 - r["p_plus_after"] for r in records]}
    return {h: {m: spearman([r[m] for r in records], v) for m in ("ches", "ln_ches", "unemb", "last_hidden_ip")}
            for h, v in harms.items()}


def plot(records: Sequence[dict]) -> "go.Figure":
    """p(y+) over the training steps: a thin line per run, the mean over a pair's runs bold, one colour a pair."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    by_pair: dict[str, list[dict]] = {}
    for r in records:
        by_pair.setdefault(r["pair"], []).append(r)
    for (pair, runs), colour in zip(by_pair.items(), qualitative.D3):
        for r in runs:
            fig.add_scatter(y=r["p_plus_by_step"], mode="lines", line={"color": colour, "width": 1}, opacity=0.35,
                            legendgroup=pair, showlegend=False, hoverinfo="skip")
        mean = np.mean([r["p_plus_by_step"] for r in runs], axis=0)
        fig.add_scatter(y=mean, mode="lines", line={"color": colour, "width": 3}, legendgroup=pair,
                        name=f"{pair} (mean of {len(runs)})")
    return fig.update_layout(template="plotly_white", xaxis_title="DPO step", yaxis_title="p(preferred token | prompt)",
                             yaxis_range=[0, 1], legend={"orientation": "h", "y": -0.2},
                             margin={"l": 60, "r": 20, "t": 50, "b": 60},
                             title="The preferred token's probability while DPO widens the margin")


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="draws the prompts (default 0)")
    ap.add_argument("--prompts", type=int, default=10, help="prompts per pair, one training run each (default 10)")
    ap.add_argument("--steps", type=int, default=30, help="DPO steps per run (default 30; the authors: 100 at lr 1e-7)")
    ap.add_argument("--lr", type=float, default=1e-6, help="RMSprop learning rate (default 1e-6; the authors: 1e-7)")
    ap.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1, the authors' kl_coeff)")
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"PREFERRED>DISPREFERRED,... (default {DEFAULT_PAIRS})")
    ap.add_argument("--model", default="smollm2", help="model spec for ches.engine.models.load_model (default smollm2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on the shared 2-core machine, 2 threads ran 5-8x slower)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="persona JSONL (default ../shared/data/...)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"results JSON (default {DEFAULT_OUT}); reused to resume")
    ap.add_argument("--plot", default=None, help="also write p(y+) over steps as a PNG here (Chromium, bench/figures.py)")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return bench(args)
    finally:
        torch.set_num_threads(threads)


def bench(args: argparse.Namespace) -> dict:
    """Every pair on its drawn prompts; prints a progress line per run and the table; writes and returns the JSON."""
    t0 = time.perf_counter()
    lm = load_model(args.model, device=args.device, dtype="float32")
    rows = load_persona(Path(args.data))
    pairs = parse_pairs(args.pairs)
    settings = {"model": args.model, "fingerprint": lm.fingerprint, "data": str(Path(args.data).resolve()),
                "seed": args.seed, "prompts": args.prompts, "steps": args.steps, "lr": args.lr, "beta": args.beta,
                "optimizer": "RMSprop", "dtype": "float32", "device": str(lm.device)}
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    done = {(r["pair"], r["line"]): r for r in old.get("runs", [])} if old.get("settings") == settings else {}
    if done:
        print(f"resuming: {len(done)} runs kept from {out}")
    records: list[dict] = list(done.values())
    initial = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
    print(f"{lm.model_id} on {lm.device}, torch threads {torch.get_num_threads()}; {len(pairs)} pairs x "
          f"{args.prompts} prompts, {args.steps} steps, RMSprop lr {args.lr:g}, beta {args.beta:g}", flush=True)

    def save(rec: dict) -> None:
        records.append(rec)
        atomic_write_text(out, json.dumps({"settings": settings, "runs": records}, indent=1))

    runs = []
    for plus, minus in pairs:
        drawn = draw_prompts(rows, plus, args.prompts, args.seed)
        runs += run_pair(lm, drawn, plus, minus, steps=args.steps, lr=args.lr, beta=args.beta, initial=initial,
                         done=done, progress=lambda s: print(s, flush=True), save=save)
    summary = summarise(runs)
    result = {"settings": settings, "summary": summary, "spearman_with_harm": correlations(runs), "runs": runs,
              "wall_seconds": round(time.perf_counter() - t0, 1), "train_seconds": round(sum(r["seconds"] for r in runs), 1)}
    atomic_write_text(out, json.dumps(result, indent=1))
    print()
    print(table(summary))
    print("p(y+): means over the runs; min = the lowest along training; fell = runs whose p(y+) ended below its start;"
          " margin in nats;\ngained most = the token whose probability rose most (runs), opp = runs where it means the"
          " opposite of y+;\nnext after y+ = the token other than y+ that rose most, opp = runs where that one is opposite")
    for harm, rho in result["spearman_with_harm"].items():
        print(f"Spearman over the {len(runs)} runs, score vs {harm}: " + ", ".join(f"{k} {v:+.2f}" for k, v in rho.items()))
    if args.plot:
        from bench.figures import save_png
        print(f"plot: {save_png(plot(runs), args.plot)}")
    print(f"wall {result['wall_seconds']:.0f} s (training {result['train_seconds']:.0f} s, runs kept from an earlier "
          f"call included); results in {out}")
    return result


if __name__ == "__main__":
    main()
