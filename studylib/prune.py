"""Structural pruning of an MLLM's language model: layerwise and widthwise (`studylib prune`).

Both methods share one signature, `prune(model, method, ratio, calib_records, processor)`,
and one definition of the ratio (`RATIO_DEFINITION`): the fraction of the LLM's
decoder-layer parameters removed. The vision tower, the projector, the token embeddings, the
final norm and the LM head are never touched, so "ratio" means the same thing for both
methods and for both backbones, and the report gives the achieved fraction next to the
requested one (whole layers, heads and channels make it slightly coarse).

- **layer** (ShortGPT's Block Influence): BI_i = 1 - mean over calibration tokens of
  cos(H_i, H_{i+1}), the hidden states entering and leaving decoder layer i, read with
  forward hooks (the model's `hidden_states` output ends with the final norm applied, which
  would bias the last layer's score). The lowest-BI layers go; the survivors' `layer_idx` is
  renumbered and the config's layer count (and `layer_types`) updated, so `generate()`'s KV
  cache indexes the right layers.
- **width** (DepGraph / LLM-Pruner groups): an attention group is one key/value head with
  the query heads that share it (GQA-aware; without GQA a group is one head) -- its q/k/v
  rows and its o_proj (Phi: dense) columns; an MLP group is one intermediate channel -- its
  gate/up (Phi: fc1) rows and down (Phi: fc2) column. Each group is scored by first-order
  Taylor importance |dL/dw * w| of the vision-language loss (answer tokens only), summed
  over the group's weights and averaged over the calibration samples (paper eq. 4-5);
  `magnitude` (sum of |w|) and `random` are baselines. Every layer loses the same number of
  groups, so the result is a standard config (fewer heads, same `head_dim`, smaller
  `intermediate_size`). The surgery itself is torch-pruning's
  `prune_linear_out_channels` / `prune_linear_in_channels`; its dependency-graph search is
  not used because it hangs on the KV-cache and RoPE ops and silently skips GQA head groups
  (see the project's pitfalls notes), and these groups are fully known from the module
  structure anyway.

Why attention moves in whole key/value groups: removing only some query heads of a group
would leave configs with query heads that are not a multiple of the kv heads.  With few kv
groups (the toy Llama has 2) that is coarse, so the number of groups removed per layer is
`round(r * G)` and the MLP absorbs the rest of the parameter budget; the achieved ratio then
still equals the request up to one MLP channel per layer.

Checkpoints (`save_pruned`) load with plain `AutoModelForImageTextToText.from_pretrained`:
a head-pruned Llama whose heads x head_dim no longer equals the hidden size is saved with a
Mistral text config (the same architecture, without Llama's divisibility check); Phi reads
`head_dim` from its config, which we therefore always write. A `layer_range` (LLM-Pruner's
"skip the first and last layers") makes layers differ in width, which no standard config
can express: such checkpoints load with `load_pruned()`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studylib import models
from studylib.errors import StudyError, check_ratio
from studylib.outputs import check_out_dir

METHODS = ("layer", "width")
IMPORTANCES = {"layer": ("bi", "random"), "width": ("taylor", "magnitude", "random")}
DEFAULT_IMPORTANCE = {"layer": "bi", "width": "taylor"}
RATIO_DEFINITION = (
    "fraction of the LLM decoder-layer parameters removed (token embeddings, final norm, "
    "LM head, vision tower and projector are excluded and never pruned)"
)
REPORT_FILE = "pruning_report.json"


@dataclasses.dataclass
class PruneReport:
    """What was pruned, how much, and on what evidence (written as pruning_report.json)."""

    method: str
    importance: str
    ratio_requested: float
    ratio_achieved: float
    decoder_params_before: int
    decoder_params_after: int
    params_before: dict[str, int]
    params_after: dict[str, int]
    calib_samples: int
    seed: int
    layer_range: list[int] | None
    uniform: bool
    wall_time_s: float = 0.0
    removed_layers: list[int] | None = None
    layer_scores: list[float] | None = None  # Block Influence per original layer
    layers: list[dict[str, Any]] | None = None  # width: kept heads/channels and scores
    config_after: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    ratio_definition: str = RATIO_DEFINITION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Model structure


@dataclasses.dataclass(frozen=True)
class _Parts:
    """The prunable linears of one decoder layer (Llama/Mistral/Qwen2 or Phi names)."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    mlp_in: tuple[nn.Linear, ...]
    mlp_out: nn.Linear


