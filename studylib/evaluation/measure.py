"""Resource measurements of an MLLM: parameters, forward FLOPs, peak memory, latency.

`measure(model)` answers the paper's Table 1/7 questions for any Llava-layout model, and
`arch_table()` does so for the paper's real architectures without their weights: LLaVA-1.5-7B
and Bunny-v1.0-3B are instantiated on PyTorch's meta device from hand-written configs (the
public values of their components), pruned structurally (`prune.shrink`: counts depend on
how many heads/channels/layers go, not on which) and measured. The paper's own numbers are
set beside ours one floor up, in `studylib.analysis.resources`.

Conventions, stated because published numbers differ on them:

- **Input**: one image plus a text prompt of `text_tokens` tokens; the image's tokens (576
  for LLaVA-1.5, 729 for Bunny) are part of the LLM's sequence and are counted. The paper's
  9.57 TFLOPs for LLaVA-1.5-7B matches ~100 text tokens (its prompt template included).
- **FLOPs = 2 x MACs**, counted by `torch.utils.flop_counter.FlopCounterMode` over one
  forward pass without KV cache, with **eager attention**: sdpa kernels hide the attention
  matmuls from the counter.
- **Peak memory**: parameters + buffers + live activations during that forward, tracked
  per tensor by torch's `MemTracker` (a dispatch-mode tracker; it works on CPU and on meta
  tensors), in the model's dtype. It is an accounting of tensors, not allocator or RSS
  memory; for the real architectures the model is built in fp16 as the paper ran it.
- **Latency**: wall time of real runs (not on meta), median and interquartile range over
  `repeats`, for batch 1 and 8, prefill (the whole prompt) and per-token decode with the
  KV cache.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from studylib import models
from studylib.compress import prune
from studylib.errors import StudyError
from studylib.evaluation.inputs import example_inputs, image_tokens
from studylib.evaluation.latency import latency
from studylib.models import surgery
from studylib.testbed.data import processor_image_tokens

RATIOS = (0.0, 0.15, 0.30, 0.45, 0.60)
GIB = 2**30
MIB = 2**20

# The paper's real architectures, built from configs alone (`arch_config`).
ARCHS = ("llava-1.5-7b", "bunny-v1.0-3b")


# ---------------------------------------------------------------------------------------------
# Real architectures (configs only)


def arch_config(name: str):
    """LlavaConfig of a paper model, written from the public configs of its parts.

    llava-1.5-7b: CLIP ViT-L/14 at 336 px (577 tokens, CLS dropped -> 576, features of the
    penultimate layer), mlp2x-gelu projector, Vicuna-7B-v1.5 = Llama-2-7B (llava-hf's
    vocabulary of 32064, which adds the image and pad tokens).
    bunny-v1.0-3b: SigLIP-so400m/14 at 384 px (729 tokens, penultimate layer, the whole
    tower incl. its pooling head runs, as Bunny's SiglipVisionTower does), mlp2x-gelu,
    Phi-2 (2560 hidden, 32 layers, 32 heads, partial rotary 0.4).
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        PhiConfig,
        SiglipVisionConfig,
    )

    if name == "llava-1.5-7b":
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14,
                                  projection_dim=768, hidden_act="quick_gelu")
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                           num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                           head_dim=128, max_position_embeddings=4096, rms_norm_eps=1e-5,
                           pad_token_id=32001, tie_word_embeddings=False)
        return LlavaConfig(vision_config=vision, text_config=text, image_token_id=32000,
                           projector_hidden_act="gelu", vision_feature_select_strategy="default",
                           vision_feature_layer=-2, image_seq_length=576)
    if name == "bunny-v1.0-3b":
        vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                    num_attention_heads=16, image_size=384, patch_size=14,
                                    hidden_act="gelu_pytorch_tanh")
        text = PhiConfig(vocab_size=51200, hidden_size=2560, intermediate_size=10240,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         max_position_embeddings=2048, partial_rotary_factor=0.4,
                         hidden_act="gelu_new", layer_norm_eps=1e-5, tie_word_embeddings=False)
        text.head_dim = 80
        return LlavaConfig(vision_config=vision, text_config=text, image_token_id=50295,
                           projector_hidden_act="gelu", vision_feature_select_strategy="full",
                           vision_feature_layer=-2, image_seq_length=729)
    raise StudyError(f"unknown arch {name!r}; choose from {', '.join(ARCHS)}")


def build_meta(name: str, dtype: torch.dtype = torch.float16):
    """The architecture on the meta device: shapes and dtypes, no memory, no weights."""
    from transformers import LlavaForConditionalGeneration

    config = arch_config(name)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config).to(dtype)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Inputs


@contextlib.contextmanager
def _counting(model):
    """Eager attention (so its matmuls are counted) and, on meta, no data-dependent checks."""
    sub = {"": model.config._attn_implementation,
           "text_config": model.config.text_config._attn_implementation,
           "vision_config": model.config.vision_config._attn_implementation}
    meta = next(model.parameters()).is_meta
    old_check = os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    model.set_attn_implementation("eager")
    if meta:  # Llava compares image-token counts with .item(), impossible without data
        os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    try:
        yield
    finally:
        model.set_attn_implementation(sub)
        if meta:
            if old_check is None:
                os.environ.pop("TRANSFORMERS_DISABLE_TORCH_CHECK", None)
            else:
                os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = old_check


# ---------------------------------------------------------------------------------------------
# Measurements


