"""From LLaVA-format conversations to model batches (answer tokens are the only labels).

The same collator serves teacher training, recovery training and calibration, and reads
real LLaVA-v1.5-mix665k records too: it needs only the processor and a way to open the image
a record names (`image_loader`; ShapesWorld renders it, real data opens a file).

Three choices a real checkpoint makes for itself, so that training sees what evaluation
sees and what the user passed:

- **Turn format: the checkpoint's own chat template.** A record is rendered with
  `processor.apply_chat_template`, the template `evaluate.chat_prompts` uses, so the
  training sequence cut before an answer is the evaluation prompt token for token. The
  answer spans are read off the template itself: answer k is what the conversation up to
  answer k adds to the prompt up to question k (with `add_generation_prompt`). When a
  template does not close an assistant turn with a special token (llava-1.5-hf's ends it
  with a space), the tokenizer's EOS is added after the answer, so the model learns to
  stop, as LLaVA's own training did ("</s>" after every answer).
- **Length: `max_length` tokens per sequence, image tokens included** (what the position
  table and memory see). The default is the checkpoint's (`default_max_length`): its
  tokenizer's `model_max_length` when that is a real limit, else LLaVA-1.5's 2,048, never
  more than the LLM's positions (the toys': 256). Truncation keeps whole turns: a turn that
  does not fit is dropped with every later one, never cut mid-answer. `fit` counts what
  truncation does to a set of records before any training, for the reports.
- **Image aspect: `pad` or `crop`.** `crop` is the processor's own preprocessing
  (llava-hf's resizes the short side, then centre-crops, cutting the sides of wide images);
  `pad` is LLaVA-1.5's `image_aspect_ratio=pad`: the image is first padded to a square in the
  processor's mean colour, by transformers' `LlavaImageProcessorPil(do_pad=True)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studylib.errors import StudyError
from studylib.testbed import shapes

IGNORE = -100  # label value the loss skips
IMAGE = "<image>"  # LLaVA's placeholder in a record's text
LLAVA_MAX_LENGTH = 2048  # LLaVA-1.5's model_max_length: the default when a tokenizer has none
SANE_MAX_LENGTH = 1_000_000  # above it, model_max_length is transformers' "no limit" (1e30)
IMAGE_ASPECTS = ("pad", "crop")


class FolderImages:
    """Open `root / record["image"]` as RGB (real LLaVA data); `root` names the source in
    reports and teacher-cache keys."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def __call__(self, name: str) -> Image.Image:
        with Image.open(self.root / name) as image:
            return image.convert("RGB")

    def __repr__(self) -> str:
        return f"FolderImages({str(self.root)!r})"


def folder_loader(image_folder: str | Path) -> Callable[[str], Image.Image]:
    """Open `image_folder / record["image"]` (real LLaVA data)."""
    return FolderImages(image_folder)


def default_max_length(tokenizer, config=None) -> int:
    """A checkpoint's training length, image tokens included (see module doc)."""
    positions = getattr(getattr(config, "text_config", config), "max_position_embeddings", None)
    limit = getattr(tokenizer, "model_max_length", None)
    ceiling = min(positions or SANE_MAX_LENGTH, SANE_MAX_LENGTH)
    if isinstance(limit, int) and 0 < limit <= ceiling:
        return limit
    return min(LLAVA_MAX_LENGTH, positions or LLAVA_MAX_LENGTH)


def default_image_aspect(config, real_data: bool) -> str:
    """`pad` for real data on a LLaVA-1.5 architecture (model type "llava", as LLaVA-1.5
    trained), else `crop`: ShapesWorld's square scenes keep the preprocessing the teachers
    were trained with."""
    return "pad" if real_data and getattr(config, "model_type", None) == "llava" else "crop"


def padded(image_processor):
    """The processor's image preprocessing after LLaVA-1.5's expand-to-square."""
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    settings = {k: v for k, v in image_processor.to_dict().items()
                if k not in ("image_processor_type", "processor_class", "do_pad")}
    settings.setdefault("do_center_crop", False)  # SigLIP's resize to a square has no crop
    return LlavaImageProcessorPil(**settings, do_pad=True)


def messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A LLaVA record's turns as chat messages: the image first in its user turn, as
    `evaluate.chat_prompts` writes a question."""
    out = []
    for turn in record["conversations"]:
        text = turn["value"]
        if turn["from"] == "gpt":
            out.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
            continue
        content = [{"type": "text", "text": text.replace(IMAGE, "").strip()}]
        if IMAGE in text:
            content.insert(0, {"type": "image"})
        out.append({"role": "user", "content": content})
    return out


@dataclasses.dataclass
class Fit:
    """What `max_length` does to a set of records (for the pruning and recovery reports)."""

    max_length: int
    records: int  # records looked at
    truncated: int  # records that lost at least one turn (dropped ones included)
    dropped: int  # records left with no answer to train on (the first turn does not fit)
    longest: int  # tokens of the longest record, whole

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ConversationCollator:
    """Tokenise conversations with the checkpoint's chat template, with labels (module doc).

    Only the answer tokens (and their end-of-turn token) carry labels, so the loss ignores
    image, prompt and padding tokens. Each <image> placeholder is expanded to the model's
    number of image tokens, as `LlavaProcessor.__call__` does (a test checks the two agree).
    A record without `image` (text-only, as in LLaVA's mix) gets no image tokens and no
    pixels: `pixel_values` holds the batch's images only, in record order, and is left out
    when no record has one (transformers' Llava scatters image features into the image
    tokens, so a batch may mix both kinds).

    `config` (the model's) sets the default `max_length` (`default_max_length`).
    """

    def __init__(self, processor, image_loader: Callable[[str], Image.Image] = shapes.load_image,
                 max_length: int | None = None, image_aspect: str = "crop", config=None):
        if image_aspect not in IMAGE_ASPECTS:
            raise StudyError(f"image aspect must be one of {', '.join(IMAGE_ASPECTS)}, "
                             f"got {image_aspect!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_loader = image_loader
        self.max_length = max_length or default_max_length(self.tokenizer, config)
        self.image_aspect = image_aspect
        self.image_processor = (processor.image_processor if image_aspect == "crop"
                                else padded(processor.image_processor))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.n_image_tokens = processor.num_image_tokens if hasattr(
            processor, "num_image_tokens") else processor_image_tokens(processor)
        self.closing = set(self.tokenizer.all_special_ids)  # tokens that end a turn

    def spans(self, record: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and each answer's character span in it."""
        chat = messages(record)

        def render(upto: int, prompt: bool) -> str:
            return self.processor.apply_chat_template(chat[:upto], add_generation_prompt=prompt)

        text = render(len(chat), False)
        spans = []
        for k in range(1, len(chat), 2):
            prompt, answered = render(k, True), render(k + 1, False)
            if not (answered.startswith(prompt) and text.startswith(answered)):
                raise StudyError(
                    "the checkpoint's chat template does not render a conversation as its "
                    "prompts plus answers, so the answers cannot be located for the labels")
            spans.append((len(prompt), len(answered.rstrip())))
        return text, spans

    def whole(self, record: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        """The whole record's (ids, labels, turn ends): answer k's tokens are those that
        overlap its span, its EOS is added where the template closes it with none, and
        `ends[k]` is the index just after them."""
        text, spans = self.spans(record)
        spans = [(a, b) for a, b in spans if b > a]  # an empty answer has nothing to learn
        enc = self.tokenizer(text, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]

        def inside(i: int, k: int) -> bool:
            start, end = offsets[i] if i < len(offsets) else (0, 0)
            return end > start and start < spans[k][1] and end > spans[k][0]

        ids, labels, ends = [], [], []
        k = 0  # the next answer
        for i, tok in enumerate(enc["input_ids"]):
            n = self.n_image_tokens if tok == self.image_token_id else 1
            answer = k < len(spans) and inside(i, k)
            ids += [tok] * n
            labels += [tok if answer else IGNORE] * n
            if answer and not inside(i + 1, k):  # the answer's last token
                if tok not in self.closing:
                    ids.append(self.tokenizer.eos_token_id)
                    labels.append(self.tokenizer.eos_token_id)
                ends.append(len(ids))
                k += 1
        return ids, labels, ends

    def encode(self, record: dict[str, Any]) -> tuple[list[int], list[int]]:
        """(ids, labels) of the whole turns that fit in `max_length`; a record with no turn
        that fits is refused (`fit` drops such records before training)."""
        ids, labels, ends = self.whole(record)
        if len(ids) <= self.max_length:
            return ids, labels
        kept = sum(end <= self.max_length for end in ends)
        if not kept:
            raise StudyError(f"record {record.get('id', '')!r}: no answer fits in "
                             f"{self.max_length} tokens (its first turn needs "
                             f"{ends[0] if ends else len(ids)}); drop it with `fit`")
        return ids[: ends[kept - 1]], labels[: ends[kept - 1]]

    def fit(self, records: Sequence[dict[str, Any]], progress: bool = False,
            use: str = "training") -> tuple[list[dict[str, Any]], Fit]:
        """The records that keep at least one turn at `max_length`, and what was cut; none
        left is one StudyError line naming the `use` ("training", "calibration")."""
        from tqdm.auto import tqdm

        kept, truncated, dropped, longest = [], 0, 0, 0
        for record in tqdm(records, desc="lengths", leave=False, disable=not progress):
            ids, _, ends = self.whole(record)
            fitting = sum(end <= self.max_length for end in ends)
            longest = max(longest, len(ids))
            truncated += fitting < len(ends)
            dropped += not fitting
            if fitting:
                kept.append(record)
        if records and not kept:
            raise StudyError(f"no {use} record has a turn that fits in {self.max_length} "
                             f"tokens (the longest is {longest}); raise the max length")
        return kept, Fit(self.max_length, len(records), truncated, dropped, longest)

    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(r) for r in records]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(records), width), pad, dtype=torch.long)
        labels = torch.full((len(records), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(records), width), dtype=torch.long)
        for row, (ids, lab) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            attention[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        images = [self.image_loader(r["image"]) for r in records if r.get("image") is not None]
        if images:
            batch["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch
def processor_image_tokens(processor) -> int:
    """Image tokens per image: patches, plus CLS when kept (LlavaProcessor's own rule)."""
    size = processor.image_processor.crop_size if getattr(
        processor.image_processor, "do_center_crop", False) else processor.image_processor.size
    height = size.get("height") or size.get("shortest_edge")
    width = size.get("width") or size.get("shortest_edge")
    n = (height // processor.patch_size) * (width // processor.patch_size)
    n += processor.num_additional_image_tokens
    if processor.vision_feature_select_strategy == "default":
        n -= 1
    return n
