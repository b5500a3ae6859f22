"""Score a model on the six ShapesWorld benchmarks: batched greedy generation, and for
multiple choice also each option's log-likelihood (`studylib.evaluation.choice`).

Works on any model that follows transformers' image-text-to-text interface (a model plus
its processor with a chat template): the toy teachers, pruned and recovered students, and a
real LLaVA checkpoint alike.

**Multiple choice is scored both ways, and the headline is cloze.** SQA and MMMU are scored
as generated letters ("letter") and by option log-likelihood ("cloze"); both are kept, as
score rows of those metric names, and the headline ("score", the one AVG uses) is
`HEADLINE_FORMULATION` for every model and chapter. Measured on the three committed
teachers (300 test items each, chapter 00 and README "Multiple choice"): letters are at
chance on both benchmarks for all three (SQA 22-28, MMMU 22-23, chance 25), so a pruned
model could not lose anything there, while cloze puts MMMU at 42-47. A benchmark is only
evidence about compression where the teacher has something to lose.

**The image-shuffle control** (`images="shuffled"`) asks every question about another
item's image: a score that does not fall towards the guesser's is answerable without the
image (`chance.image_blind`).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from studylib.errors import StudyError
from studylib.evaluation import choice, metrics
from studylib.testbed import questions, shapes, suite

MAX_NEW_TOKENS = {"GQA": 4, "SQA": 3, "MMMU": 3, "POPE": 3, "MME-P": 3, "MME-C": 3}
MULTIPLE_CHOICE = ("SQA", "MMMU")
FORMULATIONS = ("letter", "cloze")  # generated letter, option log-likelihood
HEADLINE_FORMULATION = "cloze"  # why: the module docstring
IMAGES = ("scene", "shuffled")  # each item's own image, or another item's (the control)


@dataclasses.dataclass
class EvalReport:
    """Item-level predictions plus one score (with a 95% bootstrap CI) per benchmark."""

    # benchmark, id, subset, group, answer, prediction, correct, generated: `prediction` is
    # what the headline scores (the cloze letter for SQA/MMMU), `generated` the model's text
    items: pd.DataFrame
    # benchmark, metric, value, ci_low, ci_high, n; metric "score" is the headline, plus
    # POPE's "accuracy" and SQA/MMMU's "letter" and "cloze"
    scores: pd.DataFrame
    wall_time: float
    seed: int

    def headline(self) -> dict[str, float]:
        return headline(self.scores)

    def summary(self) -> dict[str, Any]:
        rows = self.scores.to_dict("records")
        head = self.headline()
        out = {"scores": rows}
        if all(k in head for k in metrics.PAPER_KEYS):
            out["AVG"] = metrics.average(head)
        return out


def headline(rows: pd.DataFrame) -> dict[str, float]:
    """Benchmark -> headline ("score") value of score rows (a model's or chance's)."""
    main = rows[rows.metric == "score"]
    return {b: float(v) for b, v in zip(main.benchmark, main.value, strict=True)}


def check_selection(benchmarks: Sequence[str], limit: int | None) -> None:
    """Known benchmark names, each once, and a positive `limit` (or None), else one error line."""
    unknown = [b for b in benchmarks if b not in shapes.BENCHMARKS]
    if unknown:
        raise StudyError(f"unknown benchmark {unknown[0]!r}; choose from "
                         f"{', '.join(shapes.BENCHMARKS)}")
    repeated = [b for i, b in enumerate(benchmarks) if b in benchmarks[:i]]
    if repeated:
        raise StudyError(f"benchmark {repeated[0]!r} is listed twice")
    if limit is not None and limit < 1:
        raise StudyError(f"--limit must be a positive integer, got {limit}")


def select(items: Sequence[suite.Item], limit: int | None, seed: int) -> list[suite.Item]:
    """A seeded subset of about `limit` items, stratified by subset and keeping MME pairs."""
    if limit is None:
        return list(items)
    groups: dict[str, dict[str, list[suite.Item]]] = {}
    for it in items:
        groups.setdefault(it.subset, {}).setdefault(it.group or it.id, []).append(it)
    per_group = max(len(g) for s in groups.values() for g in s.values())
    per_stratum = max(1, -(-limit // (len(groups) * per_group)))
    rng = random.Random(seed)
    chosen: list[suite.Item] = []
    for stratum in groups.values():
        keys = sorted(stratum)
        for key in sorted(rng.sample(keys, min(per_stratum, len(keys)))):
            chosen.extend(stratum[key])
    return chosen


def chat_prompts(processor, questions: Sequence[str], image: bool = True) -> list[str]:
    """Each question as one user turn (an image unless `image` is False, then the text),
    ready for generation."""
    shown = [{"type": "image"}] if image else []
    return [
        processor.apply_chat_template(
            [{"role": "user", "content": [*shown, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
        )
        for q in questions
    ]


@torch.no_grad()
def generate_texts(model, processor, questions: Sequence[str], images: Sequence | None,
                   batch_size: int = 64, max_new_tokens: int = 4,
                   progress: bool = True) -> list[str]:
    """Greedy answers, batched with left padding; prompts are sorted by length; text-only
    when `images` is None.

    Batches depend only on the order of `questions`, so callers that pass the same items in
    the same order (`studylib eval`, the lmms-eval plugin) get the same batches and answers.
    """
    prompts = chat_prompts(processor, questions, image=images is not None)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    processor.tokenizer.padding_side = "left"
    for start in tqdm(range(0, len(order), batch_size), desc="generate", leave=False,
                      disable=not progress):
        idx = order[start : start + batch_size]
        batch = processor(text=[prompts[i] for i in idx],
                          images=None if images is None else [images[i] for i in idx],
                          return_tensors="pt", padding=True).to(device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1] :]
        for i, text in zip(idx, processor.batch_decode(new, skip_special_tokens=True), strict=True):
            answers[i] = text.strip()
    return answers


def generate_answers(model, processor, items: Sequence[suite.Item], batch_size: int = 64,
                     max_new_tokens: int = 4, progress: bool = True,
                     images: Sequence | None = None) -> list[str]:
    """Greedy answers to benchmark items (see `generate_texts`), about their own images
    unless `images` gives others."""
    return generate_texts(model, processor, [it.prompt for it in items],
                          images or [it.image for it in items], batch_size=batch_size,
                          max_new_tokens=max_new_tokens, progress=progress)


def cloze_answers(model, processor, items: Sequence[suite.Item], batch_size: int = 64,
                  progress: bool = True, images: Sequence | None = None) -> list[str]:
    """Each multiple-choice item's most likely option (as its letter), the question asked
    without its lettered options (`choice.cloze_question`)."""
    chats = chat_prompts(processor, [choice.cloze_question(it) for it in items])
    scores = choice.option_logprobs(model, processor, chats,
                                    images or [it.image for it in items],
                                    [it.options for it in items], batch_size=batch_size,
                                    progress=progress)
    return [choice.pick(s, it.options) for s, it in zip(scores, items, strict=True)]


# Seeds of the option-lookup probe's questions, per split (training's binding stage draws
# from seeds below 10**6; the question space is small, so this probes a skill, not recall).
OPTION_LOOKUP_SEEDS = {"test": 10**6, "val": 2 * 10**6}


def option_lookup_accuracy(model, processor, n: int = 200, split: str = "test",
                           batch_size: int = 64) -> float:
    """Letter accuracy (%) on n text-only "which option says X?" questions
    (`questions.option_lookup`): the symbol binding that teacher training's "binding" stage
    teaches, and that answering multiple choice by letter needs. Chance is 25."""
    rng = random.Random(OPTION_LOOKUP_SEEDS[split])
    qas = [questions.option_lookup(rng) for _ in range(n)]
    answers = generate_texts(model, processor, [f"{q}\n{shapes.LETTER}" for q, _, _ in qas],
                             None, batch_size=batch_size, max_new_tokens=3, progress=False)
    return metrics.accuracy([metrics.parse_letter(a) == letter
                             for a, (_, letter, _) in zip(answers, qas, strict=True)])


def lookup_accuracy(model, processor, limit: int = 80, split: str = "val",
                    occlusion: float | None = None) -> float:
    """POPE accuracy (%) on `limit` items: whether yes/no lookups are read from the image,
    the skill that a teacher's `lookup` stage teaches (`testbed.plan`'s `until=` gate).
    A constant "yes" or "no" scores 50, where F1 would read 67 or 0. `occlusion`: the
    world of the scenes (default the benchmarks', `shapes.OCCLUSION`), as for every skill."""
    scores = evaluate(model, processor, benchmarks=("POPE",), limit=limit, split=split,
                      progress=False, occlusion=occlusion).scores
    return float(scores[(scores.benchmark == "POPE") & (scores.metric == "accuracy")]
                 .value.iloc[0])


def spatial_accuracy(model, processor, limit: int = 80, split: str = "val",
                     occlusion: float | None = None) -> float:
    """GQA accuracy (%) on the first `limit` items of its position and size families: where
    an object is and how large, the skill a teacher's `spatial` stage teaches after a
    plateau whose length moves with the draw (docs/testbed-recipe-search.md, P44 and P49).
    Before that stage the teachers scored 10-20 (position) and 50-60 (size)."""
    items = [it for it in suite.benchmark("GQA", split=split, occlusion=occlusion)
             if it.subset in ("position", "size")][:limit]
    table, _ = score("GQA", items, generate_answers(model, processor, items, progress=False))
    return 100 * float(table.correct.mean())


def mme_accuracy(model, processor, limit: int = 80, split: str = "val",
                 occlusion: float | None = None) -> float:
    """MME-P accuracy (%) on `limit` items, every subtask: whether its yes/no checks of
    binding, counting and place are read from the image, the skill of a teacher's `mme`
    stage. Chance 50; toy-bunny's P45 end: 74 on 300 items (docs/testbed-recipe-search.md)."""
    items = evaluate(model, processor, benchmarks=("MME-P",), limit=limit, split=split,
                     progress=False, occlusion=occlusion).items
    return 100 * float(items.correct.mean())


# The skill each kind of plan stage teaches: what `until=` checks (`testbed.plan`).
SKILLS: dict[str, Callable[..., float]] = {"lookup": lookup_accuracy,
                                           "spatial": spatial_accuracy,
                                           "mme": mme_accuracy}


def shuffled_images(items: Sequence[suite.Item], seed: int = 0) -> list:
    """Each item's image replaced by another item's scene: a seeded derangement of the
    scenes (the items' scenes in a random cycle, each taking the next one's image), so no
    item keeps its own and MME's two questions of an image still share one."""
    scenes = sorted({it.scene_seed for it in items})
    if len(scenes) < 2:
        raise StudyError(f"shuffling images needs at least two scenes, got {len(scenes)}")
    random.Random(seed).shuffle(scenes)
    other = {s: scenes[(k + 1) % len(scenes)] for k, s in enumerate(scenes)}
    return [it.image_of(other[it.scene_seed]) for it in items]


def score(benchmark: str, items: Sequence[suite.Item], predictions: Sequence[str],
          seed: int = 0, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Item table and score rows (headline 'score', plus POPE's accuracy) for predictions."""
    table = pd.DataFrame(
        [{"benchmark": benchmark, "id": it.id, "subset": it.subset, "group": it.group,
          "answer": it.answer, "prediction": p,
          "correct": metrics.is_correct(benchmark, p, it.answer)}
         for it, p in zip(items, predictions, strict=True)]
    )
    records = table.to_dict("records")
    rows = []
    for metric in ("score", "accuracy") if benchmark == "POPE" else ("score",):
        value, lo, hi = metrics.score_with_ci(benchmark, records, metric, n_boot=n_boot, seed=seed)
        rows.append({"benchmark": benchmark, "metric": metric, "value": value,
                     "ci_low": lo, "ci_high": hi, "n": len(records)})
    return table, pd.DataFrame(rows)


def _formulations(name: str, items: Sequence[suite.Item], generated: list[str],
                  cloze: Callable[[], list[str]], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A benchmark's item table and score rows; multiple choice is scored both ways, its
    headline ("score") in `HEADLINE_FORMULATION`."""
    if name not in MULTIPLE_CHOICE:
        table, rows = score(name, items, generated, seed=seed)
        return table.assign(generated=generated), rows
    predictions = {"letter": generated, "cloze": cloze()}
    table, rows = score(name, items, predictions[HEADLINE_FORMULATION], seed=seed)
    every = [rows] + [score(name, items, predictions[f], seed=seed)[1].assign(metric=f)
                      for f in FORMULATIONS]
    return table.assign(generated=generated), pd.concat(every, ignore_index=True)


def evaluate(model, processor, benchmarks: Sequence[str] = shapes.BENCHMARKS,
             limit: int | None = None, seed: int = 0, batch_size: int = 64,
             progress: bool = True, split: str = "test", images: str = "scene",
             occlusion: float | None = None) -> EvalReport:
    """Run the benchmarks; `limit` caps items per benchmark (a seeded, stratified subset).
    `split="val"` scores the validation scenes instead (teacher-training curves);
    `images="shuffled"` asks every question about another item's image (the control);
    `occlusion` renders the scenes in another world than the benchmarks' (`shapes.OCCLUSION`)."""
    check_selection(benchmarks, limit)
    if images not in IMAGES:
        raise StudyError(f"unknown images {images!r}; choose from {', '.join(IMAGES)}")
    model.eval()
    start = time.perf_counter()
    tables, scores = [], []
    for name in benchmarks:
        items = select(suite.benchmark(name, split=split, occlusion=occlusion), limit, seed)
        shown = shuffled_images(items, seed) if images == "shuffled" else None
        generated = generate_answers(model, processor, items, batch_size=batch_size,
                                     max_new_tokens=MAX_NEW_TOKENS[name], progress=progress,
                                     images=shown)
        table, rows = _formulations(
            name, items, generated, lambda items=items, shown=shown: cloze_answers(
                model, processor, items, batch_size=batch_size, progress=progress,
                images=shown), seed)
        tables.append(table)
        scores.append(rows)
    return EvalReport(pd.concat(tables, ignore_index=True), pd.concat(scores, ignore_index=True),
                      time.perf_counter() - start, seed)


def format_table(report: EvalReport) -> str:
    """The scores as a fixed-width table, AVG last."""
    lines = [f"{'benchmark':<10}{'metric':<10}{'value':>9}  {'95% CI':>17}{'n':>6}"]
    for r in report.scores.itertuples():
        lines.append(f"{r.benchmark:<10}{r.metric:<10}{r.value:>9.2f}  "
                     f"[{r.ci_low:>7.2f}, {r.ci_high:>7.2f}]{r.n:>6}")
    summary = report.summary()
    if "AVG" in summary:
        lines.append(f"{'AVG':<10}{'paper':<10}{summary['AVG']:>9.2f}")
    lines.append(f"({report.wall_time:.1f} s)")
    return "\n".join(lines)