def _parts(layer: nn.Module) -> _Parts:
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
    return _Parts(attn.q_proj, attn.k_proj, attn.v_proj, o, mlp_in, mlp_out)


def _text_config(model):
    return model.config.text_config


def head_dim(config) -> int:
    """The per-head width; Phi's config has no field for it, so fall back as Phi does."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


@dataclasses.dataclass(frozen=True)
class _Shape:
    heads: int
    kv_heads: int
    intermediate: int


def _shape(layer: nn.Module, hd: int) -> _Shape:
    p = _parts(layer)
    return _Shape(p.q.out_features // hd, p.k.out_features // hd, p.mlp_out.in_features)


def decoder_params(model) -> int:
    """Parameters in the LLM's decoder layers: the denominator of the pruning ratio."""
    return sum(p.numel() for p in models.text_layers(model).parameters())


def _row_params(linear: nn.Linear) -> int:
    return linear.in_features + (1 if linear.bias is not None else 0)


def _unit_params(layer: nn.Module, hd: int, n_rep: int) -> tuple[int, int]:
    """Parameters in one attention group (kv head + its q heads) and in one MLP channel."""
    p = _parts(layer)
    attn = hd * (n_rep * _row_params(p.q) + _row_params(p.k) + _row_params(p.v))
    attn += n_rep * hd * p.o.out_features
    channel = sum(_row_params(m) for m in p.mlp_in) + p.mlp_out.out_features
    return attn, channel


# ---------------------------------------------------------------------------------------------
# Validation


def _check(method: str, importance: str | None) -> str:
    if method not in METHODS:
        raise StudyError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    importance = importance or DEFAULT_IMPORTANCE[method]
    if importance not in IMPORTANCES[method]:
        raise StudyError(f"importance {importance!r} does not apply to {method} pruning; "
                         f"choose from {', '.join(IMPORTANCES[method])}")
    return importance


def _layer_ids(n_layers: int, layer_range: Sequence[int] | None) -> list[int]:
    """Indices of the layers that may be pruned: [start, end) or all of them."""
    if layer_range is None:
        return list(range(n_layers))
    try:
        start, end = (int(x) for x in layer_range)
    except (TypeError, ValueError):
        raise StudyError(f"layer_range must be (start, end), got {layer_range!r}") from None
    if not 0 <= start < end <= n_layers:
        raise StudyError(f"layer_range {start}:{end} is not inside 0:{n_layers}")
    return list(range(start, end))


# ---------------------------------------------------------------------------------------------
# Calibration forward passes


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(records, processor, desc: str):
    """One collated calibration sample at a time, on the model's device, with a progress bar."""
    from tqdm.auto import tqdm

    from studylib.data import ConversationCollator

    if not records:
        raise StudyError("calibration needs at least one record")
    collate = ConversationCollator(processor)
    for rec in tqdm(records, desc=desc, leave=False):
        yield collate([rec])


def _to(batch: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    device, dtype = _device(model), next(model.parameters()).dtype
    out = {k: v.to(device) for k, v in batch.items()}
    out["pixel_values"] = out["pixel_values"].to(dtype)
    return out


def block_influence(model, records, processor) -> list[float]:
    """BI_i = 1 - mean cos(H_i, H_{i+1}) over all non-padding calibration tokens.

    The cosine is taken per token (O(S)), and the mean weights every token equally across
    samples. Hooks read each layer's own input and output, so the last layer is scored on
    its raw output, not on the final-norm output `output_hidden_states` would give.
    """
    layers = models.text_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    mask: dict[str, torch.Tensor] = {}

    def hook(i: int):
        def fn(module, args, kwargs, output):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            sums[i] += cos[mask["m"]].double().sum().cpu()
        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True)
               for i, layer in enumerate(layers)]
    tokens = 0
    try:
        with torch.no_grad():
            for batch in _batches(records, processor, "block influence"):
                batch = _to(batch, model)
                mask["m"] = batch["attention_mask"].bool()
                tokens += int(mask["m"].sum())
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      pixel_values=batch["pixel_values"], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return (1.0 - sums / tokens).tolist()


