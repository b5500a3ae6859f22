"""The paper's facts: its model names, its tables (CSV, shipped with the package) and the numbers the chapters draw beside ours."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studylib.evaluation import metrics

PAPER_DIR = Path(__file__).resolve().parents[2] / "book" / "data" / "paper"
SHORT_PAPER_NAME = {"LLaVA-v1.5-7B": "LLaVA-7B", "Bunny-v1.0-3B": "Bunny-3B"}


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables (book/data/paper/<name>.csv)."""
    path = PAPER_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"paper table not found: {path}")
    return pd.read_csv(path)


def paper_unpruned(model: str) -> dict[str, float]:
    """The paper's unpruned scores for a model (Table 6, ratio 0): benchmark -> value."""
    t = paper_table("table6_pruning_only")
    row = t[(t.model == model) & (t.ratio == 0.0)]
    if row.empty:
        return {}
    return {k: float(row.iloc[0][k]) for k in metrics.PAPER_KEYS}


# The paper's model each toy architecture stands in for (figures draw them side by side).
PAPER_MODEL = {"toy-llava": "LLaVA-v1.5-7B", "toy-bunny": "Bunny-v1.0-3B",
               "toy-internvl": "Mini-InternVL-Chat-4B-V1-5", "llava-1.5-7b": "LLaVA-v1.5-7B"}
