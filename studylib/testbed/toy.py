"""The testbed's toy MLLMs, built from the real transformers classes.

Every toy model is a vision tower -> projector -> LLM in the class the real checkpoints use
(`LlavaForConditionalGeneration`, as llava-hf's LLaVA-1.5; `InternVLForConditionalGeneration`,
as OpenGVLab's InternVL "-hf" checkpoints), so pruning, LoRA, distillation, saving and
loading all run the code path a GPU user runs on the real model:

- `toy-llava`: CLIP vision tower + mlp2x-gelu + Llama text model with grouped-query attention;
- `toy-bunny`: SigLIP vision tower + mlp2x-gelu + Phi text model (parallel attention/MLP,
  partial rotary, biases), Bunny-v1.0's LLM family;
- `toy-internvl`: InternViT-style tower (CLS, layer scale, qkv biases) on 8-px patches, a
  2 x 2 pixel shuffle and InternVL's LayerNorm + MLP projector, and a Phi-3 text model
  (GQA, fused `qkv_proj` and `gate_up_proj`, no biases), the LLM of the paper's
  Mini-InternVL-4B (Phi-3-mini); `studylib.models.surgery` prunes the fused projections'
  rows by head group and channel.

Each comes in a `shallow` size (the study's teachers, `TEACHER_SIZE`), a `deep` one (testbeds
v1-v3) and a `micro` size (tests). The
processor (word-level tokenizer over the ShapesWorld vocabulary, image processor, chat
template) is saved next to the weights, so `AutoProcessor.from_pretrained(dir)` and
`AutoModelForImageTextToText.from_pretrained(dir)` load a teacher without studylib.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from studylib.errors import StudyError
from studylib.testbed import vocabulary
from studylib.testbed.shapes import IMAGE_SIZE

PATCH = 16  # one patch per grid cell: 9 image tokens

# InternVL: four 8-px patches per grid cell, merged into one token by the 2 x 2 pixel shuffle
# (downsample_ratio 0.5): 36 patches -> the same 9 image tokens, one per cell.
INTERNVL_PATCH = 8

IMAGE_TOKEN = "<image>"

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN)

# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT: ...</s>"), as in
# llava-hf's chat template, restricted to one image in the first user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% else %}{{ 'ASSISTANT: ' }}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
    "{{ '</s>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class Size:
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int


# Sizes. `shallow` (testbed v4, the committed teachers, `TEACHER_SIZE`): 6 decoder layers x
# 192, 12 heads in 6 key/value groups (Phi: 12 heads), the LLM >= 90% of the parameters, as
# in the paper's models. Layer pruning moves in 1/6 steps (15/30/45/60% -> 1/2/3/4 layers:
# 16.7/33.3/50/66.7%), width pruning in whole groups. `deep` (testbeds v1-v3): 12 layers x
# 128 in 4 key/value groups (Phi: 8 heads); its teachers computed in their first 5-7 layers
# (docs/testbed-recipe-search.md, "Depth"), and a shallow-wide toy-llava trained from
# scratch beat the deep one on every benchmark; width also trains faster per step on a CPU
# (pitfalls.md, "CPU speed"). `micro` is for tests.
ARCHS: dict[str, dict[str, Size]] = {
    "toy-llava": {
        "deep": Size(64, 2, 4, 128, 12, 8, 4, 352),
        "shallow": Size(64, 2, 4, 192, 6, 12, 6, 528),
        "micro": Size(32, 1, 2, 64, 4, 4, 2, 128),
    },
    "toy-bunny": {
        "deep": Size(64, 2, 4, 128, 12, 8, 8, 384),
        "shallow": Size(64, 2, 4, 192, 6, 12, 12, 576),
        "micro": Size(32, 1, 2, 64, 4, 4, 4, 256),
    },
    "toy-internvl": {
        "deep": Size(64, 2, 4, 128, 12, 8, 4, 352),
        "shallow": Size(64, 2, 4, 192, 6, 12, 6, 528),
        "micro": Size(32, 1, 2, 64, 4, 4, 2, 128),
    },
}
TEACHER_SIZE = "shallow"  # the size of the committed teachers, and `studylib teacher`'s default

# The LLM's initialisation scale. Measured (pitfalls.md, "Training tiny MLLMs"): with the
# Hugging Face default 0.02 a caption-only probe sat at loss 0.55 after 175 steps, colours
# and shapes guessed from their priors; with 0.08 it reached 0.19 and read them.
TEXT_INIT_STD = 0.08


# The model class of each config's model_type (InternVL is not a Llava subclass).
MODEL_CLASSES = {"llava": "LlavaForConditionalGeneration",
                 "internvl": "InternVLForConditionalGeneration"}


def build_tokenizer():
    """A word-level fast tokenizer over the fixed ShapesWorld vocabulary (`vocabulary.WORDS`).

    A fresh copy each call: tokenizers are mutable (`add_tokens`), and a change made to one
    model's tokenizer must not leak into the vocabulary of the next model built.
    """
    import copy

    return copy.deepcopy(_trained_tokenizer())


@functools.lru_cache(maxsize=1)
def _trained_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary.WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",  # batched generation; training pads right itself
    )
    return fast


def build_processor(arch: str):
    """The processor of a toy architecture: a `LlavaProcessor` for all three.

    toy-internvl too: transformers' `InternVLProcessor` cannot be built or loaded without
    torchvision (its video-processor slot needs `VideoProcessorMixin`, which transformers
    only defines with torchvision; transformers issue #48558), and torchvision does not work
    next to the CPU torch here. A LlavaProcessor whose "patch" is one 16-px cell gives the
    same 9 image tokens as InternVL's 36 patches after pixel shuffle; what is lost is only
    InternVL's `<img>`/`</img>` markers around them.
    """
    from transformers import CLIPImageProcessorPil, LlavaProcessor, SiglipImageProcessorPil

    if arch == "toy-llava":
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        )
        strategy, extra = "default", 1  # CLIP's CLS token is added, then dropped
    elif arch == "toy-internvl":
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
        )
        strategy, extra = "full", 0  # counts tokens after pixel shuffle (CLS dropped there)
    else:
        image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        strategy, extra = "full", 0  # SigLIP has no CLS token
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=PATCH,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=extra,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(arch: str, size: str = TEACHER_SIZE, vocab_size: int | None = None):
    """The LlavaConfig (InternVLConfig for toy-internvl) of a toy architecture (no weights)."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        PhiConfig,
        SiglipVisionConfig,
    )

    if arch not in ARCHS:
        raise StudyError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if size not in ARCHS[arch]:
        raise StudyError(f"unknown size {size!r}; choose from {', '.join(ARCHS[arch])}")
    s = ARCHS[arch][size]
    vocab_size = vocab_size or len(build_tokenizer())
    vision = dict(
        hidden_size=s.vision_hidden,
        intermediate_size=4 * s.vision_hidden,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=s.text_hidden,
        intermediate_size=s.text_intermediate,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads,
        num_key_value_heads=s.text_kv_heads,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        initializer_range=TEXT_INIT_STD,
    )
    if arch == "toy-internvl":
        return _internvl_config(vision, text, s)
    if arch == "toy-llava":
        vision_config = CLIPVisionConfig(**vision)
        text_config = LlamaConfig(**text, head_dim=s.text_hidden // s.text_heads)
        strategy = "default"
    else:
        vision_config = SiglipVisionConfig(**vision)
        text_config = PhiConfig(**text, partial_rotary_factor=0.5, resid_pdrop=0.0,
                                embd_pdrop=0.0, attention_dropout=0.0)
        strategy = "full"
    return LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=SPECIAL_TOKENS.index(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-1,  # two-layer towers: the last layer (LLaVA-1.5 uses -2 of 24)
        image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )


def _internvl_config(vision: dict[str, Any], text: dict[str, Any], s: Size):
    """InternVLConfig: InternViT-style tower on 8-px patches, pixel shuffle, Phi-3 with GQA.

    Phi-3 (Mini-InternVL-4B's LLM) fuses q/k/v into `qkv_proj` and gate/up into
    `gate_up_proj`; `studylib.models.surgery` prunes the fused rows.
    """
    from transformers import InternVLConfig, InternVLVisionConfig, Phi3Config

    vision_config = InternVLVisionConfig(**{**vision, "patch_size": INTERNVL_PATCH},
                                         attention_bias=True)  # InternViT has qkv biases
    text_config = Phi3Config(**text, head_dim=s.text_hidden // s.text_heads,
                             resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
    return InternVLConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=SPECIAL_TOKENS.index(IMAGE_TOKEN),
        image_seq_length=(IMAGE_SIZE // INTERNVL_PATCH) ** 2 // 4,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",  # drop CLS before the pixel shuffle
        tie_word_embeddings=False,
    )


def model_class(config):
    """The transformers class that builds `config` (Llava or InternVL)."""
    import transformers

    if config.model_type not in MODEL_CLASSES:
        raise StudyError(f"unsupported model type {config.model_type!r}; "
                         f"expected one of {', '.join(MODEL_CLASSES)}")
    return getattr(transformers, MODEL_CLASSES[config.model_type])


def build(arch: str, size: str = TEACHER_SIZE, seed: int = 0):
    """A freshly initialised (untrained) toy MLLM and its processor."""
    import torch

    processor = build_processor(arch)
    config = build_config(arch, size, vocab_size=len(processor.tokenizer))
    torch.manual_seed(seed)
    model = model_class(config)(config)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.generation_config.bos_token_id = 1
    return model, processor


# InternVL normalises with ImageNet statistics (InternViT's preprocessing, as in the InternVL
# -hf checkpoints' image-processor configs; GotOcr2's class defaults are CLIP's).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
