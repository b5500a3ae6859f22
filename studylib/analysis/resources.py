"""Our resource counts of the paper's real architectures beside its Tables 1 and 7.

`studylib.evaluation.measure.arch_table` measures LLaVA-1.5-7B and Bunny-v1.0-3B on the meta
device; this module adds the paper's cells (read from its tables through `paper`) and our
relative difference from them, which is what `studylib measure --arch` prints.
"""

from __future__ import annotations

from typing import Any

from studylib.analysis import paper


def _rel(ours: float, theirs: float | None) -> float | None:
    return None if theirs is None else (ours - theirs) / theirs


def beside_paper(row: dict[str, Any]) -> dict[str, Any]:
    """One `measure.arch_row` with the paper's TFLOPs, memory (and, unpruned, parameter
    count) beside ours; None where the paper prints no such cell."""
    model = paper.PAPER_MODEL[row["arch"]]
    paper_mem, paper_tflops = paper.paper_resources(model, row["method"], row["ratio"])
    out = {"model": model, "method": row["method"], "ratio": row["ratio"],
           "params_b": row["params_b"], "llm_params_b": row["llm_params_b"],
           "decoder_ratio": row["decoder_ratio"],
           "tflops": row["tflops"], "paper_tflops": paper_tflops,
           "memory_mib": row["memory_mib"], "weights_mib": row["weights_mib"],
           "paper_memory_mib": paper_mem,
           "tflops_rel_diff": _rel(row["tflops"], paper_tflops),
           "memory_rel_diff": _rel(row["memory_mib"], paper_mem)}
    if row["ratio"] == 0:
        paper_params_b = paper.paper_params_b(model)
        out["paper_params_b"] = paper_params_b
        out["params_rel_diff"] = _rel(row["params"], None if paper_params_b is None
                                      else paper_params_b * 1e9)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """`beside_paper` rows as the text table `studylib measure --arch` prints."""
    def pct(x):
        return "" if x is None else f"{100 * x:+.1f}%"

    lines = [f"{'model':<14} {'method':<6} {'ratio':>5} {'params':>7} {'TFLOPs':>7} "
             f"{'paper':>6} {'diff':>7} {'MiB':>7} {'paper':>6} {'diff':>7}"]
    for r in rows:
        lines.append(
            f"{r['model']:<14} {r['method']:<6} {r['ratio']:>5.2f} {r['params_b']:>6.3f}B "
            f"{r['tflops']:>7.2f} {r['paper_tflops'] or '':>6} {pct(r['tflops_rel_diff']):>7} "
            f"{r['memory_mib']:>7.0f} {r['paper_memory_mib'] or '':>6} "
            f"{pct(r['memory_rel_diff']):>7}")
    return "\n".join(lines)