def _group_scores(layer: nn.Module, hd: int, n_rep: int, elem) -> tuple[torch.Tensor, ...]:
    """Sum an element-wise importance over each attention group and each MLP channel."""
    p = _parts(layer)

    def rows(lin: nn.Linear) -> torch.Tensor:
        s = elem(lin.weight).sum(1)
        return s + elem(lin.bias) if lin.bias is not None else s

    def cols(lin: nn.Linear) -> torch.Tensor:
        return elem(lin.weight).sum(0)

    q_heads = (rows(p.q) + cols(p.o)).view(-1, hd).sum(1)  # o_proj columns follow q heads
    groups = q_heads.view(-1, n_rep).sum(1)  # q head h uses kv head h // n_rep
    groups = groups + rows(p.k).view(-1, hd).sum(1) + rows(p.v).view(-1, hd).sum(1)
    channels = sum(rows(m) for m in p.mlp_in) + cols(p.mlp_out)
    return groups.detach().cpu(), channels.detach().cpu()


def _taylor_scores(model, layer_ids, hd, n_rep, records, processor):
    """Per-sample |dL/dw * w| summed per group, averaged over the calibration samples."""
    layers = models.text_layers(model)
    targets = {id(t) for i in layer_ids for lin in _linears(layers[i]) for t in _weights(lin)}
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()  # no dropout: the loss is the model's deterministic VL loss
    for p in model.parameters():
        p.requires_grad_(id(p) in targets)
    totals: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    try:
        for batch in _batches(records, processor, "taylor importance"):
            model.zero_grad(set_to_none=True)
            loss = model(**_to(batch, model), use_cache=False).loss
            if not torch.isfinite(loss):
                raise StudyError("calibration loss is not finite (no answer tokens?)")
            loss.backward()
            scores = [_group_scores(layers[i], hd, n_rep, _taylor_elem) for i in layer_ids]
            totals = scores if totals is None else [
                (a[0] + b[0], a[1] + b[1]) for a, b in zip(totals, scores, strict=True)]
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return [tuple(t / len(records) for t in pair) for pair in totals]


def _taylor_elem(p: torch.Tensor) -> torch.Tensor:
    return (p.grad.float() * p.detach().float()).abs()


def _magnitude_elem(p: torch.Tensor) -> torch.Tensor:
    return p.detach().float().abs()


def _linears(layer) -> list[nn.Linear]:
    p = _parts(layer)
    return [p.q, p.k, p.v, p.o, *p.mlp_in, p.mlp_out]


def _weights(lin: nn.Linear) -> list[torch.Tensor]:
    return [lin.weight] + ([lin.bias] if lin.bias is not None else [])


def width_scores(model, importance: str, layer_ids, records=None, processor=None, seed=0):
    """(attention-group scores, MLP-channel scores) for each layer in `layer_ids`."""
    tc = _text_config(model)
    hd, n_rep = head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    if importance == "taylor":
        if records is None or processor is None:
            raise StudyError("taylor importance needs calibration records and a processor")
        return _taylor_scores(model, layer_ids, hd, n_rep, records, processor)
    if importance == "magnitude":
        with torch.no_grad():
            return [_group_scores(layers[i], hd, n_rep, _magnitude_elem) for i in layer_ids]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in layer_ids:
        shape = _shape(layers[i], hd)
        out.append((torch.rand(shape.kv_heads, generator=gen),
                    torch.rand(shape.intermediate, generator=gen)))
    return out


# ---------------------------------------------------------------------------------------------
# Surgery


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
    tc = _text_config(model)
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

    p = _parts(layer)
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


