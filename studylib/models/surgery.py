"""Decoder geometry and surgery: the prunable linears of a layer, their shapes, and removing layers, heads and channels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from studylib.errors import StudyError


@dataclasses.dataclass(frozen=True)
class Parts:
    """The prunable linears of one decoder layer (Llama/Mistral/Qwen2 or Phi names)."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    mlp_in: tuple[nn.Linear, ...]
    mlp_out: nn.Linear


def parts(layer: nn.Module) -> Parts:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    o = getattr(attn, "o_proj", None) or getattr(attn, "dense", None)
    if attn is None or mlp is None or o is None or not hasattr(attn, "q_proj"):
        raise StudyError(f"unsupported decoder layer {type(layer).__name__}: "
                         "expected self_attn.q/k/v_proj + o_proj|dense and an mlp")
    if getattr(attn, "qk_layernorm", False):
        raise StudyError("Phi with qk_layernorm is not supported (its norms span hidden/heads)")
    if hasattr(mlp, "gate_proj"):
        mlp_in, mlp_out = (mlp.gate_proj, mlp.up_proj), mlp.down_proj
    elif hasattr(mlp, "fc1"):
        mlp_in, mlp_out = (mlp.fc1,), mlp.fc2
    else:
        raise StudyError(f"unsupported MLP {type(mlp).__name__}: expected gate/up/down or fc1/fc2")
    return Parts(attn.q_proj, attn.k_proj, attn.v_proj, o, mlp_in, mlp_out)


def text_config(model):
    return model.config.text_config


def head_dim(config) -> int:
    """The per-head width; Phi's config has no field for it, so fall back as Phi does."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


@dataclasses.dataclass(frozen=True)
class LayerShape:
    heads: int
    kv_heads: int
    intermediate: int


def layer_shape(layer: nn.Module, hd: int) -> LayerShape:
    p = parts(layer)
    return LayerShape(p.q.out_features // hd, p.k.out_features // hd, p.mlp_out.in_features)


def decoder_params(model) -> int:
    """Parameters in the LLM's decoder layers: the denominator of the pruning ratio."""
    return sum(p.numel() for p in text_layers(model).parameters())


def _row_params(linear: nn.Linear) -> int:
    return linear.in_features + (1 if linear.bias is not None else 0)


def unit_params(layer: nn.Module, hd: int, n_rep: int) -> tuple[int, int]:
    """Parameters in one attention group (kv head + its q heads) and in one MLP channel."""
    p = parts(layer)
    attn = hd * (n_rep * _row_params(p.q) + _row_params(p.k) + _row_params(p.v))
    attn += n_rep * hd * p.o.out_features
    channel = sum(_row_params(m) for m in p.mlp_in) + p.mlp_out.out_features
    return attn, channel


def remove_layers(model, drop: Sequence[int]) -> None:
    """Delete decoder layers and renumber the rest, so the KV cache indexes them correctly."""
    lm = model.model.language_model
    drop = set(drop)
    keep = [i for i in range(len(lm.layers)) if i not in drop]
    lm.layers = nn.ModuleList([lm.layers[i] for i in keep])
    for j, layer in enumerate(lm.layers):
        layer.self_attn.layer_idx = j
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = j
    tc = text_config(model)
    if getattr(tc, "layer_types", None):
        tc.layer_types = [tc.layer_types[i] for i in keep]
    tc.num_hidden_layers = len(keep)


def _head_rows(groups: Sequence[int], n_rep: int, hd: int) -> list[int]:
    """q_proj rows (= o_proj columns) of every query head in the given kv groups."""
    heads = [h for g in groups for h in range(g * n_rep, (g + 1) * n_rep)]
    return [h * hd + d for h in heads for d in range(hd)]


def prune_layer_width(layer, groups: Sequence[int], channels: Sequence[int], hd: int,
                      n_rep: int) -> None:
    """Remove kv groups (with their q heads) and MLP channels from one decoder layer."""
    import torch_pruning as tp

    p = parts(layer)
    if groups:
        q_rows = _head_rows(groups, n_rep, hd)
        kv_rows = _head_rows(groups, 1, hd)
        tp.prune_linear_out_channels(p.q, q_rows)
        tp.prune_linear_out_channels(p.k, kv_rows)
        tp.prune_linear_out_channels(p.v, kv_rows)
        tp.prune_linear_in_channels(p.o, q_rows)
    if channels:
        for lin in p.mlp_in:
            tp.prune_linear_out_channels(lin, list(channels))
        tp.prune_linear_in_channels(p.mlp_out, list(channels))


def set_width_config(model, layer_ids, n_layers: int) -> bool:
    """Write the new widths into the text config when every layer shrank alike."""
    tc = text_config(model)
    hd = head_dim(tc)
    tc.head_dim = hd  # Phi has no such field; without it Phi derives hidden/heads
    if len(layer_ids) != n_layers:
        return False
    shape = layer_shape(text_layers(model)[0], hd)
    tc.num_attention_heads = shape.heads
    tc.num_key_value_heads = shape.kv_heads
    tc.intermediate_size = shape.intermediate
    return True


def parameter_counts(model) -> dict[str, int]:
    """Parameters by part: total, vision tower, projector, LLM (text model + LM head)."""
    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    inner = model.model
    vision = count(inner.vision_tower)
    projector = count(inner.multi_modal_projector)
    llm = count(inner.language_model) + count(model.lm_head)
    return {"total": count(model), "vision": vision, "projector": projector, "llm": llm}


def text_layers(model):
    """The LLM's decoder layers (an nn.ModuleList)."""
    return model.model.language_model.layers


def base_model(model):
    """The LlavaForConditionalGeneration under DDP / peft wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


class LayerTap:
    """Forward hooks keeping decoder-layer outputs (before the final norm) by negative index."""

    def __init__(self, model, indices: Sequence[int]):
        layers = text_layers(base_model(model))
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = [layers[len(layers) + i].register_forward_hook(self._keep(i))
                        for i in indices]

    def _keep(self, index: int):
        def hook(module, args, output):
            self.outputs[index] = output[0] if isinstance(output, tuple) else output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
