"""Training sequences in the checkpoint's own chat format, at its own length, with LLaVA's
image padding (`testbed.data.ConversationCollator`), on tiny random checkpoints.

Three chat templates stand for the model families a GPU user brings: llava-1.5-hf's
("USER: ... ASSISTANT:", an answer closed by a space only), ChatML (llava-interleave and
onevision on Qwen2) and Phi-3's ("<|user|> ... <|end|>").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clirun import run
from PIL import Image
from tiny_llava import build_checkpoint

from studylib import models
from studylib.evaluation import evaluate
from studylib.testbed import data

TEMPLATES = {
    "llava-1.5-hf": (
        "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
        "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
        "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}", ()),
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
        "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
        "{{ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        ("<|im_start|>", "<|im_end|>")),
    "phi-3": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}"
        "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
        "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
        "{{ '<|end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
        ("<|user|>", "<|assistant|>", "<|end|>")),
}
CLOSING = {"llava-1.5-hf": "</s>", "chatml": "<|im_end|>", "phi-3": "<|end|>"}


def turn(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


RECORD = {"id": "r", "image": "wide.png",
          "conversations": turn("<image>\nwhat colour is the circle?", "red")
          + turn("is there a square?", "no") + turn("how many shapes are there?", "two")}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("templates")
    return {name: build_checkpoint("clip-llama", root / name, chat_template=template,
                                   special_tokens=tokens)
            for name, (template, tokens) in TEMPLATES.items()}


@pytest.fixture(scope="module")
def wide_image() -> Image.Image:
    image = Image.new("RGB", (64, 40), (200, 30, 30))
    image.paste((255, 255, 255), (0, 0, 12, 40))  # a white band at the left edge
    return image


@pytest.mark.parametrize("name", TEMPLATES)
def test_training_sequence_cut_before_an_answer_is_the_evaluation_prompt(
        checkpoints, wide_image, name):
    model, processor = models.load(checkpoints[name])
    collate = data.ConversationCollator(processor, image_loader=lambda _: wide_image)
    ids, labels = collate.encode(RECORD)
    chat = data.messages(RECORD)
    starts = [i for i in range(len(labels))
              if labels[i] != data.IGNORE and (i == 0 or labels[i - 1] == data.IGNORE)]
    assert len(starts) == 3
    for k, start in enumerate(starts):
        prompt = processor.apply_chat_template(chat[: 2 * k + 1], add_generation_prompt=True)
        if k == 0:  # the first is exactly what evaluation asks
            assert prompt == evaluate.chat_prompts(processor, ["what colour is the circle?"])[0]
        reference = list(processor(text=prompt, images=wide_image)["input_ids"][0])
        prefix = ids[:start]
        if name == "llava-1.5-hf":  # its template ends an answer with a space: the collator
            eos = processor.tokenizer.eos_token_id  # adds LLaVA's "</s>" after each one
            assert prefix.count(eos) == k and eos not in reference
            prefix = [t for t in prefix if t != eos]
        assert prefix == reference, (name, k)
    # labels: each answer's tokens and the token that closes its turn, nothing else
    answers = [[t for t in labels[s:] if t != data.IGNORE] for s in starts]
    answers = [a[: len(a) - len(b)] for a, b in zip(answers, answers[1:] + [[]], strict=True)]
    closing = processor.tokenizer.convert_tokens_to_ids(CLOSING[name])
    for answer, text in zip(answers, ["red", "no", "two"], strict=True):
        assert answer == processor.tokenizer(text, add_special_tokens=False)["input_ids"] + [
            closing]
    batch = collate([RECORD])
    assert torch.isfinite(model(**batch).loss)


def test_the_three_formats_side_by_side(checkpoints):
    """What the closing note shows: one record in each checkpoint's own format."""
    texts = {}
    for name in TEMPLATES:
        _, processor = models.peek(checkpoints[name])
        texts[name] = data.ConversationCollator(processor).spans(RECORD)[0]
    assert texts["llava-1.5-hf"].startswith("USER: <image>\nwhat colour is the circle? "
                                            "ASSISTANT: red USER: is there")
    assert "<|im_start|>assistant\nred<|im_end|>\n<|im_start|>user\nis there" in texts["chatml"]
    assert "<|assistant|>\nred<|end|>\n<|user|>\nis there" in texts["phi-3"]


def test_default_max_length_comes_from_the_checkpoint():
    class Tok:
        def __init__(self, n):
            self.model_max_length = n

    class Text:
        def __init__(self, n):
            self.max_position_embeddings = n

    class Config:
        def __init__(self, n):
            self.text_config = Text(n)

    huge = int(1e30)  # transformers' "no limit"
    assert data.default_max_length(Tok(huge), Config(256)) == 256  # the toys
    assert data.default_max_length(Tok(huge), Config(4096)) == data.LLAVA_MAX_LENGTH == 2048
    assert data.default_max_length(Tok(4096), Config(4096)) == 4096
    assert data.default_max_length(Tok(huge)) == 2048
    assert data.default_max_length(Tok(8192), Config(4096)) == 2048  # above its positions


def long_conversation(n_turns: int) -> dict:
    question = "<image>\n" + " ".join(["is there a red circle left of the blue square?"] * 4)
    answer = " ".join(["yes the red circle is left of the blue square"] * 3)
    conversations = turn(question, answer)
    for _ in range(n_turns - 1):
        conversations += turn(question.removeprefix("<image>\n"), answer)
    return {"id": "long", "image": "wide.png", "conversations": conversations}


