"""Chapter 07 (int8 on top of pruning): the paper's Table 9 on the toy models.

The paper's Table 9 loads three LLaVA models in fp16 and in LLM.int8 -- the teacher, a
layerwise-pruned 15% model and a widthwise-pruned 30% model, both recovered by FT + L2 --
and reports weight memory, latency and the six benchmarks for each. `quant_table()` builds
the same six models from a toy teacher (`prune.prune`, then `recover.recover` with the
`sft+l2` recipe, then `quantize.quantize_int8`) and returns tidy rows for the results table:

- **memory**: the weights' bytes, measured from the tensors (`quantize.weight_bytes`), and
  `weights_fp16_mib` with every float tensor counted at 2 bytes: the paper's baseline is
  fp16 (its int8 model keeps the rest in fp16), while the CPU testbed computes in fp32;
- **latency**: batch 1, one image + `text_tokens` prompt tokens: prefill and per-token
  decode, all six models timed round-robin, float and int8 of one model back to back in
  alternating order, so each round's int8/float ratio sees one machine load; medians and
  interquartile ranges over the rounds;
- **scores**: `evaluate.evaluate` on the same seeded items for all six.

int8 rows are recorded under their own method name (`none-int8`, `layer-int8`,
`width-int8`) with `precision: int8`, so chapters that pool conditions never mistake a
quantized model for the float one (chapter 01 does the same with its random baselines).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from studylib.analysis import evidence
from studylib.analysis.paper import SHORT_PAPER_NAME, TABLE9_MODEL
from studylib.chapters import plotting
from studylib.chapters.generalization import pruning_label
from studylib.compress import prune, quantize
from studylib.errors import StudyError
from studylib.evaluation import evaluate, latency, metrics
from studylib.results import eval_rows
from studylib.study import grid

DEFAULT_STUDENTS = (("layer", 0.15), ("width", 0.30))  # the paper's Table 9 rows
VARIANT_ORDER = ("teacher", "layer", "width")


# --- the grid -------------------------------------------------------------------------------


def check_students(students: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    out = []
    for method, ratio in students:
        if method not in prune.METHODS:
            raise StudyError(f"unknown pruning method {method!r}; choose from "
                             f"{', '.join(prune.METHODS)}")
        out.append((method, prune.check_ratio(ratio)))
    return out


def build_students(teacher, processor, students=DEFAULT_STUDENTS, *, recipe: str = "sft+l2",
                   data_fraction: float = 0.1, max_steps: int = 0, calib_n: int = 10,
                   seed: int = 0, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Prune a copy of the teacher per (method, ratio) and recover it (the study's grid,
    not evaluated: every model is evaluated in fp32 and int8 below); returns one dict per
    variant (the teacher first) with its float model and how it was made."""
    plan = grid.Grid(check_students(students), recipes=(recipe,), fractions=(data_fraction,),
                     seeds=(seed,), calib_n=calib_n, max_steps=max_steps)
    variants = []
    for s in grid.students(teacher, processor, plan, evaluated=False, log=log):
        if s.kind == "teacher":
            variants.append({"variant": "teacher", "method": "none", "ratio": 0.0,
                             "ratio_achieved": 0.0, "recipe": "none", "data_fraction": None,
                             "model": teacher})
        elif s.kind == "recovered":
            variants.append({"variant": s.method, "method": s.method, "ratio": s.ratio,
                             "ratio_achieved": round(s.ratio_achieved, 4), "recipe": recipe,
                             "data_fraction": data_fraction, "model": s.model.eval(),
                             "steps": s.recovery["steps"],
                             "recover_s": s.recovery["wall_time_s"]})
    return variants


def compute(P, teacher, processor) -> list[dict[str, Any]]:
    """The run's rows (`quant_table` with the chapter's params)."""
    return quant_table(teacher, processor, model_name=P.model, students=P.student_pairs,
                       recipe=P.recipe, data_fraction=P.data_fraction, max_steps=P.max_steps,
                       calib_n=P.calib_n, seed=P.seed, limit=P.eval_limit,
                       batch_size=P.batch_size, repeats=P.repeats, text_tokens=P.text_tokens,
                       decode_tokens=P.decode_tokens, lm_head=P.lm_head)