def _plan_width(model, ratio: float, layer_ids: list[int]) -> tuple[int, int]:
    """Groups and channels to remove per pruned layer so that `ratio` of the decoder goes.

    Attention loses round(r' * G) kv groups, r' the ratio within the pruned layers; the MLP
    takes what is left of the parameter budget, so the achieved ratio matches the request
    to within one channel per layer even when G is small.
    """
    tc = _text_config(model)
    hd, n_rep = head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    shapes = {_shape(layers[i], hd) for i in layer_ids}
    if len(shapes) > 1:
        raise StudyError("the layers to prune differ in width; prune an unpruned model")
    shape = shapes.pop()
    per_layer = sum(p.numel() for p in layers[layer_ids[0]].parameters())
    target = ratio * decoder_params(model)
    inner = target / (per_layer * len(layer_ids))
    groups = round(inner * shape.kv_heads)
    if groups >= shape.kv_heads:
        raise StudyError(f"ratio {ratio:g} would remove every attention head "
                         f"({shape.kv_heads} kv groups per layer); use a smaller ratio")
    attn_unit, channel_unit = _unit_params(layers[layer_ids[0]], hd, n_rep)
    rest = target - len(layer_ids) * groups * attn_unit
    channels = max(0, round(rest / (len(layer_ids) * channel_unit)))
    if channels >= shape.intermediate:
        raise StudyError(f"ratio {ratio:g} would remove every MLP channel of the pruned layers; "
                         "use a smaller ratio or a wider layer range")
    if groups == 0 and channels == 0:
        raise StudyError(f"ratio {ratio:g} is too small to remove anything")
    return groups, channels


