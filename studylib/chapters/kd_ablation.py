"""Chapter 03 (distillation ablation): the teaching toys and the recovery grid it runs.

- `kl_directions_toy()`: fit a unimodal student to a bimodal teacher with the study's own
  `losses.forward_kl` / `losses.reverse_kl` -- mode-covering vs mode-seeking, in one picture.
- `softened_next_token()`: a real teacher's next-token distribution at temperatures tau.
- `final_norm_gain()`: the learned per-channel gain of the LLM's final norm, the reason
  hidden-state L2 is taken *before* that norm (see `studylib.compress.recipes`).
- `compute()`: the chapter's grid (`studylib.study.grid`): one pruned student per (method,
  ratio, seed), recovered with every recipe, each evaluated, as tidy rows for
  the results table. The teacher is evaluated in the same run, so AVG-% needs nothing else.
- `recipe_table()` / `timing_table()` / `cache_speedup()` / `takeaways()`: read back from the
  run's rows, the paper's Table 2 (Bunny, layerwise) beside ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from studylib.analysis import evidence
from studylib.analysis.paper import SHORT_PAPER_NAME, TABLE2_MODEL, TABLE2_RECIPES, paper_table
from studylib.chapters import show
from studylib.compress import losses, recipes, recover
from studylib.models.surgery import LayerTap
from studylib.results import eval_rows
from studylib.study import grid
from studylib.study.params import KDAblationParams
from studylib.testbed import instructions
from studylib.testbed.data import ConversationCollator

HIDDEN_ABLATION = {"sft+l2": "last1", "sft+l2@last2": "last2", "sft+l2@last3": "last3"}
WITHOUT_SFT = {"kl": "sft+kl", "rkl": "sft+rkl", "l2": "sft+l2"}


# --- teaching toys --------------------------------------------------------------------------


def kl_directions_toy(modes: Sequence[float] = (-2.5, 2.5), width: float = 0.6,
                      steps: int = 600, lr: float = 0.05, start: float = 1.0,
                      grid: int = 481) -> pd.DataFrame:
    """Fit a Gaussian student q to a two-mode teacher p on a 1-D grid, once minimising
    forward KL(p || q) and once reverse KL(q || p), with the study's own loss functions
    (`losses.forward_kl` / `reverse_kl` on the grid as a vocabulary, tau = 1).

    Returns long rows (x, density, curve); the fitted means and widths, and both
    divergences of each fit, are in `frame.attrs["fits"]`.
    """
    x = torch.linspace(-6, 6, grid)
    dx = float(x[1] - x[0])
    comps = torch.stack([-(x - m) ** 2 / (2 * width ** 2) for m in modes])
    teacher_logits = torch.logsumexp(comps, 0)[None]  # log p up to a constant

    def student_logits(mu, log_sigma):
        return (-(x - mu) ** 2 / (2 * torch.exp(log_sigma) ** 2))[None]

    fits, curves = {}, []
    p = torch.softmax(teacher_logits[0], -1)
    curves.append(pd.DataFrame({"x": x.numpy(), "density": (p / dx).numpy(),
                                "curve": "teacher p (two modes)"}))
    for name, loss_fn in (("forward KL(p||q)", losses.forward_kl),
                          ("reverse KL(q||p)", losses.reverse_kl)):
        mu = torch.tensor(start, requires_grad=True)
        log_sigma = torch.tensor(0.0, requires_grad=True)
        opt = torch.optim.Adam([mu, log_sigma], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(student_logits(mu, log_sigma), teacher_logits, tau=1.0)
            loss.backward()
            opt.step()
        with torch.no_grad():
            s = student_logits(mu, log_sigma)
            q = torch.softmax(s[0], -1)
            fits[name] = {"mean": float(mu), "sd": float(torch.exp(log_sigma)),
                          "forward KL": float(losses.forward_kl(s, teacher_logits, tau=1.0)),
                          "reverse KL": float(losses.reverse_kl(s, teacher_logits, tau=1.0))}
        curves.append(pd.DataFrame({"x": x.numpy(), "density": (q / dx).numpy(),
                                    "curve": f"student q, {name}"}))
    frame = pd.concat(curves, ignore_index=True)
    frame.attrs["fits"] = fits
    return frame


def kl_fits_table(frame: pd.DataFrame) -> pd.DataFrame:
    """`kl_directions_toy`'s two fits: the student's mean and sd, and both divergences at
    the fit (nats)."""
    fits = pd.DataFrame(frame.attrs["fits"]).T
    return fits.rename_axis("student fitted by").rename(
        columns={"forward KL": "forward KL (nats)", "reverse KL": "reverse KL (nats)"}).reset_index()


def _pick_record(seed: int = 0) -> dict[str, Any]:
    """A training question with a one-word answer (not yes/no, not a letter, not the
    cell-by-cell caption): its next-token distribution has several plausible tokens."""
    records = instructions.instruction_set(60, turns=1, seed=seed + 7, caption_rate=0.0)
    for rec in records:
        answer = rec["conversations"][1]["value"]
        if answer.lower() not in ("yes", "no") and len(answer) > 1 and " " not in answer:
            return rec
    return records[0]


@torch.no_grad()
def softened_next_token(model, processor, taus: Sequence[float] = (1.0, 2.0, 4.0),
                        top: int = 8, seed: int = 0) -> pd.DataFrame:
    """The teacher's distribution over the first answer token of one training question,
    softened at each temperature: rows (token, tau, probability), the `top` most likely
    tokens at tau = 1 plus "other". The question and answer are in `frame.attrs`."""
    rec = _pick_record(seed)
    batch = ConversationCollator(processor, config=model.config)([rec])
    labels = batch.pop("labels")
    device = next(model.parameters()).device
    model.eval()
    out = model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
    pos = int(losses.kd_mask(labels)[0].nonzero()[0])
    logits = out.logits[0, pos].float().cpu()
    order = torch.argsort(logits, descending=True)[:top]
    names = processor.tokenizer.convert_ids_to_tokens(order.tolist())
    rows = []
    for tau in taus:
        prob = torch.softmax(logits / tau, -1)
        for name, i in zip(names, order.tolist(), strict=True):
            rows.append({"token": name, "tau": tau, "probability": float(prob[i])})
        rows.append({"token": "other", "tau": tau, "probability": float(1 - prob[order].sum())})
    frame = pd.DataFrame(rows)
    frame.attrs.update(question=rec["conversations"][0]["value"].replace("<image>\n", ""),
                       answer=rec["conversations"][1]["value"],
                       entropy={t: float(-(torch.softmax(logits / t, -1)
                                           * torch.log_softmax(logits / t, -1)).sum())
                                for t in taus})
    return frame


def final_norm_gain(model) -> np.ndarray:
    """|gain| per channel of the LLM's final norm (Llama `norm`, Phi `final_layernorm`)."""
    lm = model.model.language_model
    norm = getattr(lm, "norm", None) or getattr(lm, "final_layernorm", None)
    if norm is None or getattr(norm, "weight", None) is None:
        return np.array([])
    return norm.weight.detach().float().abs().cpu().numpy()


