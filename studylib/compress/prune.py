"""Structural pruning of an MLLM's language model: layerwise, widthwise, or both
(`studylib prune`). How much of what goes is planned in `studylib.compress.plan`.

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
  gate/up (Phi: fc1) rows and down (Phi: fc2) column. Phi-3's fused projections hold the
  same rows in one linear each (`qkv_proj` = [q | k | v], `gate_up_proj` = [gate | up]):
  a group's rows are taken from each slice (`surgery.parts`). Each group is scored by first-order
  Taylor importance |dL/dw * w| of the vision-language loss (answer tokens only), summed
  over the group's weights (paper eq. 4-5). `taylor` (the default) computes it as the
  authors' script (LLM-Pruner) does: one backward pass over the padded calibration batch,
  then the absolute value of w times that batch gradient (gradients accumulate over
  batches when one does not fit); `taylor-mean` takes |dL_s/dw * w| per sample s and
  averages, so per-sample gradients of opposite sign cannot cancel (it needs one backward
  per sample, the batched form one per batch). `magnitude` (sum of |w|) and `random` are
  baselines. Every layer loses the same number of
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

- **depth+width** (after Minitron: Muralidharan et al. 2024, Sreenivas et al. 2024): a share
  `depth_share` of the budget is taken by whole layers (Block Influence), the rest by widths
  (the width importance, Taylor by default) in every remaining layer (`split_budget`). Depth
  goes first, as in Minitron's published order: the width scores are then computed on the
  model whose depth is final, so no gradient is spent on layers that are removed anyway,
  and the width part is sized from the layers actually removed, so the achieved ratio
  meets the request up to one MLP channel per layer. The result is a standard config
  (fewer layers, each equally narrowed).

Checkpoints (`models.save_pruned`) load with plain `AutoModelForImageTextToText.from_pretrained`:
a head-pruned Llama whose heads x head_dim no longer equals the hidden size is saved with a
Mistral text config (the same architecture, without Llama's divisibility check); Phi and
Phi-3 read `head_dim` from their configs, which we therefore always write (Phi-3, like Qwen2,
has no divisibility check). A `layer_range` (LLM-Pruner's
"skip the first and last layers") makes layers differ in width, which no standard config
can express: such checkpoints load with `models.load_pruned()`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from studylib import models
from studylib.compress.importance import block_influence, width_scores
from studylib.compress.plan import (  # noqa: F401  (METHODS, IMPORTANCES, ... re-exported)
    DEFAULT_IMPORTANCE,
    DEPTH_SHARE,
    IMPORTANCES,
    METHODS,
    RATIO_DEFINITION,
    check_depth_share,
    check_importance,
    layers_to_drop,
    parse_method,
    plan_width,
    pruned_layer_ids,
    split_budget,
)
from studylib.errors import StudyError, check_ratio
from studylib.models import checkpoint, surgery
from studylib.testbed.data import ConversationCollator


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
    depth_share: float | None = None  # depth+width only
    parts: dict[str, Any] | None = None  # depth+width: what the layers and the widths took
    wall_time_s: float = 0.0
    removed_layers: list[int] | None = None
    layer_scores: list[float] | None = None  # Block Influence per original layer
    layers: list[dict[str, Any]] | None = None  # width: kept heads/channels and scores
    config_after: dict[str, Any] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)  # data.Fit + aspect
    notes: list[str] = dataclasses.field(default_factory=list)
    ratio_definition: str = RATIO_DEFINITION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Surgery


def _lowest(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k lowest scores (ties broken by index, so equal scores are stable)."""
    return sorted(torch.argsort(scores, stable=True)[:k].tolist())


def _apply_width(model, layer_ids, scores, groups: int, channels: int) -> list[dict[str, Any]]:
    tc = surgery.text_config(model)
    hd, n_rep = surgery.head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    records = []
    for i, (g_scores, c_scores) in zip(layer_ids, scores, strict=True):
        drop_g, drop_c = _lowest(g_scores, groups), _lowest(c_scores, channels)
        surgery.prune_layer_width(layers[i], drop_g, drop_c, hd, n_rep)
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