def count_flops(model, text_tokens: int = 50) -> dict[str, int]:
    """Forward FLOPs (2 x MACs) for one image + text_tokens, total and per part."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = example_inputs(model, text_tokens)
    counter = FlopCounterMode(display=False)
    with _counting(model), counter, torch.no_grad():
        model(**inputs, use_cache=False)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    part = {k: counts.get(f"{root}.{k}", 0) for k in (
        "model.vision_tower", "model.multi_modal_projector", "model.language_model", "lm_head")}
    return {"total": counts.get("Global", 0), "vision": part["model.vision_tower"],
            "projector": part["model.multi_modal_projector"],
            "llm": part["model.language_model"] + part["lm_head"],
            "sequence_length": inputs["input_ids"].shape[1]}


def peak_memory(model, text_tokens: int = 50) -> dict[str, Any]:
    """Peak of tracked tensor memory during one forward (see the module docstring)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    inputs = example_inputs(model, text_tokens)
    tracker = MemTracker()
    tracker.track_external(model)
    with _counting(model), tracker, torch.no_grad():
        model(**inputs, use_cache=False)
    snapshot = tracker.get_tracker_snapshot("peak")
    peak = max(snapshot.values(), key=lambda d: d["Total"])  # the model's device
    param = next(model.parameters())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    result = {"peak_mib": peak["Total"] / MIB, "parameters_mib": params / MIB,
              "dtype": str(param.dtype).replace("torch.", ""),
              "method": "torch MemTracker: params + buffers + live activations, eager "
                        "attention, no KV cache"}
    if param.device.type == "cuda":  # the allocator's own peak, as the paper measured
        torch.cuda.reset_peak_memory_stats(param.device)
        with _counting(model), torch.no_grad():
            model(**inputs, use_cache=False)
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(param.device) / MIB
    return result


def measure(model, processor=None, text_tokens: int = 50, *, batch_sizes=(1, 8),
            repeats: int = 5, decode_tokens: int = 8, timing: bool = True) -> dict[str, Any]:
    """Parameters, FLOPs, peak memory and (off the meta device) latency of `model`.

    `processor`, when given, must agree with the config on the image-token count (the
    inputs are built from the config, so a mismatch would make the FLOPs wrong).
    """
    if processor is not None and processor_image_tokens(processor) != image_tokens(model.config):
        raise StudyError(f"processor gives {processor_image_tokens(processor)} image tokens, "
                         f"the config {image_tokens(model.config)}")
    model.eval()
    flops = count_flops(model, text_tokens)
    result = {
        "parameters": models.parameter_counts(model),
        "image_tokens": image_tokens(model.config),
        "text_tokens": text_tokens,
        "flops": flops,
        "tflops": flops["total"] / 1e12,
        "flops_convention": "2 x MACs, FlopCounterMode, eager attention, one forward, no cache",
        "memory": peak_memory(model, text_tokens),
    }
    if timing and not next(model.parameters()).is_meta:
        result["latency"] = latency(model, text_tokens, batch_sizes, repeats, decode_tokens)
        result["threads"] = torch.get_num_threads()
    return result


# ---------------------------------------------------------------------------------------------
# The real architectures, pruned (`studylib.analysis.resources` sets the paper's cells beside)


def arch_row(name: str, method: str, ratio: float, text_tokens: int = 50) -> dict[str, Any]:
    """Params, FLOPs and memory of one (pruned) paper architecture."""
    model = build_meta(name)
    if ratio > 0:
        prune.shrink(model, method, ratio)
    params = models.parameter_counts(model)
    flops = count_flops(model, text_tokens)
    memory = peak_memory(model, text_tokens)
    return {"arch": name, "method": "none" if ratio == 0 else method, "ratio": ratio,
            "params": params["total"], "params_b": params["total"] / 1e9,
            "llm_params_b": params["llm"] / 1e9,
            "decoder_ratio": 1 - surgery.decoder_params(model) / _full_decoder(name),
            "tflops": flops["total"] / 1e12, "memory_mib": memory["peak_mib"],
            "weights_mib": memory["parameters_mib"]}


def _full_decoder(name: str) -> int:
    return surgery.decoder_params(build_meta(name))


def arch_table(name: str, ratios=RATIOS, methods=("width", "layer"),
               text_tokens: int = 50) -> list[dict[str, Any]]:
    """Rows for ratio 0 and each (method, ratio > 0), as in the paper's Tables 1 and 7."""
    rows = [arch_row(name, "none", 0.0, text_tokens)] if 0 in ratios else []
    for method in methods:
        rows += [arch_row(name, method, r, text_tokens) for r in ratios if r > 0]
    return rows


def format_measure(result: dict[str, Any]) -> str:
    p, f = result["parameters"], result["flops"]
    lines = [
        f"parameters  total {p['total']:,}  vision {p['vision']:,}  projector "
        f"{p['projector']:,}  LLM {p['llm']:,}",
        f"FLOPs       {f['total']:.4g} (2 x MACs; {result['image_tokens']} image + "
        f"{result['text_tokens']} text tokens; vision {f['vision']:.3g}, LLM {f['llm']:.3g})",
        f"peak memory {result['memory']['peak_mib']:.1f} MiB ({result['memory']['dtype']}; "
        f"weights {result['memory']['parameters_mib']:.1f} MiB)",
    ]
    for batch, lat in result.get("latency", {}).items():
        pre, dec = lat["prefill"], lat["decode_per_token"]
        lines.append(f"latency {batch}: prefill {pre['median_ms']:.2f} ms (IQR "
                     f"{pre['iqr_ms']:.2f}), decode {dec['median_ms']:.2f} ms/token (IQR "
                     f"{dec['iqr_ms']:.2f})")
    return "\n".join(lines)