@torch.no_grad()
def hidden_rms(model, processor, n: int = 16, seed: int = 0) -> np.ndarray:
    """RMS of the last decoder layer's output (before the final norm) at each answer
    position of `n` training conversations: the scale a post-norm L2 would never see."""
    batch = ConversationCollator(processor, config=model.config)(
        instructions.instruction_set(n, turns=2, seed=seed + 11))
    mask = losses.kd_mask(batch.pop("labels"))
    device = next(model.parameters()).device
    tap = LayerTap(model, [-1])
    try:
        model.eval()
        model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
        h = tap.outputs[-1][mask.to(device)].float()
    finally:
        tap.remove()
    return h.pow(2).mean(-1).sqrt().cpu().numpy()


# --- the recovery grid ----------------------------------------------------------------------


def recipe_with_tau(name: str, tau: float) -> recipes.RecoveryRecipe:
    """A preset (or recipe file) with the chapter's temperature for its logits term."""
    recipe = recipes.get(name)
    return dataclasses.replace(recipe, tau=tau) if recipe.beta > 0 else recipe


def recipe_label(recipe: recipes.RecoveryRecipe) -> str:
    """The recipe's name in the results; a logits-KD recipe at a temperature other than the
    paper's 2.0 is a different condition ("rkl (tau 4)"), never pooled with the preset."""
    if recipe.beta > 0 and recipe.tau != recipes.PRESETS.get(recipe.name, recipe).tau:
        return f"{recipe.name} (tau {recipe.tau:g})"
    return recipe.name


def teacher_mode(summary: dict[str, Any]) -> str:
    """How the recovery saw its teacher: none, cached (hidden states / top-k), or online."""
    recipe = summary["recipe"]
    if not (recipe["beta"] > 0 or recipe["gamma"] > 0):
        return "no teacher"
    if summary.get("teacher_online"):
        return "teacher online"
    return "teacher cached"


def _recovery_rows(rep: recover.RecoveryReport, common: dict[str, Any]) -> list[dict[str, Any]]:
    s = rep.summary
    cache = s.get("teacher_cache") or {}
    extra = {"teacher": teacher_mode(s), "cache_hit": cache.get("hit"),
             "subset_n": s["subset"]["n"], "subset_hash": s["subset_hash"][:16]}
    last = s["losses"][-1] if s.get("losses") else {}
    values = {"wall_time_s": s["wall_time_s"], "step_time_s": s["step_time_s"]["median"],
              "steps": s["steps"], "final_loss": s["final_loss"],
              **{f"final_{k}": v for k, v in last.items() if k not in ("step", "loss")}}
    return [{**common, **extra, "benchmark": "recovery", "metric": k, "value": float(v),
             "ci_low": None, "ci_high": None, "n": s["steps"]} for k, v in values.items()]


