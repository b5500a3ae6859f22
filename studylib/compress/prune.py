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
from studylib.errors import StudyError, check_ratio
from studylib.models import checkpoint, surgery
from studylib.testbed.data import ConversationCollator

METHODS = ("layer", "width")
IMPORTANCES = {"layer": ("bi", "random"),
               "width": ("taylor", "taylor-mean", "magnitude", "random")}
DEFAULT_IMPORTANCE = {"layer": "bi", "width": "taylor"}
RATIO_DEFINITION = (
    "fraction of the LLM decoder-layer parameters removed (token embeddings, final norm, "
    "LM head, vision tower and projector are excluded and never pruned)"
)


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
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)  # data.Fit + aspect
    notes: list[str] = dataclasses.field(default_factory=list)
    ratio_definition: str = RATIO_DEFINITION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Model structure


# ---------------------------------------------------------------------------------------------
# Validation


def check_importance(method: str, importance: str | None) -> str:
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


# ---------------------------------------------------------------------------------------------
# Surgery


def _plan_width(model, ratio: float, layer_ids: list[int]) -> tuple[int, int]:
    """Groups and channels to remove per pruned layer so that `ratio` of the decoder goes.

    Attention loses round(r' * G) kv groups, r' the ratio within the pruned layers; the MLP
    takes what is left of the parameter budget, so the achieved ratio matches the request
    to within one channel per layer even when G is small.
    """
    tc = surgery.text_config(model)
    hd, n_rep = surgery.head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    shapes = {surgery.layer_shape(layers[i], hd) for i in layer_ids}
    if len(shapes) > 1:
        raise StudyError("the layers to prune differ in width; prune an unpruned model")
    shape = shapes.pop()
    per_layer = sum(p.numel() for p in layers[layer_ids[0]].parameters())
    target = ratio * surgery.decoder_params(model)
    inner = target / (per_layer * len(layer_ids))
    groups = round(inner * shape.kv_heads)
    if groups >= shape.kv_heads:
        raise StudyError(f"ratio {ratio:g} would remove every attention head "
                         f"({shape.kv_heads} kv groups per layer); use a smaller ratio")
    attn_unit, channel_unit = surgery.unit_params(layers[layer_ids[0]], hd, n_rep)
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
    layer_ids = _layer_ids(len(models.text_layers(model)), layer_range)
    groups, channels = _plan_width(model, check_ratio(ratio), layer_ids)
    return [(_lowest(g, groups), _lowest(c, channels)) for g, c in scores]


def _complement(n: int, drop: Sequence[int]) -> list[int]:
    gone = set(drop)
    return [i for i in range(n) if i not in gone]


# ---------------------------------------------------------------------------------------------
# Entry points


def prune(model, method: str, ratio: float, calib_records=None, processor=None, *,
          importance: str | None = None, seed: int = 0,
          layer_range: Sequence[int] | None = None, collate=None) -> PruneReport:
    """Prune `model` in place; return what was removed and the achieved ratio.

    importance: layer -> "bi" (default) or "random"; width -> "taylor" (default, the
    authors' batch-gradient form), "taylor-mean" (per-sample |g * w| averaged), "magnitude"
    or "random". `calib_records` (LLaVA-format records) and `processor` are needed by "bi"
    and the Taylor scores; `collate` (a `testbed.data.ConversationCollator`) turns them into
    batches (default: ShapesWorld's images at the model's default length; real data: one
    that opens the image files, `testbed.data.folder_loader(dir)`). `layer_range=(start, end)`
    restricts pruning to those layers (width: the result is non-uniform, see
    `models.load_pruned`).
    """
    start = time.perf_counter()
    ratio = check_ratio(ratio)
    importance = check_importance(method, importance)
    n_layers = len(models.text_layers(model))
    layer_ids = _layer_ids(n_layers, layer_range)
    before, dec_before = models.parameter_counts(model), surgery.decoder_params(model)
    report = PruneReport(
        method=method, importance=importance, ratio_requested=ratio, ratio_achieved=0.0,
        decoder_params_before=dec_before, decoder_params_after=dec_before,
        params_before=before, params_after=before,
        calib_samples=len(calib_records or []), seed=seed,
        layer_range=None if layer_range is None else [layer_ids[0], layer_ids[-1] + 1],
        uniform=True)
    if calib_records is not None and processor is not None:
        collate = collate or ConversationCollator(processor, config=model.config)
        calib_records, fit = collate.fit(calib_records)
        if not calib_records:
            raise StudyError(f"no calibration record has a turn that fits in {fit.max_length} "
                             f"tokens (the longest is {fit.longest}); raise the max length")
        report.calibration = {**fit.to_dict(), "image_aspect": collate.image_aspect}
    if method == "layer":
        _prune_layers(model, ratio, layer_ids, importance, calib_records, processor, seed, report,
                      collate)
    else:
        _prune_width(model, ratio, layer_ids, importance, calib_records, processor, seed, report,
                     collate)
    report.decoder_params_after = surgery.decoder_params(model)
    report.params_after = models.parameter_counts(model)
    report.ratio_achieved = 1 - report.decoder_params_after / dec_before
    report.config_after = checkpoint.config_summary(model)
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


def _prune_layers(model, ratio, layer_ids, importance, records, processor, seed, report,
                  collate=None):
    n_layers = len(models.text_layers(model))
    n_drop = _layers_to_drop(ratio, n_layers, layer_ids)
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
    groups, channels = _plan_width(model, ratio, layer_ids)
    scores = width_scores(model, importance, layer_ids, records, processor, seed, collate)
    report.layers = _apply_width(model, layer_ids, scores, groups, channels)
    report.uniform = surgery.set_width_config(model, layer_ids, n_layers)
    tc = surgery.text_config(model)
    n_rep = tc.num_attention_heads // tc.num_key_value_heads
    report.notes.append(f"per pruned layer: removed {groups} kv groups ({groups * n_rep} query "
                        f"heads) and {channels} MLP channels")
    if not report.uniform:
        report.notes.append("layers differ in width: load with studylib.models.load_pruned")


def shrink(model, method: str, ratio: float, layer_range: Sequence[int] | None = None) -> None:
    """Structure-only pruning (the first groups/channels/last layers go) for resource counts.

    Parameters and FLOPs depend only on how many heads, channels or layers are removed, not
    on which, so this is what `studylib measure` applies to meta-device models, where no
    importance can be computed.
    """
    ratio = check_ratio(ratio)
    check_importance(method, None)
    n_layers = len(models.text_layers(model))
    layer_ids = _layer_ids(n_layers, layer_range)
    if method == "layer":
        n_drop = _layers_to_drop(ratio, n_layers, layer_ids)
        surgery.remove_layers(model, layer_ids[len(layer_ids) - n_drop:])
        return
    groups, channels = _plan_width(model, ratio, layer_ids)
    tc = surgery.text_config(model)
    hd = surgery.head_dim(tc)
    shape = surgery.layer_shape(models.text_layers(model)[layer_ids[0]], hd)
    scores = [(torch.zeros(shape.kv_heads), torch.zeros(shape.intermediate))] * len(layer_ids)
    _apply_width(model, layer_ids, scores, groups, channels)
    surgery.set_width_config(model, layer_ids, n_layers)


def rehearse(path: str | os.PathLike, method: str, ratio: float,
             layer_range: Sequence[int] | None = None) -> None:
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
    shrink(empty, method, ratio, layer_range)


# ---------------------------------------------------------------------------------------------
# Checkpoints