def memory_demo(teacher, lm_head: bool = False) -> pd.DataFrame:
    """The teacher's weight memory by part, fp32 and with its LLM in int8."""
    _, demo = quantize.quantize_int8(copy.deepcopy(teacher).cpu(), "torch", lm_head=lm_head)
    parts = {"vision": "vision tower", "projector": "projector", "llm": "LLM", "total": "total"}
    fp32, int8 = (np.array([b[k] for k in parts]) / quantize.MIB
                  for b in (demo.bytes_before, demo.bytes_after))
    return pd.DataFrame({"part": list(parts.values()), "fp32 (MiB)": fp32,
                         "LLM in int8 (MiB)": int8, "int8 / fp32": int8 / fp32})


def same_answers(run: pd.DataFrame) -> pd.DataFrame:
    """Share of items (%) whose int8 answer is the fp32 answer: one row per benchmark, one
    column per model."""
    same = run[(run.metric == "same_answer_pct") & (run.benchmark != "all")]
    models = {v: model_label(v, g.ratio.iloc[0]) for v, g in same.groupby("variant")}
    table = same.pivot_table(index="benchmark", columns="variant", values="value", sort=False)
    table = table[[v for v in VARIANT_ORDER if v in table.columns]].rename(columns=models)
    return table.rename_axis(columns=None).reset_index()


