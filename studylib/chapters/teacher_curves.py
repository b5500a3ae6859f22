"""Chapter 00's learning curves: which skill a teacher learns when, from its training summary.

`studylib.testbed.teachers` scores the validation scenes every `curve_every` optimizer steps of
the LLM stages and keeps the points in `training_summary.json` ("curves"). Drawn per
benchmark on the paper's 0-100 scale, with chance dashed and the stages shaded, they show the
order in which skills emerge, and which stage each one needed (`key_points`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from studylib.chapters.plotting import color
from studylib.evaluation import metrics
from studylib.testbed import shapes, teachers

STAGE_SHADES = {"align": "#f2f2f2", "binding": "#e5eef7", "lookup": "#f7efe5", "instruct": "#ffffff",
                "+lookup": "#f7efe5", "+mix": "#ffffff", "+open": "#eef7e5", "+mme": "#f3e5f7",
                "+spatial": "#e5f7f3"}


def training_summary(checkpoint: str | Path) -> dict | None:
    """The checkpoint's `training_summary.json`, or None (a checkpoint studylib did not train,
    such as a real LLaVA, has none)."""
    if not (Path(checkpoint) / "training_summary.json").is_file():
        return None
    return teachers.read_summary(checkpoint)


def training_table(summary: dict) -> pd.DataFrame:
    """Per stage (a plan's stages as "+<kind>"): optimizer steps, wall time; plus the totals
    (tokens, tokens/s, threads; tokens count the recipe's stages)."""
    stages = teachers.stage_steps(summary)
    rows = [{"stage": stage, "steps": steps, "wall time (s)": wall}
            for stage, steps, wall in stages]
    plans = summary.get("plans", [])
    rows.append({"stage": "total (LLM stages)", "steps": sum(steps for _, steps, _ in stages),
                 "wall time (s)": (summary.get("llm_stage_wall_time_s") or 0)
                 + sum(p["wall_time_s"] for p in plans)})
    table = pd.DataFrame(rows)
    table.attrs["note"] = (f"{summary.get('tokens', 0):,} tokens at "
                           f"{summary.get('tokens_per_s', 0):,}/s on "
                           f"{summary.get('machine', {}).get('threads')} thread(s)")
    return table


def curve_table(summary: dict) -> pd.DataFrame:
    """One row per (step, benchmark): the validation score on the paper's 0-100 scale."""
    points = pd.DataFrame(summary.get("curves", []))
    if points.empty:
        return pd.DataFrame(columns=["stage", "step", "benchmark", "score"])
    long = points.melt(id_vars=["stage", "step"], var_name="benchmark", value_name="score")
    scale = long.benchmark.map(metrics.PAPER_SCALE).fillna(1.0)
    long["score"] = long.score / scale
    return long


def key_points(summary: dict, fraction: float = 0.9) -> pd.DataFrame:
    """Per benchmark: the first step where the curve reaches `fraction` of its final value,
    the final validation score, and the stage it was in (which skill emerges when)."""
    long = curve_table(summary)
    rows = []
    for name, g in long.groupby("benchmark", sort=False):
        g = g.sort_values("step")
        final = g.score.iloc[-1]
        reached = g[g.score >= fraction * final]
        first = reached.iloc[0] if len(reached) else g.iloc[-1]
        rows.append({"benchmark": name, "final": round(final, 1),
                     f"step at {fraction:.0%} of final": int(first.step),
                     "stage": first.stage})
    return pd.DataFrame(rows)


def fig_learning_curves(summary: dict, chance: dict[str, float] | None = None):
    """Validation score vs optimizer step for each benchmark and AVG, stages shaded; where
    the summary has them, multiple choice by generated letter (dotted, beside the headline)
    and the option-lookup probe (its own panel)."""
    long = curve_table(summary)
    probe = "option_lookup" if "option_lookup" in set(long.benchmark) else None
    names = [*shapes.BENCHMARKS, "AVG", *([probe] if probe else [])]
    fig, axes = plt.subplots(2, 4, figsize=(11, 4.6), sharex=True)
    bounds, start = [], 0
    for stage, steps, _ in teachers.stage_steps(summary):
        bounds.append((stage, start, start + steps))
        start += steps
    for ax, name in zip(axes.flat, names, strict=False):
        for stage, lo, hi in bounds:
            ax.axvspan(lo, hi, color=STAGE_SHADES.get(stage, "#ffffff"), zorder=0)
        g = long[long.benchmark == name].sort_values("step")
        ax.plot(g.step, g.score, marker="o", ms=3, color=color("this study"))
        letters = long[long.benchmark == f"{name} (letter)"].sort_values("step")
        if len(letters):
            ax.plot(letters.step, letters.score, ls=":", color=color("this study"),
                    label="by letter")
            ax.legend(fontsize=7, loc="upper left")
        level = 100 / len(shapes.LETTERS) if name == probe else (chance or {}).get(name)
        if level is not None:
            ax.axhline(level / metrics.PAPER_SCALE.get(name, 1.0), ls="--", lw=1,
                       color=color("chance"), label="chance")
        ax.set_title("option lookup (letters)" if name == probe else name, fontsize=10)
        ax.set_ylim(0, 100)
    handles = [plt.Rectangle((0, 0), 1, 1, color=STAGE_SHADES.get(s, "#ffffff"), ec="#999999")
               for s, _, _ in bounds]
    if probe:
        fig.legend(handles, [s for s, _, _ in bounds], title="stage", loc="center right")
        fig.subplots_adjust(right=0.88)
    else:
        axes.flat[-1].axis("off")
        axes.flat[-1].legend(handles, [s for s, _, _ in bounds], title="stage", loc="center")
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle(f"{summary.get('arch', 'teacher')}: validation scores during training "
                 "(paper scale; dashed: chance)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.88 if probe else 1, 1))
    return fig


def multiple_choice_formulation(summary: dict) -> str:
    """How the curves score SQA and MMMU: "cloze" for teachers trained since curves also
    keep the letter scores ("SQA (letter)"), "letter" for those trained before."""
    points = summary.get("curves", [])
    return "cloze" if any("SQA (letter)" in p for p in points) else "letter"
