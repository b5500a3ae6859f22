"""What the committed teachers know (issue 25): multiple choice scored as generated letters and
by option log-likelihood (raw, per character, options shown or hidden), every benchmark with
real and shuffled images, and the option-lookup probe. Writes docs/teacher-profile.json.

    .venv/bin/python docs/teacher_profile.py      # ~5 min on 2 cores
"""

import json
import time
from pathlib import Path

import torch

from studylib import machine, models
from studylib.evaluation import choice, evaluate, metrics
from studylib.evaluation.chance import chance_scores
from studylib.testbed import shapes, suite

LIMIT, SEED = 300, 0
OUT = Path(__file__).with_name("teacher-profile.json")


def cloze_variants(model, processor, items):
    """Accuracy (%) of four cloze variants: options hidden or shown, raw or per character."""
    out = {}
    for shown in (False, True):
        questions = [f"{it.question}\n{shapes.SHORT_ANSWER}" if shown
                     else choice.cloze_question(it) for it in items]
        scores = choice.option_logprobs(model, processor,
                                        evaluate.chat_prompts(processor, questions),
                                        [it.image for it in items],
                                        [it.options for it in items], progress=False)
        for norm in (False, True):
            picks = [choice.pick(s, it.options, norm) for s, it in zip(scores, items, strict=False)]
            key = f"{'shown' if shown else 'hidden'}, {'per char' if norm else 'raw'}"
            out[key] = metrics.accuracy([p == it.answer for p, it in zip(picks, items, strict=False)])
    return out


def main():
    torch.set_num_threads(2)
    chance = evaluate.headline(chance_scores(limit=LIMIT, seed=SEED, draws=20))
    result = {"machine": machine.signature(2), "limit": LIMIT, "seed": SEED, "chance": chance,
              "teachers": {}}
    for name in ("toy-llava", "toy-bunny", "toy-internvl"):
        model, processor = models.load(f"teachers/{name}")
        t0 = time.perf_counter()
        real = evaluate.evaluate(model, processor, limit=LIMIT, seed=SEED, progress=False)
        shuffled = evaluate.evaluate(model, processor, limit=LIMIT, seed=SEED, progress=False,
                                     images="shuffled")
        rows = real.scores.set_index(["benchmark", "metric"]).value
        variants = {b: cloze_variants(model, processor,
                                      evaluate.select(suite.benchmark(b), LIMIT, SEED))
                    for b in evaluate.MULTIPLE_CHOICE}
        result["teachers"][name] = {
            "real": real.headline(), "shuffled": shuffled.headline(),
            "letter": {b: float(rows[b, "letter"]) for b in evaluate.MULTIPLE_CHOICE},
            "cloze": {b: float(rows[b, "cloze"]) for b in evaluate.MULTIPLE_CHOICE},
            "cloze_variants": variants,
            "option_lookup": evaluate.option_lookup_accuracy(model, processor),
            "wall_s": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps(result["teachers"][name], indent=1), flush=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
