"""The functions lmms-eval calls for the exported ShapesWorld tasks (see `studylib.harness.lmms`).

An exported task's YAML names these through its `utils.py` (`!function utils.doc_to_text`).
They reuse `studylib.evaluation.metrics`, so lmms-eval parses answers and computes scores with the very
code `studylib eval` uses: MME's acc + acc+ per subtask, POPE's F1 with "yes" positive, and
exact match after normalisation for GQA. Multiple choice (SQA, MMMU) is asked in
`evaluate.HEADLINE_FORMULATION`: in cloze, an lmms-eval `multiple_choice` task whose
log-likelihoods pick the letter as `studylib eval` picks it (`choice.pick`). Imports nothing
from lmms-eval, so the core environment can test them.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from studylib.evaluation import choice, metrics
from studylib.evaluation.evaluate import HEADLINE_FORMULATION, MULTIPLE_CHOICE

# lmms-eval task name of each benchmark, and back.
TASKS = {"GQA": "shapes_gqa", "SQA": "shapes_sqa", "POPE": "shapes_pope",
         "MME-P": "shapes_mme_p", "MME-C": "shapes_mme_c", "MMMU": "shapes_mmmu"}
BENCHMARK_OF = {task: bench for bench, task in TASKS.items()}
GROUP = "shapesworld"


def is_cloze(benchmark: str) -> bool:
    """Whether the benchmark's task scores options by log-likelihood instead of generating."""
    return benchmark in MULTIPLE_CHOICE and HEADLINE_FORMULATION == "cloze"


def task_metrics(benchmark: str) -> tuple[str, ...]:
    """The metrics an exported task reports, each the `studylib eval` score row of that name:
    the headline, POPE's accuracy, and the one formulation multiple choice is asked in."""
    if benchmark == "POPE":
        return ("score", "accuracy")
    if benchmark in MULTIPLE_CHOICE:
        return ("score", HEADLINE_FORMULATION)
    return ("score",)


def doc_to_visual(doc: dict[str, Any], root: Path) -> list[Image.Image]:
    return [Image.open(root / doc["image"]).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The exact question `studylib eval` asks: the prompt (question, newline, answer-format
    suffix), or for cloze the question without its options (`choice.cloze_question`)."""
    return doc["prompt"]


def _records(doc: dict[str, Any], prediction: str) -> dict[str, dict]:
    """One record per metric; aggregation scores them together (MME pairs, POPE F1)."""
    record = {"benchmark": doc["benchmark"], "id": doc["id"], "subset": doc["subset"],
              "group": doc["group"], "answer": doc["answer"], "prediction": prediction}
    return {metric: record for metric in task_metrics(doc["benchmark"])}


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, dict]:
    """A generation task's answer, scored as `studylib eval` scores the generated text."""
    return _records(doc, results[0].strip())


def _loglikelihood(result: tuple[float, bool] | str) -> tuple[float, bool]:
    """A loglikelihood request's (log-likelihood, is-greedy). lmms-eval 0.7.3 hands it to
    process_results as text (`api.instance.unwrap_generation_output` makes `str(output)` of
    whatever is not text); floats print as their repr, so reading it back is exact."""
    return ast.literal_eval(result) if isinstance(result, str) else tuple(result)


def process_choice_results(doc: dict[str, Any],
                           results: Sequence[tuple[float, bool] | str]) -> dict[str, dict]:
    """A multiple-choice task's (log-likelihood, is-greedy) per option, in letter order: the
    prediction is the likeliest option's letter, by `choice.pick` (which reads only the
    log-likelihood). lmms-eval's built-in scoring would take the argmin, as its own models
    return losses; the studylib plugin returns log-likelihoods, as the API says."""
    return _records(doc, choice.pick([_loglikelihood(r) for r in results], doc["options"]))


def aggregate_score(records: Sequence[dict]) -> float:
    return metrics.score_with_ci(records[0]["benchmark"], records, "score", n_boot=0)[0]


def aggregate_accuracy(records: Sequence[dict]) -> float:
    return metrics.score_with_ci(records[0]["benchmark"], records, "accuracy", n_boot=0)[0]
