"""Tiny random llava-hf checkpoints of real architectures and a tiny LLaVA-format dataset,
for the tests of real data (`--data`), chat formats and lengths. Nothing is downloaded.

Checkpoints are built from transformers' own classes (CLIP + Llama as in LLaVA-1.5, SigLIP
+ Phi as in Bunny) with their real image processors at 32 and 30 px; the dataset has PNG and
JPEG files of 64x40 px and one text-only record.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from studylib.testbed import toy

# (vision config, text config, image processor, feature strategy): LLaVA-1.5 and Bunny.
STYLES = ("clip-llama", "siglip-phi")
PIXELS = {"clip-llama": 32, "siglip-phi": 30}  # the image processors' output size


def build_checkpoint(style: str, out: Path, seed: int = 0, chat_template: str = toy.CHAT_TEMPLATE,
                     special_tokens: tuple[str, ...] = (), positions: int = 512) -> Path:
    """A tiny random `style` checkpoint; `chat_template` and its `special_tokens` (added to
    the tokenizer as special, as ChatML's <|im_end|> is) stand for another model family."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PhiConfig,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    tokenizer = toy.build_tokenizer()
    if special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    vocab = len(tokenizer)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if style == "clip-llama":  # LLaVA-1.5: CLIP (CLS dropped) + Llama
        vision_config = CLIPVisionConfig(image_size=32, patch_size=8, **vision)
        text_config = LlamaConfig(**text)
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                crop_size={"height": 32, "width": 32})
        strategy, patch, extra = "default", 8, 1
    else:  # Bunny: SigLIP (no CLS) + Phi
        vision_config = SiglipVisionConfig(image_size=30, patch_size=6, **vision)
        text_config = PhiConfig(partial_rotary_factor=0.5, **text)
        image_processor = SiglipImageProcessorPil(size={"height": 30, "width": 30})
        strategy, patch, extra = "full", 6, 0
    config = LlavaConfig(vision_config=vision_config, text_config=text_config,
                         image_token_id=tokenizer.convert_tokens_to_ids(toy.IMAGE_TOKEN),
                         vision_feature_select_strategy=strategy, vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=patch, vision_feature_select_strategy=strategy,
                               num_additional_image_tokens=extra,
                               chat_template=chat_template)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# name -> (format, size, colour); one nested folder, as mix665k has (coco/train2017/...)
IMAGES = {"a.png": ("PNG", (64, 40), (200, 30, 30)),
          "sub/b.jpg": ("JPEG", (40, 64), (30, 200, 30)),
          "c.png": ("PNG", (64, 40), (30, 30, 200)),
          "sub/d.jpg": ("JPEG", (64, 40), (220, 220, 30))}


def build_dataset(root: Path) -> tuple[Path, Path]:
    """(data.json, image folder): four image records (PNG and JPEG) and one text-only one."""
    folder = root / "images"
    for name, (fmt, size, colour) in IMAGES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", size, colour)
        image.paste((255, 255, 255), (4, 4, 20, 20))  # not uniform: cropping shows
        image.save(path, fmt)
    def turn(q, a):
        return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    records = [
        {"id": "r0", "image": "a.png", "conversations": turn("<image>\nwhat colour is it?",
                                                             "red")},
        {"id": "r1", "conversations": turn("how many sides has a triangle?", "three")},
        {"id": 2, "image": "sub/b.jpg",  # an int id and <image> at the end, as in mix665k
         "conversations": turn("what colour is the shape?\n<image>", "green")
         + turn("is there a circle?", "no")},
        {"id": "r3", "image": "c.png", "conversations": turn("<image>\ncolour?", "blue")},
        {"id": "r4", "image": "sub/d.jpg", "model": "",
         "conversations": turn("<image>\nwhat colour?", "yellow")},
    ]
    data = root / "data.json"
    data.write_text(json.dumps(records, indent=1))
    return data, folder
