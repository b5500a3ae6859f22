"""Chapter 08 (what compression buys): parameters, FLOPs, memory and prefill latency.

The paper's Tables 1 and 7, measured three ways by `compute()`: the real architectures on the
meta device (`measure.arch_table`, as `studylib measure --arch`, beside the paper via
`beside_paper`); our teachers pruned for real by the study's one loop (`grid.students`); and
the prefill latency of each pruned teacher against its teacher, timed with
`torch.utils.benchmark` and **interleaved** (each round times both once, the order reversed
every other round, so drift in the machine's load hits both alike).

The latency is judged by the **share** of the FLOPs cut that the time cut achieves,
(1 - t_pruned/t_teacher) / (1 - F_pruned/F_teacher): 1 when time follows FLOPs. Below
`OVERHEAD_SHARE` a batch size is *overhead-bound*: part of each forward (dispatch, kernel
launches, ops whose time is not set by FLOPs) does not shrink. Under t = a + b * F the share
is 1 - a / t_teacher, so `regimes` fits the fixed cost a beside the share: the "why".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from studylib import models
from studylib.analysis import paper
from studylib.analysis.resources import beside_paper
from studylib.evaluation import measure
from studylib.evaluation.inputs import example_inputs
from studylib.study import grid

OVERHEAD_SHARE = 0.9  # a share of the FLOPs cut below this: the batch size is overhead-bound
RESOURCE_METRICS = ("params", "llm_params", "tflops", "memory_mib", "weights_mib")
METHOD_ORDER = {"none": 0, "width": 1, "layer": 2}


# --- measuring ------------------------------------------------------------------------------


def interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int, min_run_time: float = 0.05,
                threads: int | None = None) -> dict[str, Any]:
    """Time callables round-robin with `torch.utils.benchmark.Timer`.

    Each callable is first warmed up and timed once, which sets its `number` of calls per
    timed run (enough to last `min_run_time`). Each of `rounds` rounds then times every
    callable once (`Timer.timeit(number)`, which warms up again after the switch), in
    reversed order every other round. Returns seconds per call, one value per round and
    name (`times`), the calls per timed run (`number`) and the order they ran in (`order`).
    """
    from torch.utils import benchmark

    threads = threads or torch.get_num_threads()
    timers = {name: benchmark.Timer("fn()", globals={"fn": fn}, num_threads=threads,
                                    description=name) for name, fn in fns.items()}
    number = {name: max(1, math.ceil(min_run_time / max(t.timeit(1).median, 1e-9)))
              for name, t in timers.items()}
    names, order = list(fns), []
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timers[name].timeit(number[name]).median)
            order.append(name)
    return {"times": times, "number": number, "order": order}


def prefill(model, inputs: Mapping[str, torch.Tensor]) -> Callable[[], Any]:
    """One prefill forward without a KV cache: the forward `measure.count_flops` counts."""
    def run():
        with torch.inference_mode():
            return model(**inputs, use_cache=False)
    return run


def flops_share(time_ratio, flops_ratio):
    """(1 - t_pruned/t_teacher) / (1 - F_pruned/F_teacher): the share of the FLOPs cut the
    measured time cut achieves (1 = time follows FLOPs); NaN where no FLOPs were cut."""
    t, f = np.asarray(time_ratio, float), np.asarray(flops_ratio, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(f < 1, (1 - t) / (1 - f), np.nan)
    return float(share) if share.ndim == 0 else share


def _row(arch, method, ratio, achieved, metric, value, **extra) -> dict[str, Any]:
    return {"model": arch, "arch": arch, "method": method, "ratio": float(ratio),
            "ratio_achieved": round(float(achieved), 4), "recipe": "none",
            "benchmark": "resources", "metric": metric, "value": float(value),
            "ci_low": None, "ci_high": None, **extra}


def _resource_rows(r: dict[str, Any], **extra) -> list[dict[str, Any]]:
    """A `measure.arch_row`-shaped dict as tidy rows."""
    values = {"params": r["params"], "llm_params": r["llm_params_b"] * 1e9, "tflops": r["tflops"],
              "memory_mib": r["memory_mib"], "weights_mib": r["weights_mib"]}
    return [_row(r["arch"], r["method"], r["ratio"], r["decoder_ratio"], m, v, **extra)
            for m, v in values.items()]


def measured(model, arch: str, method: str, ratio: float, achieved: float,
             text_tokens: int) -> dict[str, Any]:
    """`measure.arch_row`'s numbers for a model in memory, by `measure.measure` (untimed)."""
    m = measure.measure(model, text_tokens=text_tokens, timing=False)
    return {"arch": arch, "method": method, "ratio": ratio, "decoder_ratio": achieved,
            "params": m["parameters"]["total"], "llm_params_b": m["parameters"]["llm"] / 1e9,
            "tflops": m["tflops"], "memory_mib": m["memory"]["peak_mib"],
            "weights_mib": m["memory"]["parameters_mib"]}