def compute(P: KDAblationParams, teacher, processor) -> list[dict[str, Any]]:
    """Teacher, pruned-only and recovered evaluations (+ recovery timings) as tidy rows.

    Within a seed every recipe trains the same pruned student on the same examples; a seed
    changes calibration, subset and training alike (`studylib.study.grid`), so recipes are
    compared paired by seed.
    """
    plan = grid.Grid(grid.product(P.methods, P.ratios),
                     recipes=[recipe_with_tau(n, P.tau) for n in P.recipes],
                     fractions=(P.data_fraction,), seeds=P.seeds, calib_n=P.calib_n,
                     max_steps=P.max_steps, online_check=P.cache_check)
    rows: list[dict[str, Any]] = []
    for s in grid.students(teacher, processor, plan, eval_limit=P.eval_limit, eval_seed=P.seed,
                           batch_size=P.batch_size, cache=grid.cell_cache(P)):
        tags = dict(method=s.method, ratio=s.ratio, recipe="none", data_fraction=None)
        if s.kind != "teacher":
            tags["ratio_achieved"] = s.ratio_achieved
        if s.kind == "recovered":
            tags.update(recipe=recipe_label(s.recipe), data_fraction=s.fraction, tau=P.tau)
        if s.kind == "timing":  # the teacher-online check: timings only
            tags.update(recipe="sft+l2 (online)", data_fraction=s.fraction)
        else:
            rows += [{**r, **tags, "cell": s.cell}
                     for r in eval_rows(s.report, model=P.model, seed=s.seed)]
        if s.recovery:
            rows += _recovery_rows(s.recovery, {"model": P.model, "seed": s.seed, **tags})
    return [{"tau": P.tau, "eval_seed": P.seed, "max_steps": P.max_steps, **r} for r in rows]


# --- chapter tables -------------------------------------------------------------------------


def recovery_frame(run: pd.DataFrame) -> pd.DataFrame:
    """Recovery timings, one row per (method, ratio, recipe, seed)."""
    rec = run[run.benchmark == "recovery"]
    if rec.empty:
        return pd.DataFrame(columns=["method", "ratio", "recipe", "seed", "teacher"])
    wide = rec.pivot_table(index=["method", "ratio", "recipe", "seed", "teacher"],
                           columns="metric", values="value", aggfunc="first").reset_index()
    wide.columns.name = None
    return wide


def cache_speedup(rec: pd.DataFrame) -> pd.DataFrame:
    """Median step time of sft (no teacher), sft+l2 (cached teacher) and sft+l2 with the
    teacher online, per pruned setting, and the ratios the issue asks for."""
    rows = []
    for (method, ratio), g in rec.groupby(["method", "ratio"]):
        t = g.groupby("recipe").step_time_s.median()
        if not {"sft", "sft+l2"} <= set(t.index):
            continue
        row = {"method": method, "ratio": ratio, "sft (s/step)": t["sft"],
               "sft+l2 cached (s/step)": t["sft+l2"],
               "cached / sft": t["sft+l2"] / t["sft"]}
        if "sft+l2 (online)" in t.index:
            row["sft+l2 online (s/step)"] = t["sft+l2 (online)"]
            row["online / cached"] = t["sft+l2 (online)"] / t["sft+l2"]
        rows.append(row)
    return pd.DataFrame(rows)


def nearest_paper_row(table: pd.DataFrame, ratio: float) -> pd.Series | None:
    """The paper table's row at the ratio nearest ours (within 0.1), or None."""
    if table.empty:
        return None
    i = (table.ratio - ratio).abs().idxmin()
    return table.loc[i] if abs(table.ratio[i] - ratio) <= 0.1 else None


def _paper_layer_row(table2: pd.DataFrame | None, ratio: float) -> dict[str, float]:
    """The paper's Bunny layerwise AVG-% at its ratio nearest ours, by our recipe name:
    Table 2's recipes and Table 6's pruned-only model ("none"); {} when none is near."""
    paper = nearest_paper_row(table2, ratio) if table2 is not None else None
    if paper is None:
        return {}
    t6 = paper_table("table6_pruning_only")
    only = t6[(t6.model == TABLE2_MODEL) & (t6.method == "layer")
              & np.isclose(t6.ratio, paper.ratio)].AVG_pct
    return {**{name: float(paper[col]) for col, name in TABLE2_RECIPES.items()},
            **({"none": float(only.iloc[0])} if len(only) else {})}