def removed_by(model, ratio: float, scores, layer_range: Sequence[int] | None = None
               ) -> list[tuple[list[int], list[int]]]:
    """(kv groups, MLP channels) that `prune(model, "width", ratio, ...)` would remove from
    each pruned layer given these `width_scores`, without touching the model: for comparing
    importance scores by what they remove."""
    layer_ids = pruned_layer_ids(len(models.text_layers(model)), layer_range)
    groups, channels = plan_width(model, check_ratio(ratio), layer_ids)
    return [(_lowest(g, groups), _lowest(c, channels)) for g, c in scores]


def _complement(n: int, drop: Sequence[int]) -> list[int]:
    gone = set(drop)
    return [i for i in range(n) if i not in gone]


# ---------------------------------------------------------------------------------------------
# Entry points


def prune(model, method: str, ratio: float, calib_records=None, processor=None, *,
          importance: str | None = None, seed: int = 0,
          layer_range: Sequence[int] | None = None, collate=None,
          depth_share: float | None = None) -> PruneReport:
    """Prune `model` in place; return what was removed and the achieved ratio.

    importance: layer -> "bi" (default) or "random"; width -> "taylor" (default, the
    authors' batch-gradient form), "taylor-mean" (per-sample |g * w| averaged), "magnitude"
    or "random". `calib_records` (LLaVA-format records) and `processor` are needed by "bi"
    and the Taylor scores; `collate` (a `testbed.data.ConversationCollator`) turns them into
    batches (default: ShapesWorld's images at the model's default length; real data: one
    that opens the image files, `testbed.data.folder_loader(dir)`). `layer_range=(start, end)`
    restricts pruning to those layers (width: the result is non-uniform, see
    `models.load_pruned`). depth+width takes `depth_share` of the budget with layers (BI)
    and the rest with `importance`'s widths (module doc); it prunes every layer.
    """
    start = time.perf_counter()
    ratio = check_ratio(ratio)
    importance = check_importance(method, importance)
    depth_share = check_depth_share(method, depth_share)
    if method == "depth+width" and layer_range is not None:
        raise StudyError("depth+width prunes every layer: it takes no layer range")
    n_layers = len(models.text_layers(model))
    layer_ids = pruned_layer_ids(n_layers, layer_range)
    before, dec_before = models.parameter_counts(model), surgery.decoder_params(model)
    report = PruneReport(
        method=method, importance=importance, ratio_requested=ratio, ratio_achieved=0.0,
        decoder_params_before=dec_before, decoder_params_after=dec_before,
        params_before=before, params_after=before,
        calib_samples=len(calib_records or []), seed=seed,
        layer_range=None if layer_range is None else [layer_ids[0], layer_ids[-1] + 1],
        uniform=True, depth_share=depth_share)
    if calib_records is not None and processor is not None:
        collate = collate or ConversationCollator(processor, config=model.config)
        calib_records, fit = collate.fit(calib_records, use="calibration")
        report.calibration = {**fit.to_dict(), "image_aspect": collate.image_aspect}
    calib = (calib_records, processor, seed, report, collate)
    if method == "layer":
        n_drop = layers_to_drop(ratio, n_layers, layer_ids)
        _prune_layers(model, n_drop, layer_ids, importance, *calib)
    elif method == "width":
        _prune_width(model, ratio, layer_ids, importance, *calib)
    else:
        n_drop, width_ratio = split_budget(ratio, depth_share, n_layers)
        if n_drop:
            _prune_layers(model, n_drop, layer_ids, "bi", *calib)
        if width_ratio > 0:
            _prune_width(model, width_ratio, list(range(n_layers - n_drop)), importance, *calib)
        depth_part = n_drop / n_layers
        report.parts = {"layers_removed": n_drop, "depth_ratio": round(depth_part, 6),
                        "width_ratio_of_remaining": round(width_ratio, 6)}
        report.notes.append(
            f"depth+width, depth first (Minitron's order): Block Influence removed {n_drop} of "
            f"{n_layers} layers ({depth_part:.1%} of the decoder), then {importance} widths "
            f"took {width_ratio:.1%} of the remaining {n_layers - n_drop} layers")
    report.decoder_params_after = surgery.decoder_params(model)
    report.params_after = models.parameter_counts(model)
    report.ratio_achieved = 1 - report.decoder_params_after / dec_before
    report.config_after = checkpoint.config_summary(model)
    report.wall_time_s = round(time.perf_counter() - start, 3)
    return report


