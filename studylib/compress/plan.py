"""How much of what to remove: the methods, their importances, the layer range, the width
plan and depth+width's split of the budget (`studylib.compress.prune` does the removing).

Every function answers from the model's structure alone, so the same plan serves real
pruning, `shrink` on meta-device models and `rehearse` before any weights load.
"""

from __future__ import annotations

from collections.abc import Sequence

from studylib import models
from studylib.errors import StudyError
from studylib.models import surgery

METHODS = ("layer", "width", "depth+width")
IMPORTANCES = {"layer": ("bi", "random"),
               "width": ("taylor", "taylor-mean", "magnitude", "random")}
IMPORTANCES["depth+width"] = IMPORTANCES["width"]  # of its widths; its layers go by BI
DEFAULT_IMPORTANCE = {"layer": "bi", "width": "taylor", "depth+width": "taylor"}
DEPTH_SHARE = 0.5  # depth+width: the share of the budget taken by whole layers
RATIO_DEFINITION = (
    "fraction of the LLM decoder-layer parameters removed (token embeddings, final norm, "
    "LM head, vision tower and projector are excluded and never pruned)"
)


def check_importance(method: str, importance: str | None) -> str:
    if method not in METHODS:
        raise StudyError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    importance = importance or DEFAULT_IMPORTANCE[method]
    if importance not in IMPORTANCES[method]:
        raise StudyError(f"importance {importance!r} does not apply to {method} pruning; "
                         f"choose from {', '.join(IMPORTANCES[method])}")
    return importance


def check_depth_share(method: str, depth_share: float | None) -> float | None:
    """depth+width's share (default DEPTH_SHARE), in [0, 1]; the other methods take none."""
    if method != "depth+width":
        if depth_share is not None:
            raise StudyError(f"depth_share applies to depth+width pruning, not {method}")
        return None
    share = DEPTH_SHARE if depth_share is None else float(depth_share)
    if not 0 <= share <= 1:
        raise StudyError(f"depth_share must be in [0, 1], got {depth_share!r}")
    return share


def parse_method(spec: str) -> tuple[str, float | None]:
    """A grid's method: "layer", "width", "depth+width" (share DEPTH_SHARE) or
    "depth+width@s" with its depth share s, so that a sweep over shares is a list of
    methods (the spec names the condition in rows and cells). Returns (method, share)."""
    method, at, share = str(spec).partition("@")
    if method not in METHODS:
        raise StudyError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    if not at:
        return method, check_depth_share(method, None)
    if method != "depth+width":
        raise StudyError(f"{spec!r}: only depth+width takes a depth share (@s)")
    try:
        value = float(share)
    except ValueError:
        raise StudyError(f"{spec!r}: the depth share after @ must be a number") from None
    return method, check_depth_share(method, value)


def split_budget(ratio: float, depth_share: float, n_layers: int) -> tuple[int, float]:
    """(layers to remove, width ratio of what remains) for depth+width at `ratio`.

    Whole layers take round(depth_share * ratio * L) of L layers; the widths of the rest
    then take what is left of the budget, as a fraction of the remaining decoder:
    (ratio - layers / L) / (1 - layers / L), 0 when the layers took it all.
    """
    n_drop = round(depth_share * ratio * n_layers)
    if n_drop >= n_layers:
        raise StudyError(f"depth share {depth_share:g} of ratio {ratio:g} would remove every "
                         f"layer ({n_layers})")
    depth = n_drop / n_layers
    return n_drop, max(0.0, (ratio - depth) / (1 - depth))


def pruned_layer_ids(n_layers: int, layer_range: Sequence[int] | None) -> list[int]:
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


def layers_to_drop(ratio: float, n_layers: int, layer_ids: Sequence[int]) -> int:
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


def plan_width(model, ratio: float, layer_ids: list[int]) -> tuple[int, int]:
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