def _lowest(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k lowest scores (ties broken by index, so equal scores are stable)."""
    return sorted(torch.argsort(scores, stable=True)[:k].tolist())


def _apply_width(model, layer_ids, scores, groups: int, channels: int) -> list[dict[str, Any]]:
    tc = _text_config(model)
    hd, n_rep = head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    records = []
    for i, (g_scores, c_scores) in zip(layer_ids, scores, strict=True):
        drop_g, drop_c = _lowest(g_scores, groups), _lowest(c_scores, channels)
        prune_layer_width(layers[i], drop_g, drop_c, hd, n_rep)
        kept_g = [g for g in range(len(g_scores)) if g not in set(drop_g)]
        records.append({
            "layer": i,
            "kept_kv_heads": kept_g,
            "kept_q_heads": [h for g in kept_g for h in range(g * n_rep, (g + 1) * n_rep)],
            "kept_channels": _complement(len(c_scores), drop_c),
            "group_scores": [float(f"{s:.6g}") for s in g_scores.tolist()],
            "channel_scores": [float(f"{s:.6g}") for s in c_scores.tolist()],
        })
    return records


def _complement(n: int, drop: Sequence[int]) -> list[int]:
    gone = set(drop)
    return [i for i in range(n) if i not in gone]


def _set_width_config(model, layer_ids, n_layers: int) -> bool:
    """Write the new widths into the text config when every layer shrank alike."""
    tc = _text_config(model)
    hd = head_dim(tc)
    tc.head_dim = hd  # Phi has no such field; without it Phi derives hidden/heads
    if len(layer_ids) != n_layers:
        return False
    shape = _shape(models.text_layers(model)[0], hd)
    tc.num_attention_heads = shape.heads
    tc.num_key_value_heads = shape.kv_heads
    tc.intermediate_size = shape.intermediate
    return True


# ---------------------------------------------------------------------------------------------
# Entry points


def prune(model, method: str, ratio: float, calib_records=None, processor=None, *,
          importance: str | None = None, seed: int = 0,
          layer_range: Sequence[int] | None = None) -> PruneReport:
    """Prune `model` in place; return what was removed and the achieved ratio.

    importance: layer -> "bi" (default) or "random"; width -> "taylor" (default),
    "magnitude" or "random". `calib_records` (LLaVA-format records) and `processor` are
    needed by "bi" and "taylor". `layer_range=(start, end)` restricts pruning to those
    layers (width: the result is non-uniform, see `load_pruned`).
    """
    start = time.perf_counter()
    ratio = check_ratio(ratio)
    importance = _check(method, importance)
    n_layers = len(models.text_layers(model))
    layer_ids = _layer_ids(n_layers, layer_range)
    before, dec_before = models.parameter_counts(model), decoder_params(model)
    report = PruneReport(
        method=method, importance=importance, ratio_requested=ratio, ratio_achieved=0.0,
        decoder_params_before=dec_before, decoder_params_after=dec_before,
        params_before=before, params_after=before,
        calib_samples=len(calib_records or []), seed=seed,
        layer_range=None if layer_range is None else [layer_ids[0], layer_ids[-1] + 1],
        uniform=True)
    if method == "layer":
        _prune_layers(model, ratio, layer_ids, importance, calib_records, processor, seed, report)
    else:
        _prune_width(model, ratio, layer_ids, importance, calib_records, processor, seed, report)
    report.decoder_params_after = decoder_params(model)
    report.params_after = models.parameter_counts(model)
    report.ratio_achieved = 1 - report.decoder_params_after / dec_before
    report.config_after = _config_summary(model)
    report.wall_time_s = round(time.perf_counter() - start, 3)
    return report


def _layers_to_drop(ratio: float, n_layers: int, layer_ids: Sequence[int]) -> int:
    """round(ratio x layers), if that removes some layers but not all, else one error line."""
    n_drop = round(ratio * n_layers)
    if n_drop == 0:
        raise StudyError(f"ratio {ratio:g} removes no layer of {n_layers}; use a larger ratio")
    if n_drop >= n_layers:
        raise StudyError(f"ratio {ratio:g} would remove every layer ({n_layers}); "
                         "use a smaller ratio")
    if n_drop > len(layer_ids):
        raise StudyError(f"ratio {ratio:g} needs {n_drop} layers but the layer range has "
                         f"{len(layer_ids)}")
    return n_drop


def _prune_layers(model, ratio, layer_ids, importance, records, processor, seed, report):
    n_layers = len(models.text_layers(model))
    n_drop = _layers_to_drop(ratio, n_layers, layer_ids)
    if importance == "bi":
        if records is None or processor is None:
            raise StudyError("block influence needs calibration records and a processor")
        scores = block_influence(model, records, processor)
    else:
        scores = torch.rand(n_layers, generator=torch.Generator().manual_seed(seed)).tolist()
    candidates = torch.tensor([scores[i] for i in layer_ids], dtype=torch.float64)
    drop = sorted(layer_ids[j] for j in _lowest(candidates, n_drop))
    remove_layers(model, drop)
    report.removed_layers = drop
    report.layer_scores = [float(f"{s:.6g}") for s in scores]


def _prune_width(model, ratio, layer_ids, importance, records, processor, seed, report):
    n_layers = len(models.text_layers(model))
    groups, channels = _plan_width(model, ratio, layer_ids)
    scores = width_scores(model, importance, layer_ids, records, processor, seed)
    report.layers = _apply_width(model, layer_ids, scores, groups, channels)
    report.uniform = _set_width_config(model, layer_ids, n_layers)
    tc = _text_config(model)
    n_rep = tc.num_attention_heads // tc.num_key_value_heads
    report.notes.append(f"per pruned layer: removed {groups} kv groups ({groups * n_rep} query "
                        f"heads) and {channels} MLP channels")
    if not report.uniform:
        report.notes.append("layers differ in width: load with studylib.prune.load_pruned")


def shrink(model, method: str, ratio: float, layer_range: Sequence[int] | None = None) -> None:
    """Structure-only pruning (the first groups/channels/last layers go) for resource counts.

    Parameters and FLOPs depend only on how many heads, channels or layers are removed, not
    on which, so this is what `studylib measure` applies to meta-device models, where no
    importance can be computed.
    """
    ratio = check_ratio(ratio)
    _check(method, None)
    n_layers = len(models.text_layers(model))
    layer_ids = _layer_ids(n_layers, layer_range)
    if method == "layer":
        n_drop = _layers_to_drop(ratio, n_layers, layer_ids)
        remove_layers(model, layer_ids[len(layer_ids) - n_drop:])
        return
    groups, channels = _plan_width(model, ratio, layer_ids)
    tc = _text_config(model)
    hd = head_dim(tc)
    shape = _shape(models.text_layers(model)[layer_ids[0]], hd)
    scores = [(torch.zeros(shape.kv_heads), torch.zeros(shape.intermediate))] * len(layer_ids)
    _apply_width(model, layer_ids, scores, groups, channels)
    _set_width_config(model, layer_ids, n_layers)


def rehearse(path: str | os.PathLike, method: str, ratio: float,
             layer_range: Sequence[int] | None = None) -> None:
    """Fail fast: apply `shrink` to an empty (meta-device) copy built from the checkpoint's
    config, so a ratio or layer range that cannot work is refused before the weights load.
    Checkpoints whose config cannot say the layer widths (non-uniform pruned ones), or
    whose config does not load (`models.load` then says why), are left to `prune`."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").is_file() or models._non_uniform_pruned(path):
        return
    try:
        config = AutoConfig.from_pretrained(path)
        with torch.device("meta"):
            empty = AutoModelForImageTextToText.from_config(config)
    except Exception:  # noqa: BLE001 - models.load reports a bad checkpoint in one line
        return
    shrink(empty, method, ratio, layer_range)