def latency_rows(teacher, pruned, tags: tuple, P) -> list[dict[str, Any]]:
    """Teacher and pruned prefill, interleaved, per batch; tags: (arch, method, ratio, achieved)."""
    rows = []
    for batch in P.batch_sizes:
        inputs = example_inputs(teacher, P.text_tokens, batch)
        got = interleaved({"teacher": prefill(teacher, inputs), "pruned": prefill(pruned, inputs)},
                          P.repeats, P.min_run_time)
        t = {k: np.asarray(v) for k, v in got["times"].items()}
        series = {("teacher", "ms"): t["teacher"] * 1e3, ("pruned", "ms"): t["pruned"] * 1e3,
                  ("pruned", "paired_ratio"): t["pruned"] / t["teacher"]}
        for (variant, unit), v in series.items():
            q1, q3 = np.percentile(v, [25, 75])
            common = dict(batch=batch, variant=variant, n=len(v), number=got["number"][variant],
                          q1=float(q1), q3=float(q3), text_tokens=P.text_tokens)
            stats = {"paired_ratio": np.median(v)} if unit != "ms" else {
                "min_ms": v.min(), "median_ms": np.median(v)}
            rows += [_row(*tags, f"prefill_{k}", x, **common) for k, x in stats.items()]
    return rows


