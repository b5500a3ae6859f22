"""Example inputs for resource measurements: a batch of one image and text_tokens text tokens for any Llava-layout model."""

from __future__ import annotations

import torch

from studylib.errors import StudyError


def _pair(value) -> tuple[int, int]:
    """InternVL's vision config gives sizes as (height, width), CLIP/SigLIP as one int."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def image_tokens(config) -> int:
    """LLM positions one image takes: patches, plus CLIP's CLS unless the strategy drops it.

    InternVL drops its CLS and merges each 2 x 2 block of patches (pixel shuffle at
    `downsample_ratio` 0.5), so it has a quarter of the patches.
    """
    vc = config.vision_config
    (height, width), (ph, pw) = _pair(vc.image_size), _pair(vc.patch_size)
    n = (height // ph) * (width // pw)
    if config.model_type == "internvl":
        return round(n * config.downsample_ratio ** 2)
    if vc.model_type == "clip_vision_model":
        n += 1
    if config.vision_feature_select_strategy == "default":
        n -= 1
    return n


def example_inputs(model, text_tokens: int, batch: int = 1) -> dict[str, torch.Tensor]:
    """<bos> + one image's tokens + (text_tokens - 1) ordinary tokens, per batch row."""
    if text_tokens < 1:
        raise StudyError(f"text tokens must be >= 1, got {text_tokens}")
    config = model.config
    param = next(model.parameters())
    vocab = config.text_config.vocab_size
    text_id = next(i for i in (3, 4, 5) if i != config.image_token_id)
    row = [1] + [config.image_token_id] * image_tokens(config) + [text_id] * (text_tokens - 1)
    ids = torch.tensor([row] * batch, dtype=torch.long, device=param.device) % vocab
    vc = config.vision_config
    pixels = torch.zeros(batch, vc.num_channels, *_pair(vc.image_size),
                         dtype=param.dtype, device=param.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}
