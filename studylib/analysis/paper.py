"""The paper's facts, in one place: its models and their short names, its tables, its recipe
names in our terms, its five findings and its best practice.

The tables are the paper's printed numbers as CSV files shipped inside the package
(`paper_tables/`, declared as package data), read through `importlib.resources` so that an
installed, non-editable studylib finds them too. Code never types a paper number: it reads
one of these tables.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from studylib.evaluation import metrics

PAPER_TABLES = resources.files("studylib.analysis") / "paper_tables"

# The paper's model each of our architectures stands in for (figures draw them side by side);
# the two real architectures `studylib measure --arch` builds are the paper's models.
PAPER_MODEL = {"toy-llava": "LLaVA-v1.5-7B", "toy-bunny": "Bunny-v1.0-3B",
               "toy-internvl": "Mini-InternVL-Chat-4B-V1-5", "llava-1.5-7b": "LLaVA-v1.5-7B",
               "bunny-v1.0-3b": "Bunny-v1.0-3B"}
SHORT_PAPER_NAME = {"LLaVA-v1.5-7B": "LLaVA-7B", "Bunny-v1.0-3B": "Bunny-3B",
                    "Mini-InternVL-Chat-4B-V1-5": "Mini-InternVL-4B"}
# The single model behind tables that print one: Table 2 ablates distillation on Bunny
# (layerwise), Table 9 quantizes LLaVA, Tables 10-11 repeat the recipe on Mini-InternVL.
TABLE2_MODEL = "Bunny-v1.0-3B"
TABLE9_MODEL = "LLaVA-v1.5-7B"
TABLE10_11_MODEL = PAPER_MODEL["toy-internvl"]

# The paper's recipe names -> our presets (studylib.compress.recipes): Table 2's columns and
# Tables 10-11's recipe column.
TABLE2_RECIPES = {"FT": "sft", "L2": "l2", "L2+FT": "sft+l2", "RKL": "rkl", "RKL+FT": "sft+rkl"}
TABLE10_11_RECIPES = {"none": "none", "SFT mm only": "sft-mm", "SFT mm + LLM": "sft",
                      "SFT+KD mm + LLM": "sft+l2"}

FINDINGS = {
    1: "Without recovery, widthwise pruning keeps more performance than layerwise.",
    2: "With recovery, layerwise is better below ~30-40%, widthwise above ~40%.",
    3: "At small ratios (~15%), finetuning only the projector recovers >= 95%.",
    4: "SFT + L2 is the best recovery; distillation alone falls behind (collapses at high "
       "ratios); reverse KL beats forward KL.",
    5: "Below ~50%, 5% of the data gives >= 95% of the full-data result; above, more data "
       "is needed.",
}
# Where the paper shows each finding (a citation for the reader; the numbers quoted are
# those of Tables 6 and 2 in paper_tables/).
PAPER_EVIDENCE = {
    1: "Table 6: 15% width/layer 95.5/91.5 (Bunny), 92.8/74.0 (LLaVA)",
    2: "Fig. 2",
    3: "Fig. 2, Tables 10-11",
    4: "Table 2, Figs. 3, 5-7: RKL alone 12.6% at 60%",
    5: "Fig. 4",
}
# The paper's best practice (Table 3): layerwise + FT + L2 up to 30%, widthwise above.
PRESCRIBED_RECIPE = "sft+l2"


def prescribed_method(ratio: float) -> str:
    """The paper's Table 3 choice: layerwise up to 30%, widthwise from 45%."""
    return "layer" if ratio <= 0.3 + 1e-9 else "width"


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables (`paper_tables/<name>.csv`), as printed."""
    path = PAPER_TABLES / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"paper table not found: {path}")
    with path.open() as f:
        return pd.read_csv(f)


# The paper's three unpruned models, in the order its tables list them.
PAPER_MODELS = ("LLaVA-v1.5-7B", "Bunny-v1.0-3B", PAPER_MODEL["toy-internvl"])


def paper_unpruned(model: str) -> dict[str, float]:
    """The paper's unpruned scores for a model (Table 6, ratio 0; Mini-InternVL's from
    Tables 10-11): benchmark -> value."""
    for name in ("table6_pruning_only", "table10_11_internvl"):
        t = paper_table(name)
        row = t[(t.model == model) & (t.ratio == 0.0)]
        if not row.empty:
            return {k: float(row.iloc[0][k]) for k in metrics.PAPER_KEYS}
    return {}


def benchmark_guessers() -> dict[str, float]:
    """The score of a guesser on each real benchmark the paper reports, as its authors
    publish it (or, for the yes/no ones, as its metric gives it); GQA has none (open answers
    over ~1,800 names: a uniform guesser scores ~0). Sources in the table's `source` column."""
    t = paper_table("benchmark_guessers")
    return dict(zip(t.benchmark, t.guesser.astype(float), strict=True))


def paper_params_b(model: str) -> float | None:
    """The paper's parameter count of an unpruned model, in billions (Table 6's size)."""
    t = paper_table("table6_pruning_only")
    row = t[(t.model == model) & (t.ratio == 0.0)]
    return None if row.empty else float(row.size_b.iloc[0])


def paper_resources(model: str, method: str, ratio: float) -> tuple[int | None, float | None]:
    """(allocated memory MiB, TFLOPs) of Tables 1 and 7 for one cell, (None, None) where the
    paper has none; ratio 0 is the unpruned model whatever the method."""
    t = paper_table("table1_table7_resources")
    if ratio == 0:
        method = "none"
    row = t[(t.model == model) & (t.method == method) & ((t.ratio - round(ratio, 2)).abs() < 1e-9)]
    if row.empty:
        return None, None
    return int(row.memory_mib.iloc[0]), float(row.tflops.iloc[0])
