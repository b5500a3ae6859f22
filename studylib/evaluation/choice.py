"""Multiple choice scored by option log-likelihood (the cloze formulation).

SQA and MMMU are scored two ways (`evaluate.FORMULATIONS`):

- **letter**: the model generates, and the first token must be the right letter A-D
  (`metrics.parse_letter`): the format of the real benchmarks' generation-based scoring;
- **cloze**: the question is asked without its lettered options, as an open question
  ("... Answer the question using a single word or phrase."), and each option's text is
  scored as the answer by its log-likelihood; the most likely option is the prediction,
  written as its letter so that both formulations share one metric. This is OLMES's cloze
  formulation (Gu et al., 2024) and lm-evaluation-harness's `multiple_choice` output type.

Small language models fail the letter format long before they fail the cloze one (OLMES):
mapping an answer onto its letter is a skill of its own. Chapter 00 shows both for every
teacher, and why the headline uses the one it uses.

The answer's tokens are encoded on their own, after the prompt, exactly as the training
collator encodes an answer (`studylib.testbed.data`), so the scored sequence is the one the
model was trained to produce. Scores are raw sums of the answer tokens' log-probabilities
(lm-evaluation-harness's `acc`; OLMES's "none" normalisation): on the testbed every option
is one token, and `normalised` divides by the option's characters where a caller wants
lm-evaluation-harness's `acc_norm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from studylib.testbed import shapes, suite

_OPTIONS_LINE = "\nOptions: "


def cloze_question(item: suite.Item) -> str:
    """The item's question without its lettered options, as an open short-answer question."""
    question = item.question.split(_OPTIONS_LINE)[0]
    return f"{question}\n{shapes.SHORT_ANSWER}"


def _right_padded(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists as one right-padded batch: (input_ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    for n, s in enumerate(seqs):
        input_ids[n, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention[n, : len(s)] = 1
    return input_ids, attention


def _logits(model, enc, rows: Sequence[int], seqs: Sequence[Sequence[int]],
            pad: int) -> torch.Tensor:
    """The model's logits (float32) for `seqs`, the n-th with the image of encoded item
    `rows[n]` (its pixel values, and image sizes where a processor gives them)."""
    input_ids, attention = _right_padded(seqs, pad)
    index = torch.tensor(list(rows))
    images = {k: v[index] for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    if "pixel_values" in images:
        images["pixel_values"] = images["pixel_values"].to(model.dtype)
    device = next(model.parameters()).device
    return model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                 **{k: v.to(device) for k, v in images.items()}).logits.float()


class OptionScore(NamedTuple):
    """One option after one prompt."""

    logprob: float  # the sum of the option tokens' log-probabilities
    tokens: int  # how many tokens the option has
    greedy: bool  # whether greedy decoding from the prompt produces exactly these tokens


@torch.no_grad()
def option_logprobs(model, processor, chats: Sequence[str], images: Sequence,
                    options: Sequence[Sequence[str]], batch_size: int = 16,
                    progress: bool = True) -> list[list[OptionScore]]:
    """Per chat prompt, per option: its `OptionScore`.

    `chats` are prompts already in the model's chat format (`evaluate.chat_prompts`). One
    forward pass over a batch of prompts (with their images) gives every one-token option
    its log-probability at once; an option of several tokens is scored as its own sequence,
    the prompt followed by the option's tokens, in a second pass.
    """
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[OptionScore]] = [[] for _ in chats]
    order = sorted(range(len(chats)), key=lambda i: len(chats[i]))
    for start in tqdm(range(0, len(order), batch_size), desc="cloze", leave=False,
                      disable=not progress):
        idx = order[start : start + batch_size]
        enc = processor(text=[chats[i] for i in idx], images=[images[i] for i in idx],
                        return_tensors="pt", padding=True)
        contexts = [enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
                    for row in range(len(idx))]
        answers = [[tokenizer(o, add_special_tokens=False)["input_ids"] for o in options[i]]
                   for i in idx]
        logits = _logits(model, enc, range(len(idx)), contexts, pad)
        last = torch.log_softmax(
            logits[torch.arange(len(idx)), [len(c) - 1 for c in contexts]], dim=-1)
        long = [(row, k) for row, ans in enumerate(answers)
                for k, a in enumerate(ans) if len(a) != 1]
        scored: dict[tuple[int, int], OptionScore] = {}
        if long:
            seqs = [contexts[row] + answers[row][k] for row, k in long]
            logits = _logits(model, enc, [row for row, _ in long], seqs, pad)
            for n, (row, k) in enumerate(long):
                begin, target = len(contexts[row]), answers[row][k]
                logp = torch.log_softmax(logits[n, begin - 1 : begin - 1 + len(target)], -1)
                ids = torch.tensor(target, dtype=torch.long, device=logp.device)
                scored[row, k] = OptionScore(float(logp.gather(1, ids[:, None]).sum()),
                                             len(target), bool((logp.argmax(-1) == ids).all()))
        for row, i in enumerate(idx):
            out[i] = [scored.get((row, k)) or OptionScore(
                float(last[row, a[0]]), 1, int(last[row].argmax()) == a[0])
                for k, a in enumerate(answers[row])]
    return out


def pick(scores: Sequence[Sequence], options: Sequence[str], normalised: bool = False) -> str:
    """The letter of the most likely option (raw sum, or per character when `normalised`);
    ties go to the first. Each score's first field is the log-likelihood: an `OptionScore`,
    or the (log-likelihood, is-greedy) pair lmms-eval hands a task."""
    values = [s[0] / max(1, len(opt)) if normalised else s[0]
              for s, opt in zip(scores, options, strict=True)]
    return shapes.LETTERS[max(range(len(values)), key=values.__getitem__)]
