"""The functions lmms-eval calls for the exported ShapesWorld tasks (see `studylib.harness.lmms`).

An exported task's YAML names these through its `utils.py` (`!function utils.doc_to_text`).
They reuse `studylib.evaluation.metrics`, so lmms-eval parses answers and computes scores with the very
code `studylib eval` uses: MME's acc + acc+ per subtask, POPE's F1 with "yes" positive, and
exact match after normalisation for GQA. Imports nothing from lmms-eval, so the core
environment can test them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from studylib.evaluation import metrics

# lmms-eval task name of each benchmark, and back.
TASKS = {"GQA": "shapes_gqa", "SQA": "shapes_sqa", "POPE": "shapes_pope",
         "MME-P": "shapes_mme_p", "MME-C": "shapes_mme_c", "MMMU": "shapes_mmmu"}
BENCHMARK_OF = {task: bench for bench, task in TASKS.items()}
GROUP = "shapesworld"


def doc_to_visual(doc: dict[str, Any], root: Path) -> list[Image.Image]:
    return [Image.open(root / doc["image"]).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The exact prompt `studylib eval` asks (question, newline, answer-format suffix)."""
    return doc["prompt"]


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, dict]:
    """One record per metric; aggregation scores them together (MME pairs, POPE F1)."""
    record = {"benchmark": doc["benchmark"], "id": doc["id"], "subset": doc["subset"],
              "group": doc["group"], "answer": doc["answer"], "prediction": results[0].strip()}
    out = {"score": record}
    if doc["benchmark"] == "POPE":
        out["accuracy"] = record
    return out


def aggregate_score(records: Sequence[dict]) -> float:
    return metrics.score_with_ci(records[0]["benchmark"], records, "score", n_boot=0)[0]


def aggregate_accuracy(records: Sequence[dict]) -> float:
    return metrics.score_with_ci(records[0]["benchmark"], records, "accuracy", n_boot=0)[0]