def _prune_layers(model, n_drop, layer_ids, importance, records, processor, seed, report,
                  collate=None):
    n_layers = len(models.text_layers(model))
    if importance == "bi":
        if records is None or processor is None:
            raise StudyError("block influence needs calibration records and a processor")
        scores = block_influence(model, records, processor, collate)
    else:
        scores = torch.rand(n_layers, generator=torch.Generator().manual_seed(seed)).tolist()
    candidates = torch.tensor([scores[i] for i in layer_ids], dtype=torch.float64)
    drop = sorted(layer_ids[j] for j in _lowest(candidates, n_drop))
    surgery.remove_layers(model, drop)
    report.removed_layers = drop
    report.layer_scores = [float(f"{s:.6g}") for s in scores]


def _prune_width(model, ratio, layer_ids, importance, records, processor, seed, report,
                 collate=None):
    n_layers = len(models.text_layers(model))
    groups, channels = plan_width(model, ratio, layer_ids)
    scores = width_scores(model, importance, layer_ids, records, processor, seed, collate)
    report.layers = _apply_width(model, layer_ids, scores, groups, channels)
    report.uniform = surgery.set_width_config(model, layer_ids, n_layers)
    tc = surgery.text_config(model)
    n_rep = tc.num_attention_heads // tc.num_key_value_heads
    report.notes.append(f"per pruned layer: removed {groups} kv groups ({groups * n_rep} query "
                        f"heads) and {channels} MLP channels")
    if not report.uniform:
        report.notes.append("layers differ in width: load with studylib.models.load_pruned")


def shrink(model, method: str, ratio: float, layer_range: Sequence[int] | None = None,
           depth_share: float | None = None) -> None:
    """Structure-only pruning (the first groups/channels/last layers go) for resource counts.

    Parameters and FLOPs depend only on how many heads, channels or layers are removed, not
    on which, so this is what `studylib measure` applies to meta-device models, where no
    importance can be computed.
    """
    ratio = check_ratio(ratio)
    check_importance(method, None)
    depth_share = check_depth_share(method, depth_share)
    n_layers = len(models.text_layers(model))
    layer_ids = pruned_layer_ids(n_layers, layer_range)
    if method == "depth+width":
        n_drop, width_ratio = split_budget(ratio, depth_share, n_layers)
        surgery.remove_layers(model, layer_ids[n_layers - n_drop:])
        if width_ratio > 0:
            _shrink_width(model, width_ratio, list(range(n_layers - n_drop)))
        return
    if method == "layer":
        n_drop = layers_to_drop(ratio, n_layers, layer_ids)
        surgery.remove_layers(model, layer_ids[len(layer_ids) - n_drop:])
        return
    _shrink_width(model, ratio, layer_ids)


def _shrink_width(model, ratio: float, layer_ids: list[int]) -> None:
    n_layers = len(models.text_layers(model))
    groups, channels = plan_width(model, ratio, layer_ids)
    tc = surgery.text_config(model)
    hd = surgery.head_dim(tc)
    shape = surgery.layer_shape(models.text_layers(model)[layer_ids[0]], hd)
    scores = [(torch.zeros(shape.kv_heads), torch.zeros(shape.intermediate))] * len(layer_ids)
    _apply_width(model, layer_ids, scores, groups, channels)
    surgery.set_width_config(model, layer_ids, n_layers)


def rehearse(path: str | os.PathLike, method: str, ratio: float,
             layer_range: Sequence[int] | None = None, depth_share: float | None = None) -> None:
    """Fail fast: apply `shrink` to an empty (meta-device) copy built from the checkpoint's
    config, so a ratio or layer range that cannot work is refused before the weights load.
    Checkpoints whose config cannot say the layer widths (non-uniform pruned ones), or
    whose config does not load (`models.load` then says why), are left to `prune`."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").is_file() or models.is_non_uniform(path):
        return
    try:
        config = AutoConfig.from_pretrained(path)
        with torch.device("meta"):
            empty = AutoModelForImageTextToText.from_config(config)
    except Exception:  # noqa: BLE001 - models.load reports a bad checkpoint in one line
        return
    shrink(empty, method, ratio, layer_range, depth_share)