def test_whole_turns_are_kept_and_a_long_record_is_counted(checkpoints, wide_image):
    _, processor = models.load(checkpoints["chatml"])
    collate = data.ConversationCollator(processor, image_loader=lambda _: wide_image,
                                        max_length=512)
    record = long_conversation(20)
    whole, labels, ends = collate.whole(record)
    assert len(whole) > 1500 and len(ends) == 20
    ids, cut = collate.encode(record)
    assert len(ids) <= 512 and len(ids) in ends  # the cut falls at the end of a turn
    assert cut[-1] == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids == whole[: len(ids)] and cut == labels[: len(ids)]
    kept, fit = collate.fit([record, RECORD])
    assert kept == [record, RECORD]
    assert (fit.truncated, fit.dropped, fit.longest) == (1, 0, len(whole))
    tiny = data.ConversationCollator(processor, image_loader=lambda _: wide_image, max_length=20)
    short = {"id": "short", "conversations": turn("is there a square?", "no")}  # text only
    kept, fit = tiny.fit([record, short])
    assert kept == [short] and (fit.truncated, fit.dropped) == (1, 1)
    with pytest.raises(data.StudyError, match="no training record has a turn that fits in 20"):
        tiny.fit([record])
    with pytest.raises(data.StudyError, match="no answer fits in 20 tokens"):
        tiny.encode(record)


@pytest.fixture(scope="module")
def long_data(tmp_path_factory, wide_image) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("long")
    (root / "images").mkdir()
    wide_image.save(root / "images" / "wide.png")
    (root / "data.json").write_text(json.dumps([long_conversation(20), RECORD]))
    return root / "data.json", root / "images"


def test_a_1500_token_conversation_trains_whole_by_default_and_is_counted_at_512(
        tmp_path, capsys, long_data):
    """Through the CLI, on a LLaVA-1.5-shaped checkpoint with 4,096 positions: the default
    length is LLaVA's 2,048; both reports record the length, the truncation and the
    image aspect (pad: LLaVA-1.5's, the default for --data on a llava checkpoint)."""
    ckpt = build_checkpoint("clip-llama", tmp_path / "ckpt", positions=4096)
    path, folder = long_data
    real = ["--data", path, "--image-folder", folder, "--device", "cpu"]
    lengths = {}
    for max_length in (None, 512):
        extra = [] if max_length is None else ["--max-length", max_length]
        pruned = tmp_path / f"pruned-{max_length}"
        code, _, err = run(["prune", "--model", ckpt, "--method", "width", "--ratio", "0.3",
                            "--calib-samples", "2", *real, *extra, "--out", pruned], capsys)
        assert code == 0, err[-2000:]
        calibration = json.loads((pruned / "pruning_report.json").read_text())["calibration"]
        out = tmp_path / f"recovered-{max_length}"
        code, stdout, err = run(["recover", "--student", pruned, "--teacher", ckpt, "--recipe",
                                 "sft", "--max-steps", "1", *real, *extra,
                                 "--cache-dir", tmp_path / "cache", "--out", out], capsys)
        assert code == 0, err[-2000:]
        report = json.loads((out / "recovery_report.json").read_text())
        assert report["lengths"] == {k: v for k, v in calibration.items() if k != "image_aspect"}
        assert report["image_aspect"] == calibration["image_aspect"] == "pad"
        lengths[max_length] = report["lengths"]
        assert ("lost turns" in stdout) == (max_length == 512)
    assert lengths[None]["max_length"] == 2048 and lengths[None]["truncated"] == 0
    assert lengths[None]["longest"] > 1500
    assert lengths[512] == {**lengths[None], "max_length": 512, "truncated": 1}


def test_pad_is_llavas_expand_to_square_and_crop_the_processors(checkpoints, wide_image):
    _, processor = models.peek(checkpoints["llava-1.5-hf"])
    ip = processor.image_processor
    mean = tuple(int(x * 255) for x in ip.image_mean)
    square = Image.new("RGB", (64, 64), mean)  # LLaVA's expand2square
    square.paste(wide_image, (0, (64 - 40) // 2))
    pad = data.ConversationCollator(processor, image_aspect="pad").image_processor
    padded = pad([wide_image], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(padded, ip([square], return_tensors="pt")["pixel_values"],
                               atol=0.02, rtol=0)
    cropped = ip([wide_image], return_tensors="pt")["pixel_values"]
    assert (padded - cropped).abs().max() > 0.5  # the crop cut the white band off
    scene = Image.new("RGB", (48, 48), (10, 200, 30))  # a square image: the two agree
    torch.testing.assert_close(pad([scene], return_tensors="pt")["pixel_values"],
                               ip([scene], return_tensors="pt")["pixel_values"])
    with pytest.raises(data.StudyError, match="image aspect must be one of pad, crop"):
        data.ConversationCollator(processor, image_aspect="stretch")


def test_default_image_aspect():
    class Config:
        def __init__(self, kind):
            self.model_type = kind

    assert data.default_image_aspect(Config("llava"), real_data=True) == "pad"
    assert data.default_image_aspect(Config("llava"), real_data=False) == "crop"
    assert data.default_image_aspect(Config("llava_onevision"), real_data=True) == "crop"
