"""From LLaVA-format conversations to model batches (answer tokens are the only labels).

The same collator serves teacher training, recovery training and calibration, and reads
real LLaVA-v1.5-mix665k records too: it needs only the processor and a way to open the image
a record names (`image_loader`; ShapesWorld renders it, real data opens a file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studylib.testbed import shapes

IGNORE = -100  # label value the loss skips


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


class ConversationCollator:
    """Tokenise conversations exactly as the processor's chat template would, with labels.

    The sequence is <s> USER: <image>\\n q1 ASSISTANT: a1 </s> USER: q2 ASSISTANT: a2 </s>...
    Only the answer tokens and their </s> carry labels, so the loss ignores image, prompt and
    padding tokens. The single <image> placeholder is expanded to the model's number of
    image tokens, as `LlavaProcessor.__call__` does (a test checks the two agree).

    `max_length` counts a placeholder as one token, so truncation never cuts into an image's
    tokens (the model refuses a batch whose image tokens and features differ in number).
    A record without `image` (text-only, as in LLaVA's mix) gets no image tokens and no
    pixels: `pixel_values` holds the batch's images only, in record order, and is left out
    when no record has one (transformers' Llava scatters image features into the image
    tokens, so a batch may mix both kinds).
    """

    def __init__(self, processor, image_loader: Callable[[str], Image.Image] = shapes.load_image,
                 max_length: int = 256):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_loader = image_loader
        self.max_length = max_length
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.n_image_tokens = processor.num_image_tokens if hasattr(
            processor, "num_image_tokens") else processor_image_tokens(processor)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, record: dict[str, Any]) -> tuple[list[int], list[int]]:
        ids, labels = [self.tokenizer.bos_token_id], [IGNORE]
        turns = record["conversations"]
        images = 0
        for human, gpt in zip(turns[0::2], turns[1::2], strict=False):
            prompt = f"USER: {human['value'].strip()} ASSISTANT:"
            prompt_ids = []
            for tok in self._ids(prompt):
                images += tok == self.image_token_id
                prompt_ids += [tok] * (self.n_image_tokens if tok == self.image_token_id else 1)
            answer_ids = self._ids(gpt["value"]) + [self.tokenizer.eos_token_id]
            ids += prompt_ids + answer_ids
            labels += [IGNORE] * len(prompt_ids) + answer_ids
        limit = self.max_length + images * (self.n_image_tokens - 1)
        return ids[:limit], labels[:limit]

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
            batch["pixel_values"] = self.processor.image_processor(
                images, return_tensors="pt")["pixel_values"]
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
