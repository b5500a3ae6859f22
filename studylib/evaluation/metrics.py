"""Answer parsing, the benchmarks' metrics, bootstrap CIs and the paper's AVG.

Parsing is strict, and documented here because it decides scores:

- **yes/no** (POPE, MME): the first word of the normalised answer must be "yes" or "no";
  anything else is "other", which is wrong for both, and counts as a *negative* prediction
  in POPE's F1 (positive = "yes").
- **letter** (SQA, MMMU): the first token must be one of A-D, alone or followed by "." or
  ")" ("B", "b.", "(b)" parse; "the answer is B" does not).
- **short answer** (GQA): lower-cased, punctuation removed, whitespace collapsed, then
  exact string match with the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

PAPER_KEYS = ("MMMU", "GQA", "SQA", "MME-C", "MME-P", "POPE")
# Divisors that put every benchmark on 0-100 before averaging (MME-C is 0-800, MME-P 0-2000).
PAPER_SCALE = {"MMMU": 1.0, "GQA": 1.0, "SQA": 1.0, "MME-C": 8.0, "MME-P": 20.0, "POPE": 1.0}


def average(scores: Mapping[str, float]) -> float:
    """The paper's AVG: mean(MMMU, GQA, SQA, MME-C / 8, MME-P / 20, POPE), elementwise when
    the scores are arrays."""
    missing = [k for k in PAPER_KEYS if k not in scores]
    if missing:
        raise KeyError(f"AVG needs all of {', '.join(PAPER_KEYS)}; missing {', '.join(missing)}")
    avg = np.mean([np.asarray(scores[k]) / PAPER_SCALE[k] for k in PAPER_KEYS], axis=0)
    return float(avg) if np.ndim(avg) == 0 else avg  # arrays: per draw (`analysis.paired`)


def pct_of_teacher(value, teacher):
    """`value` as a percentage of the unpruned teacher's: AVG-% when both are AVGs, a
    benchmark's retention when both are its scores. Floats, arrays or pandas Series; the
    one place the study turns a score into a share of the teacher's."""
    return 100.0 * value / teacher