def quant_table(teacher, processor, *, model_name: str, students=DEFAULT_STUDENTS,
                recipe: str = "sft+l2", data_fraction: float = 0.1, max_steps: int = 0,
                calib_n: int = 10, seed: int = 0, limit: int | None = None,
                batch_size: int = 64, repeats: int = 20, text_tokens: int = 50,
                decode_tokens: int = 8, lm_head: bool = False,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Table 9's grid as tidy rows: {teacher, pruned + recovered students} x {fp32, int8},
    each with weight memory, batch-1 latency and benchmark scores (see the module doc)."""
    variants = build_students(teacher, processor, students, recipe=recipe,
                              data_fraction=data_fraction, max_steps=max_steps,
                              calib_n=calib_n, seed=seed, log=log)
    rows: list[dict[str, Any]] = []
    pairs = {}
    for v in variants:
        fp32 = v.pop("model").float().cpu().eval()
        int8, rep = quantize.quantize_int8(copy.deepcopy(fp32), "torch", lm_head=lm_head)
        pairs[v["variant"]] = (fp32, int8)
        tags = {k: v[k] for k in ("variant", "ratio", "ratio_achieved", "recipe",
                                  "data_fraction")}
        for precision, model in (("fp32", fp32), ("int8", int8)):
            before = quantize.weight_bytes(model)
            # float parts counted at 2 bytes: the paper's fp16 baseline and fp16 + int8 model
            half = quantize.weight_bytes(model, float_bytes=2)["total"]
            extra = {"weights_fp16_mib": half / quantize.MIB}
            if precision == "int8":
                extra.update(memory_ratio=rep.ratio, quantize_s=rep.wall_time_s)
            if precision == "fp32" and "steps" in v:
                extra.update(recovery_steps=v["steps"], recovery_s=v["recover_s"])
            values = {"weights_mib": before["total"] / quantize.MIB,
                      "weights_llm_mib": before["llm"] / quantize.MIB, **extra}
            rows += [_row(model_name, seed, v["method"], precision, tags, metric, value)
                     for metric, value in values.items()]
        log(f"{v['variant']:>7}: weights {rep.bytes_before['total'] / quantize.MIB:.3f} -> "
            f"{rep.bytes_after['total'] / quantize.MIB:.3f} MiB ({rep.ratio:.3f}x)")
    t0 = time.perf_counter()
    flat = {f"{name}/{p}": m for name, (f, q) in pairs.items()
            for p, m in (("fp32", f), ("int8", q))}
    lat = latency.paired_latency(flat, text_tokens, repeats, decode_tokens,
                         reference={f"{name}/int8": f"{name}/fp32" for name in pairs})
    log(f"latency: {repeats} rounds x {len(flat)} models ({time.perf_counter() - t0:.0f} s)")
    for v in variants:
        tags = {k: v[k] for k in ("variant", "ratio", "ratio_achieved", "recipe",
                                  "data_fraction")}
        preds = {}
        for precision in ("fp32", "int8"):
            res = lat[f"{v['variant']}/{precision}"]
            for phase, metric in (("prefill", "prefill_ms"), ("decode_per_token", "decode_ms")):
                s = res[phase]
                rows.append(_row(model_name, seed, v["method"], precision, tags, metric,
                                 s["median_ms"], iqr=s["iqr_ms"], n=s["n"],
                                 text_tokens=text_tokens))
                if f"{phase}_ratio" in res:
                    r = res[f"{phase}_ratio"]
                    rows.append(_row(model_name, seed, v["method"], precision, tags,
                                     metric.replace("_ms", "_ratio"), r["median"], q1=r["q1"],
                                     q3=r["q3"], n=r["n"], text_tokens=text_tokens))
            m = flat[f"{v['variant']}/{precision}"]
            ev = evaluate.evaluate(m, processor, limit=limit, seed=seed, batch_size=batch_size,
                                   progress=False)
            method = v["method"] if precision == "fp32" else f"{v['method']}-int8"
            rows += [{**r, **tags, "method": method, "precision": precision,
                      "eval_s": round(ev.wall_time, 2)}
                     for r in eval_rows(ev, model=model_name, seed=seed)]
            preds[precision] = ev.items
            log(f"{v['variant']:>7} {precision}: AVG {ev.summary().get('AVG', np.nan):5.2f} "
                f"prefill {res['prefill']['median_ms']:.2f} ms, decode "
                f"{res['decode_per_token']['median_ms']:.2f} ms/token, eval {ev.wall_time:.0f} s")
        rows += _agreement_rows(preds["fp32"], preds["int8"], model_name, seed, v["method"],
                                tags)
    return rows


def _agreement_rows(fp32: pd.DataFrame, int8: pd.DataFrame, model_name, seed, method,
                    tags) -> list[dict[str, Any]]:
    """Share of items (%) whose int8 answer is the fp32 answer, per benchmark and overall:
    a paired measure of what quantization changes, far more sensitive than the scores."""
    same = fp32.prediction.to_numpy() == int8.prediction.to_numpy()
    frame = pd.DataFrame({"benchmark": fp32.benchmark.to_numpy(), "same": same})
    groups = [*frame.groupby("benchmark", sort=False), ("all", frame)]
    return [_row(model_name, seed, method, "int8", tags, "same_answer_pct",
                 100 * g.same.mean(), n=len(g)) | {"benchmark": b} for b, g in groups]


def _row(model_name, seed, method, precision, tags, metric, value, **extra) -> dict[str, Any]:
    return {"model": model_name, "seed": seed, **tags,
            "method": method if precision == "fp32" else f"{method}-int8",
            "precision": precision, "benchmark": "resources", "metric": metric,
            "value": float(value), "ci_low": None, "ci_high": None, **extra}


# --- tables ---------------------------------------------------------------------------------


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    key = frame.variant.map({v: i for i, v in enumerate(VARIANT_ORDER)}).fillna(9)
    return frame.assign(_k=key).sort_values(["_k", "precision"], ascending=[True, False]) \
        .drop(columns="_k").reset_index(drop=True)


def table9(run: pd.DataFrame) -> pd.DataFrame:
    """Our Table 9: one row per (variant, precision) with the requested and achieved ratio,
    memory, latency, scores, AVG and AVG-% (of the fp32 teacher, same items)."""
    res = run[run.benchmark == "resources"]
    scores = run[(run.metric == "score") & run.benchmark.isin(metrics.PAPER_KEYS)]
    out = []
    for (variant, precision), g in scores.groupby(["variant", "precision"], sort=False):
        r = res[(res.variant == variant) & (res.precision == precision)].set_index("metric")
        vals = dict(zip(g.benchmark, g.value.astype(float), strict=True))
        row = {"variant": variant, "precision": precision,
               "requested": float(g.ratio.iloc[0]), "ratio": float(g.ratio_achieved.iloc[0]),
               **{k: r.value.get(m, np.nan) for k, m in (
                   ("memory_mib", "weights_mib"), ("prefill_ms", "prefill_ms"),
                   ("decode_ms", "decode_ms"), ("prefill_x", "prefill_ratio"),
                   ("decode_x", "decode_ratio"))},
               **{f"{k}_iqr": r["iqr"].get(f"{k}_ms", np.nan) for k in ("prefill", "decode")},
               **{b: vals.get(b, np.nan) for b in metrics.PAPER_KEYS},
               "AVG": metrics.average(vals)}
        out.append(row)
    t = _order(pd.DataFrame(out))
    teacher = t[(t.variant == "teacher") & (t.precision == "fp32")].AVG
    t["AVG-%"] = metrics.pct_of_teacher(t.AVG, teacher.iloc[0] if len(teacher) else np.nan)
    return t


def paper_table9(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 9 in the same layout (fp16 / int8 rows, variant by ratio)."""
    t = paper.copy()
    t["precision"] = np.where(t.model.str.endswith(".int8"), "int8", "fp16")
    t["variant"] = t.ratio.map({0.0: "teacher", 0.15: "layer", 0.30: "width"})
    t["requested"] = t.ratio
    return _order(t[["variant", "precision", "requested", "ratio", "memory_mib", "latency_ms",
                     "latency_sd_ms", *metrics.PAPER_KEYS, "AVG"]])


def model_label(variant: str, requested: float, achieved: float = np.nan) -> str:
    """A model in reader words: "teacher", "widthwise 30%" (with the share removed)."""
    return "teacher" if variant == "teacher" else pruning_label(variant, requested, achieved)


PAPER = "(paper, Table 9)"
RATIO_COLUMNS = ["model", "memory int8/fp32 (ours)", "memory int8/fp16 (ours)",
                 f"memory int8/fp16 {PAPER}", "prefill int8/fp32 (ours)",
                 "decode int8/fp32 (ours)", f"latency int8/fp16 {PAPER}"]
CHANGE_COLUMNS = ["model", "ΔAVG (ours)", "95% CI (ours)", f"ΔAVG {PAPER}", "same answers %"]


def beside(ours: pd.DataFrame, paper: pd.DataFrame, run: pd.DataFrame | None = None):
    """What int8 does to each model, ours beside the paper's same model, shown as two tables
    (`RATIO_COLUMNS`, `CHANGE_COLUMNS`): memory and latency as int8/float, the change of AVG
    (its 95% CI when `run` is given) and the share of unchanged answers."""
    ev = evidence.evaluations(run) if run is not None else pd.DataFrame()
    rows = []
    for variant in VARIANT_ORDER:
        o = ours[ours.variant == variant].set_index("precision")
        if o.empty:
            continue
        p = paper[(paper.variant == variant)  # the paper's same method and requested ratio
                  & np.isclose(paper.ratio, o.requested.iloc[0])].set_index("precision")
        half = _metric(run, variant, "weights_fp16_mib")
        row = {"model": model_label(variant, o.requested.iloc[0], o.ratio.iloc[0]),
               "variant": variant, "requested": o.requested.iloc[0], "ratio": o.ratio.iloc[0],
               "memory int8/fp32 (ours)": o.memory_mib["int8"] / o.memory_mib["fp32"],
               "memory int8/fp16 (ours)": half.get("int8", np.nan) / half.get("fp32", np.nan),
               f"memory int8/fp16 {PAPER}": _ratio(p, "memory_mib"),
               "prefill int8/fp32 (ours)": o.prefill_x["int8"],
               "decode int8/fp32 (ours)": o.decode_x["int8"],
               f"latency int8/fp16 {PAPER}": _ratio(p, "latency_ms"),
               "ΔAVG (ours)": o.AVG["int8"] - o.AVG["fp32"], "ΔAVG lo": np.nan,
               "ΔAVG hi": np.nan, "95% CI (ours)": None,
               f"ΔAVG {PAPER}": (p.AVG["int8"] - p.AVG["fp16"]) if len(p) else np.nan,
               "same answers %": _metric(run, variant, "same_answer_pct",
                                                     "all").get("int8", np.nan)}
        if not ev.empty:
            method = {"teacher": "none"}.get(variant, variant)
            c = evidence.compare(ev[ev.method == f"{method}-int8"], ev[ev.method == method])
            if c is not None:  # in AVG-% points -> AVG points
                lo, hi = (c[k] * o.AVG["fp32"] / o["AVG-%"]["fp32"] for k in ("lo", "hi"))
                row |= {"ΔAVG lo": lo, "ΔAVG hi": hi, "95% CI (ours)": f"[{lo:+.2f}, {hi:+.2f}]"}
        rows.append(row)
    return pd.DataFrame(rows)


def _metric(run: pd.DataFrame | None, variant: str, metric: str,
            benchmark: str = "resources") -> dict[str, float]:
    """precision -> value of one resource metric of a variant (empty without a run)."""
    if run is None or "variant" not in run:
        return {}
    g = run[(run.variant == variant) & (run.metric == metric) & (run.benchmark == benchmark)]
    return dict(zip(g.precision, g.value.astype(float), strict=True))


def _ratio(p: pd.DataFrame, col: str) -> float:
    return float(p[col]["int8"] / p[col]["fp16"]) if {"int8", "fp16"} <= set(p.index) else np.nan


def wide(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Table 9 turned for reading: one column per model, float and int8 of a model side by
    side; rows weight memory, latency (ours: prefill and decode medians with their IQR; the
    paper's: its latency with its sd), the six benchmarks and AVG. For ours (`table9`) and
    the paper's (`paper_table9`) alike; every cell is text, – where missing."""
    def num(v: float, d: int = digits, spread: float = np.nan, word: str = "") -> str | None:
        text = f"{v:.{d}f}" + (f" ({word} {spread:.1f})" if np.isfinite(spread) else "")
        return text if np.isfinite(v) else None

    paper = "latency_ms" in table
    rows = {"weights (MiB)": lambda r: num(r.memory_mib, 0 if paper else 2)} | ({
        "latency, ms (sd)": lambda r: num(r.latency_ms, 1, r.latency_sd_ms, "sd")} if paper else {
        "prefill, ms (IQR)": lambda r: num(r.prefill_ms, 1, r.prefill_iqr, "IQR"),
        "decode, ms/token (IQR)": lambda r: num(r.decode_ms, 1, r.decode_iqr, "IQR")})
    rows |= {b: (lambda r, b=b: num(r[b])) for b in (*metrics.PAPER_KEYS, "AVG")}
    cols = {}
    for variant in VARIANT_ORDER:
        t = table[table.variant == variant]
        for precision in sorted(t.precision, key=lambda x: x == "int8"):
            r = t[t.precision == precision].iloc[0]
            name = variant if variant == "teacher" else f"{variant} {100 * r.requested:g}%"
            cols[f"{name} {precision}"] = [f(r) for f in rows.values()]
    return pd.DataFrame({"measure": list(rows), **cols})


def fig_table9(side: pd.DataFrame, arch: str, paper_name: str = SHORT_PAPER_NAME[TABLE9_MODEL]):
    """Three panels: weight memory, latency (int8 / float) and ΔAVG, ours beside the paper's."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    x = np.arange(len(side))
    theirs = f"paper ({paper_name})"
    panels = [
        ("weight memory, int8 / float", [("memory int8/fp32 (ours)", "this study, int8/fp32"),
                                         ("memory int8/fp16 (ours)", "this study, int8/fp16"),
                                         (f"memory int8/fp16 {PAPER}", f"{theirs}, int8/fp16")]),
        ("latency, int8 / float", [("prefill int8/fp32 (ours)", "this study, prefill"),
                                   ("decode int8/fp32 (ours)", "this study, decode/token"),
                                   (f"latency int8/fp16 {PAPER}", theirs)]),
        ("ΔAVG (int8 - float), points", [("ΔAVG (ours)", f"this study ({arch})"),
                                          (f"ΔAVG {PAPER}", theirs)]),
    ]
    shades = {0: plotting.color("this study"), 1: "#aec7e8", 2: plotting.color("paper")}
    for ax, (title, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for i, (col, name) in enumerate(series):
            colour = shades[2] if name.startswith("paper") else shades[i]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, side[col], width, label=name,
                   color=colour)
        ax.axhline(1.0 if "/" in title else 0.0, color="black", lw=0.8)
        ax.set_xticks(x, [m.replace(" (", "\n(") for m in side.model])
        ax.set(title=title)
        if "/" in title:
            ax.set_ylim(0, max(1.25, 1.15 * float(np.nanmax(side[[c for c, _ in series]]))))
        ax.legend(fontsize=7, loc="upper left" if "/" in title else "best")
    fig.tight_layout()
    return fig


def _span(values: pd.Series, fmt: str, unit: str = "") -> str:
    """"0.34 to 0.37x" over the models: one value when all agree, – when none is known."""
    lo, hi = format(values.min(), fmt), format(values.max(), fmt)  # NaN skipped
    return "–" if values.isna().all() else (lo if lo == hi else f"{lo} to {hi}") + unit


def takeaways(ours: pd.DataFrame, side: pd.DataFrame) -> list[str]:
    """The chapter's conclusions across the models, computed from `table9` and `beside`,
    each beside the paper's: memory, speed, scores, and pruning and int8 together."""
    n, d = len(side), side
    x = dict(zip(("m32", "m16", "pm16", "pre", "dec", "plat"),  # RATIO_COLUMNS' spans
                 (_span(d[c], ".2f", "x") for c in RATIO_COLUMNS[1:]), strict=True))
    slower = {k: int((d[f"{k} int8/fp32 (ours)"] > 1).sum()) for k in ("prefill", "decode")}
    lines = [
        f"Memory: int8 weights take {x['m16']} the fp16 size of our models ({x['m32']} the "
        f"fp32), the paper's {x['pm16']} of fp16.",
        f"Speed: int8 is slower than fp32 in decode for {slower['decode']} of {n} models "
        f"({x['dec']}, median per-round ratio) and in prefill for {slower['prefill']} of {n} "
        f"({x['pre']}); the paper's int8 takes {x['plat']} the fp16 time.",
        f"Scores: int8 changes AVG by {_span(d['ΔAVG (ours)'], '+.2f')} points (paper: "
        f"{_span(d[f'ΔAVG {PAPER}'], '+.2f')}) and leaves "
        f"{_span(d['same answers %'], '.1f', '%')} of the answers unchanged."]
    if (known := d.dropna(subset=["ΔAVG lo"])).size:
        zero = int(((known["ΔAVG lo"] <= 0) & (known["ΔAVG hi"] >= 0)).sum())
        lines[-1] += f" Its 95% CI includes 0 for {zero} of {len(known)} models."
    t, small = ours.set_index(["variant", "precision"]), ours[ours.precision == "int8"]
    if ("teacher", "fp32") in t.index and len(small):
        s = small.sort_values("memory_mib").iloc[0]
        lines.append(f"Pruning and int8 together: the "
                     f"{model_label(s.variant, s.requested, s.ratio)} int8 model holds "
                     f"{s.memory_mib:.2f} MiB of weights, "
                     f"{s.memory_mib / t.memory_mib['teacher', 'fp32']:.2f}x the fp32 teacher's, "
                     f"at AVG-% {s['AVG-%']:.1f} (its fp32 version: "
                     f"{t['AVG-%'][s.variant, 'fp32']:.1f}).")
    return lines
