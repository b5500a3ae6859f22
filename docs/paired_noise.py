"""The noise budget of the findings before and after pairing the evaluation noise
(issue 27), on a built book's results.

    .venv/bin/python docs/paired_noise.py [RESULTS_DIR] [--out docs/paired-noise.json]

RESULTS_DIR holds `results.jsonl` and `cells/` (default `results/`). Rows written before
rows named their grid cell get it here, by content: a cell whose kind, method, ratio,
recipe, data fraction, seed and six headline scores equal an evaluation's is its cell
(an ambiguous match is left unpaired).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import pandas as pd

from studylib.analysis import findings
from studylib.analysis.evidence import dedupe_evaluations
from studylib.analysis.paired import PairedNoise
from studylib.evaluation import metrics
from studylib.results import ResultsTable

STUDIES = ("00_testbed", "01_pruning_comparison", "02_sft_recovery", "03_kd_ablation",
           "04_data_efficiency", "06_generalization")


def signature(method, ratio, recipe, fraction, seed, scores) -> tuple:
    def num(x):
        return None if x is None or pd.isna(x) else round(float(x), 4)
    return (str(method), num(ratio), str(recipe or "none"), num(fraction), int(seed),
            *(round(float(scores[b]), 4) for b in metrics.PAPER_KEYS))


def cell_index(cells: Path) -> dict[tuple, list[str]]:
    index: dict[tuple, list[str]] = {}
    for path in sorted(cells.glob("*.json.gz")):
        with gzip.open(path, "rt") as f:
            c = json.load(f)
        scores = pd.DataFrame(c["report"]["scores"])
        head = dict(zip(scores[scores.metric == "score"].benchmark,
                        scores[scores.metric == "score"].value, strict=True))
        if not all(b in head for b in metrics.PAPER_KEYS) or c["kind"] in ("control", "timing"):
            continue
        recipe = (c["recipe"] or {}).get("name") if c["kind"] == "recovered" else None
        ratio = 0.0 if c["kind"] == "teacher" else c["ratio"]
        key = signature(c["method"], ratio, recipe, c["fraction"], c["seed"], head)
        index.setdefault(key, []).append(path.name.removesuffix(".json.gz"))
    return index


def name_cells(ev: pd.DataFrame, index: dict[tuple, list[str]]) -> pd.DataFrame:
    ev = ev.copy()

    def find(r) -> str | None:
        base = r.method.split("-")[0] if r.method.endswith("-random") else r.method
        keys = index.get(signature(base, 0.0 if r.method == "none" else r.ratio,
                                   r.recipe, r.data_fraction, r.seed,
                                   {b: r[b] for b in metrics.PAPER_KEYS}), [])
        return keys[0] if len(keys) == 1 else None

    ev["cell"] = [find(r) for _, r in ev.iterrows()]
    teachers = ev[ev.method == "none"].drop_duplicates("run_id").set_index("run_id").cell
    ev["teacher_cell"] = [teachers.get(rid) for rid in ev.run_id]
    return ev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--out", default="docs/paired-noise.json")
    args = parser.parse_args()
    root = Path(args.results)
    rows = ResultsTable(root / "results.jsonl").frame()
    ev = name_cells(findings.evaluations(rows, studies=STUDIES, dedupe=False),
                    cell_index(root / "cells"))
    ev = dedupe_evaluations(ev)  # after naming the teachers' cells, as evaluations() does
    named = int(ev.cell.notna().sum())
    before = findings.claims(ev)
    start = time.perf_counter()
    after = findings.claims(ev, noise=PairedNoise(root / "cells"))
    wall = time.perf_counter() - start
    out = {"evaluations": len(ev), "with_cell": named,
           "claims": len(after), "paired_claims": int(after.paired.sum()),
           "paired_wall_s": round(wall, 1),
           "budget_before": findings.noise_budget(before).round(3).to_dict("records"),
           "budget_after": findings.noise_budget(after).round(3).to_dict("records"),
           "outcomes_before": before.groupby(["finding", "outcome"]).size().to_dict(),
           "outcomes_after": after.groupby(["finding", "outcome"]).size().to_dict()}
    out["outcomes_before"] = {f"{k[0]} {k[1]}": v for k, v in out["outcomes_before"].items()}
    out["outcomes_after"] = {f"{k[0]} {k[1]}": v for k, v in out["outcomes_after"].items()}
    Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