def average_pct(scores: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """AVG-%: AVG as a percentage of the unpruned model's AVG."""
    return pct_of_teacher(average(scores), average(reference))


# --- parsing ------------------------------------------------------------------------------

_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def parse_yes_no(text: str) -> str:
    words = normalize(text).split()
    return words[0] if words and words[0] in ("yes", "no") else "other"


_LETTER = re.compile(r"^\(?([a-d])(?:[.)]|$)", re.IGNORECASE)


def parse_letter(text: str) -> str:
    tokens = text.strip().split()
    match = _LETTER.match(tokens[0]) if tokens else None
    return match.group(1).upper() if match else "other"


def is_correct(benchmark: str, prediction: str, answer: str) -> bool:
    if benchmark in ("POPE", "MME-P", "MME-C"):
        return parse_yes_no(prediction) == answer
    if benchmark in ("SQA", "MMMU"):
        return parse_letter(prediction) == answer.upper()
    return normalize(prediction) == normalize(answer)


# --- metrics ------------------------------------------------------------------------------


def accuracy(correct: Sequence[bool]) -> float:
    return 100.0 * float(np.mean(correct)) if len(correct) else float("nan")


def pope_f1(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """F1 with "yes" as the positive class; unparsable answers count as "no"."""
    pred = np.array([parse_yes_no(p) == "yes" for p in predictions])
    gold = np.array([a == "yes" for a in answers])
    tp = float(np.sum(pred & gold))
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / gold.sum() if gold.sum() else 0.0
    return 100.0 * (2 * precision * recall / (precision + recall) if tp else 0.0)


def mme_score(correct: Sequence[bool], subtasks: Sequence[str], groups: Sequence[str]) -> float:
    """MME: per subtask, accuracy + accuracy+ (both questions of an image right), summed.

    Each subtask scores 0-200; MME-P's 10 subtasks sum to 0-2000, MME-C's 4 to 0-800.
    """
    correct = np.asarray(correct, dtype=bool)
    subtasks, groups = np.asarray(subtasks), np.asarray(groups)
    total = 0.0
    for task in dict.fromkeys(subtasks):  # ordered unique
        in_task = subtasks == task
        acc = correct[in_task].mean()
        by_image: dict[str, bool] = {}
        for g, c in zip(groups[in_task], correct[in_task], strict=True):
            by_image[g] = by_image.get(g, True) and bool(c)
        total += 100.0 * (acc + np.mean(list(by_image.values())))
    return total


def _group_counts(benchmark: str, items: Sequence[dict]) -> dict[str, np.ndarray]:
    """Per group (an MME image's pair, else one item): counts every metric is built from."""
    keys = [(it.get("subset", ""), it.get("group") or it["id"]) for it in items]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    n = len(index)
    counts = {name: np.zeros(n) for name in ("items", "correct", "tp", "pred_yes", "gold_yes")}
    counts["all_correct"] = np.ones(n)
    counts["stratum"] = np.array([k[0] for k in index], dtype=object)
    for it, key in zip(items, keys, strict=True):
        g = index[key]
        ok = is_correct(benchmark, it["prediction"], it["answer"])
        yes = parse_yes_no(it["prediction"]) == "yes"
        gold = it["answer"] == "yes"
        counts["items"][g] += 1
        counts["correct"][g] += ok
        counts["all_correct"][g] *= ok
        counts["tp"][g] += yes and gold
        counts["pred_yes"][g] += yes
        counts["gold_yes"][g] += gold
    return counts


def _from_counts(benchmark: str, metric: str, c: dict[str, np.ndarray],
                 sample: np.ndarray) -> float | np.ndarray:
    """A metric from group counts; `sample` indexes groups (with repeats when resampled).

    A 2-D `sample` is many draws at once (one per row), giving one value per draw.
    """
    def total(key: str, within=None):
        values = c[key][sample]
        return (values if within is None else values * within).sum(-1)

    def out(value):
        return float(value) if np.ndim(value) == 0 else value

    if metric == "accuracy" or benchmark in ("GQA", "SQA", "MMMU"):
        return out(100.0 * total("correct") / total("items"))
    if benchmark == "POPE":
        tp, pred, gold = total("tp"), total("pred_yes"), total("gold_yes")
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(tp > 0, 2 * tp / (pred + gold), 0.0)  # = 2PR / (P + R)
        return out(100.0 * f1)
    value = 0.0  # MME: acc + acc+ per subtask
    strata = c["stratum"][sample]
    for task in dict.fromkeys(c["stratum"][sample.ravel()]):
        inside = strata == task
        value = value + 100.0 * (total("correct", inside) / total("items", inside)
                                 + total("all_correct", inside) / inside.sum(-1))
    return out(value)


def score_with_ci(benchmark: str, items: Sequence[dict], metric: str = "score",
                  n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """(value, ci_low, ci_high): the metric and its percentile bootstrap CI.

    Whole groups (an MME image's yes/no pair) are resampled within each subset (POPE
    split, MME subtask), so every bootstrap replicate keeps the benchmark's design.
    """
    counts = _group_counts(benchmark, items)
    everything = np.arange(len(counts["items"]))
    value = _from_counts(benchmark, metric, counts, everything)
    if n_boot == 0:
        return value, float("nan"), float("nan")
    strata = [everything[counts["stratum"] == s] for s in dict.fromkeys(counts["stratum"])]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        sample = np.concatenate([rng.choice(g, size=len(g)) for g in strata])
        stats.append(_from_counts(benchmark, metric, counts, sample))
    lo, hi = np.percentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return value, float(lo), float(hi)


def headline(benchmark: str, items: Sequence[dict]) -> float:
    """The benchmark's headline score from item dicts with prediction/answer/subset/group."""
    return score_with_ci(benchmark, items, n_boot=0)[0] if items else float("nan")


CHANCE = {
    # expected headline score of a uniform random guesser (yes/no 50%, 4 options 25%)
    "GQA": None,  # open answers: chance depends on the answer prior, measured in tests
    "SQA": 25.0,
    "MMMU": 25.0,
    "POPE": 50.0,  # F1 of random yes/no with balanced labels
    "MME-P": 10 * (50.0 + 25.0),  # acc 50% + acc+ 25% per subtask
    "MME-C": 4 * (50.0 + 25.0),
}
