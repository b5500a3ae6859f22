"""Decoder geometry and surgery: the prunable linears of a layer, their shapes, and removing layers, heads and channels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from studylib.errors import StudyError


@dataclasses.dataclass(frozen=True)
class Rows:
    """A block of output rows of a linear: all of it, or one slice of a fused projection
    (Phi-3's `qkv_proj` = [q | k | v], `gate_up_proj` = [gate | up])."""

    linear: nn.Linear
    start: int
    size: int

    def weight(self) -> torch.Tensor:
        return self.linear.weight[self.start:self.start + self.size]

    def bias(self) -> torch.Tensor | None:
        b = self.linear.bias
        return None if b is None else b[self.start:self.start + self.size]


def _whole(linear: nn.Linear) -> Rows:
    return Rows(linear, 0, linear.out_features)


def _split(linear: nn.Linear, sizes: Sequence[int]) -> tuple[Rows, ...]:
    if sum(sizes) != linear.out_features:
        raise StudyError(f"fused projection has {linear.out_features} rows, expected {sum(sizes)}")
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(Rows(linear, a, n) for a, n in zip(starts, sizes, strict=True))


@dataclasses.dataclass(frozen=True)
class Parts:
    """The prunable rows and linears of one decoder layer (Llama/Mistral/Qwen2, Phi or
    Phi-3 names); q/k/v and the MLP inputs may be slices of one fused linear."""

    q: Rows
    k: Rows
    v: Rows
    o: nn.Linear
    mlp_in: tuple[Rows, ...]
    mlp_out: nn.Linear

    def linears(self) -> list[nn.Linear]:
        """Every prunable linear once (a fused one is not repeated)."""
        seen = [r.linear for r in (self.q, self.k, self.v, *self.mlp_in)] + [self.o, self.mlp_out]
        return list({id(lin): lin for lin in seen}.values())


def parts(layer: nn.Module) -> Parts:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    o = getattr(attn, "o_proj", None) or getattr(attn, "dense", None)
    fused = hasattr(attn, "qkv_proj")
    if attn is None or mlp is None or o is None or not (fused or hasattr(attn, "q_proj")):
        raise StudyError(f"unsupported decoder layer {type(layer).__name__}: expected "
                         "self_attn.q/k/v_proj (or qkv_proj) + o_proj|dense and an mlp")
    if getattr(attn, "qk_layernorm", False):
        raise StudyError("Phi with qk_layernorm is not supported (its norms span hidden/heads)")
    if fused:  # Phi-3: rows [q heads | k heads | v heads]; q heads = o_proj columns
        q_size = o.in_features
        kv = (attn.qkv_proj.out_features - q_size) // 2
        q, k, v = _split(attn.qkv_proj, (q_size, kv, kv))
    else:
        q, k, v = _whole(attn.q_proj), _whole(attn.k_proj), _whole(attn.v_proj)
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: rows [gate | up], chunked in two
        mlp_in, mlp_out = _split(mlp.gate_up_proj, (mlp.down_proj.in_features,) * 2), mlp.down_proj
    elif hasattr(mlp, "gate_proj"):
        mlp_in, mlp_out = (_whole(mlp.gate_proj), _whole(mlp.up_proj)), mlp.down_proj
    elif hasattr(mlp, "fc1"):
        mlp_in, mlp_out = (_whole(mlp.fc1),), mlp.fc2
    else:
        raise StudyError(f"unsupported MLP {type(mlp).__name__}: expected gate/up/down, "
                         "gate_up/down or fc1/fc2")
    return Parts(q, k, v, o, mlp_in, mlp_out)


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
    return LayerShape(p.q.size // hd, p.k.size // hd, p.mlp_out.in_features)


def decoder_params(model) -> int:
    """Parameters in the LLM's decoder layers: the denominator of the pruning ratio."""
    return sum(p.numel() for p in text_layers(model).parameters())


def _row_params(rows: Rows) -> int:
    return rows.linear.in_features + (1 if rows.linear.bias is not None else 0)


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
    """Remove kv groups (with their q heads) and MLP channels from one decoder layer.

    A fused linear is cut once, with the rows of all its slices together (cutting q first
    would shift the rows of k and v).
    """
    import torch_pruning as tp

    p = parts(layer)
    cut: dict[int, tuple[nn.Linear, list[int]]] = {}

    def drop(rows: Rows, local: Sequence[int]) -> None:
        cut.setdefault(id(rows.linear), (rows.linear, []))[1].extend(rows.start + i for i in local)

    if groups:
        q_rows, kv_rows = _head_rows(groups, n_rep, hd), _head_rows(groups, 1, hd)
        drop(p.q, q_rows)
        drop(p.k, kv_rows)
        drop(p.v, kv_rows)
        tp.prune_linear_in_channels(p.o, q_rows)
    if channels:
        for rows in p.mlp_in:
            drop(rows, list(channels))
        tp.prune_linear_in_channels(p.mlp_out, list(channels))
    for linear, rows in cut.values():
        tp.prune_linear_out_channels(linear, sorted(rows))
    _sync_attention(layer, hd)


def _sync_attention(layer, hd: int) -> None:
    """Tell an attention module that keeps head counts of its own what its width now is.

    Phi-3's attention slices `qkv_proj` at `self.num_key_value_heads` and at the *config's*
    `num_attention_heads`; a layer narrower than its config (a `layer_range` prune, or any
    layer before `set_width_config`) reads its own head count from a `LayerConfig` view.
    Llama/Qwen2/Phi infer the head count from the tensor shapes and need nothing.
    """
    attn = layer.self_attn
    if not hasattr(attn, "qkv_proj"):
        return
    shape = layer_shape(layer, hd)
    attn.num_key_value_heads = shape.kv_heads
    base = attn.config.base if isinstance(attn.config, LayerConfig) else attn.config
    same = base.num_attention_heads == shape.heads
    attn.config = base if same else LayerConfig(base, num_attention_heads=shape.heads)
    if hasattr(layer.mlp, "config"):  # Phi3MLP keeps (but does not read) the config
        layer.mlp.config = base


class LayerConfig:
    """A read-through view of the text config with some fields overridden for one layer.

    Only the overrides are its own; everything else (attention implementation included,
    when it is switched later) is read from the shared config it wraps.
    """

    def __init__(self, base, **overrides):
        self.__dict__.update(base=base, **overrides)

    def __getattr__(self, name: str):
        base = self.__dict__.get("base")  # absent while copy/pickle rebuilds the object
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)


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
    for layer in text_layers(model):  # the config now says their width: no per-layer views
        _sync_attention(layer, hd)
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