def compute(P, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The run's rows: the real architectures (meta device), then each teacher and its
    pruned models (params, FLOPs, memory) with their interleaved prefill latency."""
    say = log or (lambda _msg: None)
    rows: list[dict[str, Any]] = []
    for name in P.real_archs:
        t0 = time.perf_counter()
        table = measure.arch_table(name, ratios=(0.0, *P.ratios), methods=P.methods,
                                   text_tokens=P.text_tokens)
        for r in table:
            rows += _resource_rows(r, measured_on="meta", text_tokens=P.text_tokens)
        rows.append(_row(name, "none", 0, 0, "wall_s", time.perf_counter() - t0, part="meta"))
    for arch in P.archs:
        teacher, processor = models.load(P.checkpoint_dir / arch, dtype=P.dtype,
                                         device=P.resolved_device())
        device, lat_s = next(teacher.eval().parameters()).device.type, 0.0
        plan = grid.Grid(grid.product(P.methods, P.ratios), seeds=(P.seed,), calib_n=P.calib_n)
        for s in grid.students(teacher, processor, plan, evaluated=False, log=None):
            tags = (arch, s.method, s.ratio, s.ratio_achieved)
            rows += _resource_rows(measured(s.model.eval(), *tags, P.text_tokens),
                                   measured_on=device, text_tokens=P.text_tokens)
            if s.kind == "pruned":
                t0 = time.perf_counter()
                rows += latency_rows(teacher, s.model, tags, P)
                lat_s += time.perf_counter() - t0
                say(f"{arch} {s.method} {s.ratio:g}: latency {time.perf_counter() - t0:.0f} s")
        rows.append(_row(arch, "none", 0, 0, "wall_s", lat_s, part="latency",
                         threads=torch.get_num_threads()))
    return rows


# --- tables ---------------------------------------------------------------------------------


def _ordered(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    key = lambda col: col.map(METHOD_ORDER) if col.name == "method" else col  # noqa: E731
    return frame.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def resource_frame(run: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, method, ratio) with the resource metrics as columns."""
    res = run[run.metric.isin(RESOURCE_METRICS) & (run.benchmark == "resources")]
    wide = res.pivot_table(index=["arch", "method", "ratio", "ratio_achieved"], columns="metric",
                           values="value", sort=False).reset_index()
    wide.columns.name = None
    return _ordered(wide, ["method", "ratio"])


def _ratio_label(ratio: float, achieved: float) -> str:
    """'0.30' or, where the achieved share differs (whole layers), '0.30 (0.33)'."""
    return f"{ratio:.2f}" if abs(ratio - achieved) < 0.005 else f"{ratio:.2f} ({achieved:.2f})"


def table1_7(run: pd.DataFrame, arch: str) -> pd.DataFrame:
    """Paper Tables 1/7 for one real architecture: ours (meta device) beside the paper's."""
    rows, wide = [], resource_frame(run)
    for r in wide[wide.arch == arch].itertuples(index=False):
        side = beside_paper({**r._asdict(), "params_b": r.params / 1e9,
                             "llm_params_b": r.llm_params / 1e9, "decoder_ratio": r.ratio_achieved})
        rows.append({"method": r.method, "ratio (achieved)": _ratio_label(r.ratio, r.ratio_achieved),
                     "params (B)": r.params / 1e9, "TFLOPs": r.tflops,
                     "paper TFLOPs": side["paper_tflops"], "memory (MiB)": r.memory_mib,
                     "paper memory (MiB)": side["paper_memory_mib"]})
    return pd.DataFrame(rows).astype({"paper TFLOPs": float, "paper memory (MiB)": float})


def _paper_pct(model: str | None, method: str, ratio: float) -> tuple[float, float]:
    """The paper's (FLOPs %, memory %) of its unpruned model at one cell (NaN: no cell)."""
    cells = [paper.paper_resources(model, m, r) if model else (None, None)
             for m, r in (("none", 0.0), (method, ratio))]
    (mem0, fl0), (mem, fl) = cells
    return (math.nan, math.nan) if None in (mem0, fl0, mem, fl) else \
        (100 * fl / fl0, 100 * mem / mem0)


def relative_frame(run: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and memory as % of the unpruned model, ours and the paper's, per arch and cell."""
    out = []
    for arch, g in resource_frame(run).groupby("arch", sort=False):
        base, model = g[g.method == "none"].iloc[0], paper.PAPER_MODEL.get(arch)
        for r in g.itertuples(index=False):
            pf, pm = _paper_pct(model, r.method, r.ratio)
            out.append({**r._asdict(), "paper_model": model,
                        "flops_pct": 100 * r.tflops / base.tflops,
                        "memory_pct": 100 * r.memory_mib / base.memory_mib,
                        "paper_flops_pct": pf, "paper_memory_pct": pm})
    return pd.DataFrame(out)


def teacher_table(run: pd.DataFrame, arch: str) -> pd.DataFrame:
    """A toy teacher's Tables 1/7 as % of its unpruned self, beside the paper's model's."""
    rel = relative_frame(run)
    rel = rel[rel.arch == arch].reset_index(drop=True)
    short = paper.SHORT_PAPER_NAME.get(rel.paper_model.iloc[0], "paper") if len(rel) else "paper"
    labels = [_ratio_label(r, a) for r, a in zip(rel.ratio, rel.ratio_achieved, strict=True)]
    return pd.DataFrame({"method": rel.method, "ratio (achieved)": labels,
                         "params (M)": rel.params / 1e6, "FLOPs (%)": rel.flops_pct,
                         f"{short} FLOPs (%)": rel.paper_flops_pct, "memory (%)": rel.memory_pct,
                         f"{short} memory (%)": rel.paper_memory_pct})


def latency_pairs(run: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, method, ratio, batch): prefill ms, time and FLOPs ratios, shares of the cut."""
    keys = ["arch", "method", "ratio", "batch"]
    lat = run[run.metric.isin(["prefill_min_ms", "prefill_median_ms", "prefill_paired_ratio"])]
    if lat.empty:
        return pd.DataFrame(columns=[*keys, "flops_ratio", "ratio_min", "share_min"])
    w = lat.pivot_table(index=keys, columns=["variant", "metric"], values="value", sort=False)
    w.columns = [f"{v}_{m.removeprefix('prefill_').removesuffix('_ms')}" for v, m in w.columns]
    w = w.reset_index().rename(columns={"pruned_paired_ratio": "ratio_paired"})
    res = resource_frame(run)
    flops = res.set_index(["arch", "method", "ratio"]).tflops
    base = res[res.method == "none"].set_index("arch").tflops
    w["flops_ratio"] = [flops[k] / base[k[0]] for k in zip(w.arch, w.method, w.ratio, strict=True)]
    for stat in ("min", "median"):
        w[f"ratio_{stat}"] = w[f"pruned_{stat}"] / w[f"teacher_{stat}"]
        w[f"share_{stat}"] = flops_share(w[f"ratio_{stat}"], w.flops_ratio)
    return _ordered(w.astype({"batch": int}), keys)


def latency_table(pairs: pd.DataFrame, arch: str) -> pd.DataFrame:
    """The detail for one teacher: each pruned model at each batch size."""
    p = pairs[pairs.arch == arch]
    both = [[f"{x:.2f} / {y:.2f}" for x, y in zip(p[f"{v}_min"], p[f"{v}_median"], strict=True)]
            for v in ("teacher", "pruned")]
    return pd.DataFrame({
        "pruned model, batch": [f"{m} {r:.0%}, batch {b}" for m, r, b in
                                zip(p.method, p.ratio, p.batch, strict=True)],
        "teacher ms (min / median)": both[0], "pruned ms (min / median)": both[1],
        "time ratio, min": p.ratio_min, "time ratio, median": p.ratio_median,
        "FLOPs ratio": p.flops_ratio, "share of FLOPs cut": p.share_min}).reset_index(drop=True)


REGIME_COLUMNS = ["arch", "batch", "models", "share", "share_paired", "share_lo", "share_hi",
                  "teacher_ms", "fixed_ms", "fixed_pct", "regime"]


def regimes(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, batch): the share of the FLOPs cut achieved, pooled over the pruned models
    (least-squares slope of 1 - time ratio on 1 - FLOPs ratio, through the origin) from the
    minimum times (the regime's) and from the per-round paired ratios (robust to drift between
    rounds), its range per model, and the fixed cost a of t = a + b * F fitted over the
    teacher's and the pruned models' minimum times (F in units of the teacher's FLOPs)."""
    out = []
    for (arch, batch), g in pairs.groupby(["arch", "batch"], sort=False):
        x = 1 - g.flops_ratio.to_numpy()
        pooled, paired = (float((x * (1 - g[c])).sum() / (x * x).sum())
                          for c in ("ratio_min", "ratio_paired"))
        flops = np.r_[np.ones(len(g)), g.flops_ratio.to_numpy()]
        t = np.r_[g.teacher_min.to_numpy(), g.pruned_min.to_numpy()]
        a = np.polyfit(flops, t, 1)[1] if np.ptp(flops) > 0 else np.nan
        teacher = float(np.median(g.teacher_min))
        out.append({"arch": arch, "batch": int(batch), "models": len(g), "share": pooled,
                    "share_paired": paired,
                    "share_lo": float(g.share_min.min()), "share_hi": float(g.share_min.max()),
                    "teacher_ms": teacher, "fixed_ms": float(a), "fixed_pct": 100 * a / teacher,
                    "regime": "overhead-bound" if pooled < OVERHEAD_SHARE else "compute-bound"})
    return pd.DataFrame(out, columns=REGIME_COLUMNS)


def regime_table(reg: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "teacher, batch": [f"{a}, {b}" for a, b in zip(reg.arch, reg.batch, strict=True)],
        "teacher ms (min)": reg.teacher_ms, "share, min times": reg.share,
        "share, per-round ratios": reg.share_paired,
        "share per model": [f"{lo:.2f}" if n == 1 else f"{lo:.2f} to {hi:.2f}" for lo, hi, n in
                            zip(reg.share_lo, reg.share_hi, reg.models, strict=True)],
        "fixed cost, ms (% of teacher)": [f"{a:.2f} ({p:.0f}%)" for a, p in
                                          zip(reg.fixed_ms, reg.fixed_pct, strict=True)],
        "regime": reg.regime})


# --- takeaways ------------------------------------------------------------------------------


def takeaways(run: pd.DataFrame, reg: pd.DataFrame) -> list[str]:
    """The chapter's conclusions, computed from its rows."""
    lines, rel = [], relative_frame(run)
    for arch in [a for a in dict.fromkeys(rel.arch) if a in measure.ARCHS]:
        t = table1_7(run, arch)
        flops, mem = (t.TFLOPs / t["paper TFLOPs"] - 1).abs(), (
            t["memory (MiB)"] / t["paper memory (MiB)"] - 1).abs()
        lines.append(f"{paper.PAPER_MODEL[arch]} (meta device, {t['params (B)'].iloc[0]:.2f}B "
                     f"parameters): {t.TFLOPs.iloc[0]:.2f} TFLOPs unpruned against the paper's "
                     f"{t['paper TFLOPs'].iloc[0]:.2f}; over the grid our FLOPs differ from the "
                     f"paper's by at most {100 * flops.max():.0f}%, memory by at most "
                     f"{100 * mem.max():.0f}%.")
    toys = rel[~rel.arch.isin(measure.ARCHS) & (rel.method != "none")]
    for r in toys[toys.ratio == toys.ratio.max()].itertuples(index=False):
        cite = "" if math.isnan(r.paper_flops_pct) else \
            f" (paper, {paper.SHORT_PAPER_NAME.get(r.paper_model)}: {r.paper_flops_pct:.0f}%)"
        lines.append(f"{r.arch}: {r.method} pruning at {r.ratio:.0%} leaves {r.flops_pct:.0f}% "
                     f"of the FLOPs{cite} and {r.memory_pct:.0f}% of the peak memory.")
    for r in reg.itertuples(index=False):
        line = (f"{r.arch}, batch {r.batch}: the prefill time cut is {r.share:.3f} of the FLOPs "
                f"cut ({r.models} pruned model{'s' * (r.models > 1)}): {r.regime}.")
        if (r.share < OVERHEAD_SHARE) != (r.share_paired < OVERHEAD_SHARE):
            line += (f" Borderline: from the per-round paired ratios the share is "
                     f"{r.share_paired:.3f}, on the other side of {OVERHEAD_SHARE}.")
        if r.share < OVERHEAD_SHARE:
            line += (f" A fixed {r.fixed_ms:.2f} ms of the teacher's {r.teacher_ms:.2f} ms "
                     f"({r.fixed_pct:.0f}%) does not shrink with the FLOPs: per-call framework "
                     "overhead and operations whose time is not set by their FLOPs.")
        elif r.share > 2 - OVERHEAD_SHARE:
            line += (f" Time falls faster than the FLOPs (fitted fixed cost {r.fixed_ms:.2f} ms): "
                     "the smaller matrices run at more FLOPs per second on this machine.")
        lines.append(line)
    big = reg[reg.batch >= 8]
    missed = [f"{a} batch {b}" for a, b, s in zip(big.arch, big.batch, big.share, strict=True)
              if s < OVERHEAD_SHARE]
    if len(big):
        lines.append(f"The aim, at batch >= 8 a prefill time cut of >= {OVERHEAD_SHARE:.0%} of "
                     f"the FLOPs cut, is met in {len(big) - len(missed)} of {len(big)} (teacher, "
                     f"batch) cases" + (f"; not at {', '.join(missed)}." if missed else "."))
    return lines