def recipe_table(ev: pd.DataFrame, order: Sequence[str] = (),
                 table2: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pruned setting and recipe: AVG-% "mean [95% CI]" (seeds pooled), the
    gain over SFT (FT) in points with its CI (paired by seed), and, for layerwise settings,
    the paper's Bunny-3B AVG-% and gain over FT at its nearest ratio (`table2`: Table 2;
    pruned only: Table 6)."""
    e = ev[ev.method != "none"]
    short = SHORT_PAPER_NAME[TABLE2_MODEL]
    paper_col, paper_gain = f"AVG-% (paper {short}, layer)", f"vs FT (paper {short}, layer)"
    rows = []
    for (method, ratio), g in e.groupby(["method", "ratio"]):
        s = evidence.summary(g, by=["recipe"]).set_index("recipe")
        base = g[g.recipe == "sft"]
        paper = _paper_layer_row(table2, ratio) if method == "layer" else {}
        for r in dict.fromkeys(["none", *order, *sorted(s.index)]):
            if r not in s.index:
                continue
            c = evidence.compare(g[g.recipe == r], base) if r not in ("none", "sft") else None
            rows.append({
                "pruning": f"{method} {100 * ratio:g}%",
                "recipe": "pruned only" if r == "none" else r,
                "AVG-% [95% CI] (ours)": show.interval(s.AVG_pct[r], s.ci_low[r], s.ci_high[r]),
                "vs FT, points [95% CI] (ours)": None if c is None else
                show.interval(c["d"], c["lo"], c["hi"], signed=True),
                paper_col: paper.get(r, np.nan),
                paper_gain: paper[r] - paper["sft"] if r in paper and r not in ("none", "sft")
                else np.nan})
    return pd.DataFrame(rows)


def takeaways(ev: pd.DataFrame, rec: pd.DataFrame) -> list[str]:
    """The chapter's conclusions, each computed from the evaluations (see `findings.RULE`
    for "CI-separated")."""
    lines = []
    e = ev[ev.method != "none"]
    for (method, ratio), g in e.groupby(["method", "ratio"]):
        s = evidence.summary(g[g.recipe != "none"], by=["recipe"]).sort_values("AVG_pct")
        if s.empty:
            continue
        best = s.iloc[-1]
        only = g[g.recipe == "none"].AVG_pct.mean()
        head = (f"{method} {ratio:g}: pruned only {only:.1f}%; best recipe {best.recipe} "
                f"{best.AVG_pct:.1f}% [{best.ci_low:.1f}, {best.ci_high:.1f}], "
                f"{int(best.seeds)} seed(s)")
        bits = []
        for a, b, text in (("sft+l2", "sft", "SFT+L2 vs SFT"), ("rkl", "kl", "RKL vs KL"),
                           ("sft+rkl", "rkl", "RKL with vs without SFT"),
                           ("sft+l2", "l2", "L2 with vs without SFT"),
                           ("sft+l2@last2", "sft+l2", "last-2 vs last-1 layers"),
                           ("sft+l2@last3", "sft+l2", "last-3 vs last-1 layers")):
            c = evidence.compare(g[g.recipe == a], g[g.recipe == b])
            if c is None:
                continue
            verdict = {"supported": "better", "contradicted": "worse",
                       "tie": "not CI-separated"}[evidence.ci_side(c)]
            bits.append(f"{text}: {c['d']:+.1f} points [{c['lo']:+.1f}, {c['hi']:+.1f}], "
                        f"{verdict}")
        lines.append(head + ("; " + "; ".join(bits) if bits else "") + ".")
    speed = cache_speedup(rec)
    for r in speed.itertuples(index=False):
        text = (f"Step time at {r.method} {r.ratio:g}: sft {r[2]:.3f} s, sft+l2 with the "
                f"cached teacher {r[3]:.3f} s ({r[4]:.2f}x sft)")
        if len(r) > 5:
            text += f", with the teacher online {r[5]:.3f} s ({r[6]:.2f}x the cached one)"
        lines.append(text + ".")
    return lines


def timing_table(rec: pd.DataFrame) -> pd.DataFrame:
    """Median steps, seconds per step, wall time and final loss per pruned setting, recipe
    and teacher mode."""
    t = rec.groupby(["method", "ratio", "recipe", "teacher"]).agg(
        steps=("steps", "median"), step_s=("step_time_s", "median"),
        wall_s=("wall_time_s", "median"), final_loss=("final_loss", "median")).reset_index()
    return pd.DataFrame({"pruning": [f"{m} {100 * r:g}%" for m, r in zip(t.method, t.ratio,
                                                                       strict=True)],
                         "recipe": t.recipe, "teacher": t.teacher,
                         "steps": t.steps.astype(int), "s / step": t.step_s,
                         "wall time (s)": t.wall_s, "final loss": t.final_loss})