def _config_summary(model) -> dict[str, Any]:
    tc = _text_config(model)
    hd = head_dim(tc)
    return {
        "model_type": tc.model_type,
        "num_hidden_layers": len(models.text_layers(model)),
        "num_attention_heads": tc.num_attention_heads,
        "num_key_value_heads": tc.num_key_value_heads,
        "head_dim": hd,
        "intermediate_size": tc.intermediate_size,
        "hidden_size": tc.hidden_size,
        "layer_shapes": [dataclasses.asdict(_shape(layer, hd))
                         for layer in models.text_layers(model)],
    }


# ---------------------------------------------------------------------------------------------
# Checkpoints


def loadable_text_config(tc):
    """The text config to save so plain `from_pretrained` rebuilds this (pruned) LLM.

    transformers refuses a Llama config whose hidden size is not a multiple of the head
    count; Mistral (with no sliding window) is the same architecture with the same weight
    names and has no such check. Other configs are returned unchanged.
    """
    from transformers import MistralConfig

    hd = head_dim(tc)
    if tc.model_type != "llama" or tc.num_attention_heads * hd == tc.hidden_size:
        return tc
    if getattr(tc, "attention_bias", False) or getattr(tc, "mlp_bias", False):
        raise StudyError("a head-pruned Llama with biases has no loadable standard config")
    fields = {f.name for f in dataclasses.fields(MistralConfig)} - {"architectures"}
    values = {k: v for k, v in tc.to_dict().items() if k in fields}
    values.update(head_dim=hd, sliding_window=None)
    return MistralConfig(**values)


def save_pruned(model, processor, report: PruneReport, out: str | os.PathLike) -> Path:
    """Save weights, a loadable config, the processor and pruning_report.json (atomically)."""
    original = model.config.text_config
    text_config = loadable_text_config(original)
    payload = report.to_dict()
    if text_config is not original:
        payload["notes"] = [*payload["notes"], "text config saved as Mistral (Llama with "
                            "heads x head_dim != hidden_size; same architecture)"]
    model.config.text_config = text_config
    try:
        return models.save(model, processor, out, extra={REPORT_FILE: payload}, command="prune")
    finally:
        model.config.text_config = original


