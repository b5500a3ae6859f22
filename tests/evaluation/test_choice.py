"""Multiple choice scored by option log-likelihood (cloze) beside generated letters."""

import math
import re

import pytest
import torch

from studylib import models
from studylib.errors import StudyError
from studylib.evaluation import choice, evaluate, metrics
from studylib.testbed import shapes, suite


def test_every_multiple_choice_item_carries_its_options_in_letter_order():
    for name in evaluate.MULTIPLE_CHOICE:
        for it in suite.benchmark(name)[:60]:
            assert len(it.options) == len(shapes.LETTERS)
            shown = " ".join(f"{letter}. {opt}" for letter, opt in zip(shapes.LETTERS, it.options, strict=False))
            assert f"Options: {shown}" in it.prompt
            assert it.options[shapes.LETTERS.index(it.answer)]  # the answer is one of them


def test_the_cloze_question_hides_the_letters_and_asks_for_a_short_answer():
    it = suite.benchmark("MMMU")[0]
    q = choice.cloze_question(it)
    assert "Options:" not in q and "letter" not in q
    assert q.startswith(it.question.split("\nOptions:")[0])
    assert q.endswith(shapes.SHORT_ANSWER)


def _reference_logprob(model, processor, chat, image, option):
    """log p(option | prompt, image) from one unbatched forward pass over the full sequence,
    and whether greedy decoding gives the option."""
    enc = processor(text=[chat], images=[image], return_tensors="pt")
    answer = processor.tokenizer(option, add_special_tokens=False)["input_ids"]
    ids = torch.cat([enc["input_ids"], torch.tensor([answer])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                       pixel_values=enc["pixel_values"]).logits[0].float()
    logp = torch.log_softmax(logits[-len(answer) - 1 : -1], -1)
    target = torch.tensor(answer)
    return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


def test_batched_option_scores_equal_one_sequence_at_a_time(micro_checkpoint):
    """One-token options come from the prompt's last position, longer ones from their own
    sequence; both must equal scoring prompt + option alone, in any batch."""
    model, processor = models.load(micro_checkpoint)
    model.eval()
    items = suite.benchmark("SQA")[:5]
    chats = evaluate.chat_prompts(processor, [choice.cloze_question(it) for it in items])
    images = [it.image for it in items]
    words = evaluate.generate_texts(model, processor, [choice.cloze_question(it) for it in items],
                                    images, max_new_tokens=1, progress=False)
    # the first option is the model's own greedy word, the last has two tokens
    options = [[w] + list(it.options[1:3]) + [f"{it.options[3]} ."]
               for w, it in zip(words, items, strict=True)]
    batched = choice.option_logprobs(model, processor, chats, images, options, batch_size=4,
                                     progress=False)
    for i in range(len(items)):
        assert [s.tokens for s in batched[i]] == [1, 1, 1, 2]
        for k, option in enumerate(options[i]):
            ref, greedy = _reference_logprob(model, processor, chats[i], images[i], option)
            assert batched[i][k].logprob == pytest.approx(ref, abs=1e-4)
            assert batched[i][k].greedy == greedy
        assert batched[i][0].greedy


def test_pick_takes_the_most_likely_option_raw_or_per_character():
    scores = [(-2.0, 1), (-1.0, 1), (-3.0, 2), (-1.0, 1)]
    assert choice.pick(scores, ["a", "b", "c", "d"]) == "B"  # ties: the first
    assert choice.pick([(-4.0, 1), (-3.0, 1)], ["four", "x"], normalised=True) == "A"


def test_both_formulations_are_scored_and_the_headline_is_one_of_them(micro_checkpoint):
    model, processor = models.load(micro_checkpoint)
    report = evaluate.evaluate(model, processor, benchmarks=["SQA", "GQA"], limit=12,
                               progress=False)
    rows = report.scores.set_index(["benchmark", "metric"]).value
    assert rows["SQA", "score"] == rows["SQA", evaluate.HEADLINE_FORMULATION]
    assert ("GQA", "cloze") not in rows
    sqa = report.items[report.items.benchmark == "SQA"]
    letter = [metrics.is_correct("SQA", g, a) for g, a in zip(sqa.generated, sqa.answer, strict=False)]
    assert rows["SQA", "letter"] == pytest.approx(100 * sum(letter) / len(letter))
    assert set(sqa.prediction) <= set(shapes.LETTERS)  # the cloze pick, as a letter
    gqa = report.items[report.items.benchmark == "GQA"]
    assert list(gqa.prediction) == list(gqa.generated)


def test_shuffled_images_are_a_derangement_that_keeps_mme_pairs_together():
    items = evaluate.select(suite.benchmark("MME-P"), 40, seed=0)
    shown = evaluate.shuffled_images(items, seed=3)
    own = [it.image for it in items]
    assert all(a.tobytes() != b.tobytes() for a, b in zip(shown, own, strict=False))
    by_group = {}
    for it, img in zip(items, shown, strict=False):
        by_group.setdefault(it.group, []).append(img.tobytes())
    assert all(len(set(g)) == 1 for g in by_group.values())
    assert [i.tobytes() for i in shown] == [i.tobytes() for i in
                                           evaluate.shuffled_images(items, seed=3)]


def test_shuffling_one_scene_and_unknown_images_are_refused(micro_checkpoint):
    item = suite.benchmark("GQA")[0]
    with pytest.raises(StudyError, match="at least two scenes"):
        evaluate.shuffled_images([item])
    model, processor = models.load(micro_checkpoint)
    with pytest.raises(StudyError, match="unknown images 'blank'"):
        evaluate.evaluate(model, processor, limit=4, images="blank", progress=False)


def test_the_shuffle_control_changes_what_a_model_sees(micro_checkpoint):
    model, processor = models.load(micro_checkpoint)
    items = evaluate.select(suite.benchmark("GQA"), 12, seed=0)
    chats = evaluate.chat_prompts(processor, [it.prompt for it in items])
    own = choice.option_logprobs(model, processor, chats, [it.image for it in items],
                                 [["red"]] * len(items), progress=False)
    other = choice.option_logprobs(model, processor, chats,
                                   evaluate.shuffled_images(items), [["red"]] * len(items),
                                   progress=False)
    assert not all(math.isclose(a[0].logprob, b[0].logprob) for a, b in zip(own, other, strict=False))


def test_option_lookup_probe_scores_letters_text_only(micro_checkpoint, monkeypatch):
    """The binding probe asks without an image and scores the letter: a model that always
    answers the right letter gets 100, one that answers "A" about a quarter."""
    model, processor = models.load(micro_checkpoint)
    seen = {}

    def answer(model, processor, questions, images, **kwargs):
        seen["images"] = images
        return [q.split(" says ")[1].split("?")[0] for q in questions]  # the option's text

    monkeypatch.setattr(evaluate, "generate_texts", answer)
    assert evaluate.option_lookup_accuracy(model, processor, n=40) == 0.0  # words, not letters
    assert seen["images"] is None

    def right(model, processor, questions, images, **kwargs):
        out = []
        for q in questions:
            word = q.split(" says ")[1].split("?")[0]
            options = dict((text, letter) for letter, text in
                           re.findall(r"([A-D])\. (\w+)", q.split("Options: ")[1]))
            out.append(f"{options[word]}.")
        return out

    monkeypatch.setattr(evaluate, "generate_texts", right)
    assert evaluate.option_lookup_accuracy(model, processor, n=40) == 100.0