def load_pruned(path: str | os.PathLike):
    """Load any pruned checkpoint; layers of different widths are rebuilt from the report.

    Uniform checkpoints are ordinary transformers checkpoints (`models.load`). A
    `layer_range` width-pruned model keeps the unpruned widths in its config, so the model
    is built from the config, each layer is cut to the width the report records, and the
    saved weights are loaded strictly into it.
    """
    path = Path(path)
    report = read_report(path)
    if report.get("uniform", True):
        return models.load(path)
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    with models.checkpoint_errors(path):  # a truncated file, a config that does not fit
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path))
        _resize_layers(model, report["config_after"]["layer_shapes"])
        saved = {}
        for file in sorted(path.glob("*.safetensors")):
            saved.update(load_file(file))
        state = {name: saved.get(key) for name, key in _saved_names(model).items()}
        absent = [name for name, tensor in state.items() if tensor is None]
        if absent:
            raise StudyError(f"checkpoint {path} does not match its pruning report "
                             f"(no weights for {absent[:3]})")
        model.load_state_dict(state, strict=True)
        processor = AutoProcessor.from_pretrained(path)
    model.eval()
    return model, processor


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's pruning report ({} when it has none), checked as far as loading needs
    it: `uniform`, and for a non-uniform model the width of every layer. Else one StudyError
    line, before any weights are read."""
    file = Path(path) / REPORT_FILE
    if not file.is_file():
        return {}
    try:
        report = json.loads(file.read_text())
        if not isinstance(report["uniform"], bool):
            raise TypeError(f"uniform must be true or false, got {report['uniform']!r}")
        if not report["uniform"]:
            for shape in report["config_after"]["layer_shapes"]:
                if not all(isinstance(shape[k], int) for k in ("kv_heads", "intermediate")):
                    raise TypeError(f"layer widths must be integers, got {shape!r}")
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise StudyError(f"{file} is not a pruning report ({type(exc).__name__}: {exc})") from None
    return report


def _saved_names(model) -> dict[str, str]:
    """Parameter name -> the name save_pretrained wrote (transformers renames Llava's keys)."""
    from transformers.core_model_loading import revert_weight_conversion

    state = model.state_dict()
    saved = revert_weight_conversion(model, dict(state))
    by_tensor = {id(t): key for key, t in saved.items()}
    return {name: by_tensor.get(id(t), name) for name, t in state.items()}


def _resize_layers(model, layer_shapes: list[dict[str, int]]) -> None:
    tc = _text_config(model)
    hd, n_rep = head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    for layer, want in zip(models.text_layers(model), layer_shapes, strict=True):
        have = _shape(layer, hd)
        groups = list(range(want["kv_heads"], have.kv_heads))
        channels = list(range(want["intermediate"], have.intermediate))
        prune_layer_width(layer, groups, channels, hd, n_rep)


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError:
        raise StudyError(f"--layer-range must be START:END, got {text!r}") from None
    return start, end


def cmd_prune(args) -> int:
    from studylib import shapes

    out = check_out_dir(args.out, args.overwrite)
    layer_range = _parse_range(args.layer_range)
    importance = _check(args.method, args.importance)
    rehearse(args.model, args.method, args.ratio, layer_range)
    model, processor = models.load(args.model)
    records = shapes.calibration_sample(args.calib_samples, seed=args.seed)
    report = prune(model, args.method, args.ratio, records, processor, importance=importance,
                   seed=args.seed, layer_range=layer_range)
    save_pruned(model, processor, report, out)
    summary = {k: v for k, v in report.to_dict().items()
               if k not in ("layers", "layer_scores", "config_after")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


def add_command(sub) -> None:
    import argparse

    from studylib.errors import positive_int, seed_int

    def ratio(text: str) -> float:
        try:
            return check_ratio(text)
        except StudyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    p = sub.add_parser("prune", help="prune the LLM layerwise (Block Influence) or widthwise")
    p.add_argument("--model", required=True, help="checkpoint directory (model + processor)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--ratio", required=True, type=ratio,
                   help="fraction of the LLM decoder-layer parameters to remove, in (0, 1)")
    p.add_argument("--importance", choices=sorted({i for v in IMPORTANCES.values() for i in v}),
                   help="layer: bi (default) | random; width: taylor (default) | magnitude | "
                        "random")
    p.add_argument("--calib-samples", type=positive_int, default=10)
    p.add_argument("--seed", type=seed_int, default=0, help="calibration-sample and random seed")
    p.add_argument("--layer-range", help="START:END, prune only these layers (width: "
                                         "non-uniform checkpoint, load with load_pruned)")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_prune)
