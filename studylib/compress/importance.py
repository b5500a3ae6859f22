"""Importance scores for pruning: Block Influence for layers; Taylor, magnitude and random for width groups.

Two Taylor scores, which differ in where the absolute value is taken (paper eq. 4-5):
`taylor` (the authors', LLM-Pruner's) takes |w * g| of the gradient g of the loss of the
whole padded calibration batch, so per-sample gradients of opposite sign cancel first;
`taylor-mean` averages the per-sample |w * g_s|, so they cannot.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from studylib import models
from studylib.errors import StudyError
from studylib.models import surgery
from studylib.testbed.data import IGNORE, ConversationCollator


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(model, records, processor, desc: str, collate=None):
    """One collated calibration sample at a time, with a progress bar (`_collator`)."""
    from tqdm.auto import tqdm

    if not records:
        raise StudyError("calibration needs at least one record")
    collate = _collator(model, processor, collate)
    for rec in tqdm(records, desc=desc, leave=False):
        yield collate([rec])


def _collator(model, processor, collate=None) -> ConversationCollator:
    """`collate` when given (real data: it opens the records' image files, with the chosen
    length and image aspect), else ShapesWorld's at the model's default length."""
    return collate or ConversationCollator(processor, config=model.config)


def _to(batch: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    device, dtype = _device(model), next(model.parameters()).dtype
    out = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in out:  # absent when every record is text-only
        out["pixel_values"] = out["pixel_values"].to(dtype)
    return out


def block_influence(model, records, processor, collate=None) -> list[float]:
    """BI_i = 1 - mean cos(H_i, H_{i+1}) over all non-padding calibration tokens.

    The cosine is taken per token (O(S)), and the mean weights every token equally across
    samples. Hooks read each layer's own input and output, so the last layer is scored on
    its raw output, not on the final-norm output `output_hidden_states` would give.
    Memory: no hidden state is kept. Each hook adds its layer's cosine sum to a running
    total (one float64 per layer) as the forward pass goes, under `no_grad`, one sample at
    a time, so a 7B model needs its weights plus one sample's activations.
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
            for batch in _batches(model, records, processor, "block influence", collate):
                batch = _to(batch, model)
                mask["m"] = batch["attention_mask"].bool()
                tokens += int(mask["m"].sum())
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      pixel_values=batch.get("pixel_values"), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return (1.0 - sums / tokens).tolist()


def _group_scores(layer: nn.Module, hd: int, n_rep: int, elem) -> tuple[torch.Tensor, ...]:
    """Sum an element-wise importance over each attention group and each MLP channel."""
    p = surgery.parts(layer)
    per_row: dict[int, torch.Tensor] = {}  # a fused linear's row sums, computed once

    def rows(r: surgery.Rows) -> torch.Tensor:
        lin = r.linear
        if id(lin) not in per_row:
            s = elem(lin.weight).sum(1)
            per_row[id(lin)] = s + elem(lin.bias) if lin.bias is not None else s
        return per_row[id(lin)][r.start:r.start + r.size]  # this slice's rows only

    def cols(lin: nn.Linear) -> torch.Tensor:
        return elem(lin.weight).sum(0)

    q_heads = (rows(p.q) + cols(p.o)).view(-1, hd).sum(1)  # o_proj columns follow q heads
    groups = q_heads.view(-1, n_rep).sum(1)  # q head h uses kv head h // n_rep
    groups = groups + rows(p.k).view(-1, hd).sum(1) + rows(p.v).view(-1, hd).sum(1)
    channels = sum(rows(m) for m in p.mlp_in) + cols(p.mlp_out)
    return groups.detach().cpu(), channels.detach().cpu()


def _taylor_scores(model, layer_ids, hd, n_rep, records, processor, collate=None):
    """Per-sample |dL/dw * w| summed per group, averaged over the calibration samples."""
    layers = models.text_layers(model)
    totals: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    with _gradients_for(model, [layers[i] for i in layer_ids]):
        for batch in _batches(model, records, processor, "taylor importance", collate):
            model.zero_grad(set_to_none=True)
            loss = model(**_to(batch, model), use_cache=False).loss
            if not torch.isfinite(loss):
                raise StudyError("calibration loss is not finite (no answer tokens?)")
            loss.backward()
            scores = [_group_scores(layers[i], hd, n_rep, _taylor_elem) for i in layer_ids]
            totals = scores if totals is None else [
                (a[0] + b[0], a[1] + b[1]) for a, b in zip(totals, scores, strict=True)]
    return [tuple(t / len(records) for t in pair) for pair in totals]


def _taylor_batched(model, layer_ids, hd, n_rep, records, processor, batch_size=None,
                    collate=None):
    """The authors' Taylor score: |w * dL/dw| summed per group, L the loss of all `records`.

    L is the language-model loss of the padded calibration batch (the mean over its answer
    tokens), as one backward pass over that batch gives it. For a model whose activations do
    not fit one batch, the records go `batch_size` at a time (default: all of them), collated
    one batch at a time, and the gradients accumulate: each batch's mean loss times its
    answer tokens, the sum divided by all of them, is the gradient of the one-batch loss.
    Only the decoder linears of `layer_ids` keep gradients: one gradient per weight, whatever
    the number of samples.
    """
    if not records:
        raise StudyError("calibration needs at least one record")
    collate = _collator(model, processor, collate)
    size = batch_size or len(records)
    layers = models.text_layers(model)
    tokens = 0
    with _gradients_for(model, [layers[i] for i in layer_ids]):
        for start in range(0, len(records), size):
            batch = collate(records[start:start + size])
            n = int((batch["labels"][:, 1:] != IGNORE).sum())  # the loss's shifted targets
            loss = model(**_to(batch, model), use_cache=False).loss
            if n == 0 or not torch.isfinite(loss):
                raise StudyError("calibration loss is not finite (no answer tokens?)")
            (loss * n).backward()
            tokens += n
        scores = [_group_scores(layers[i], hd, n_rep, _taylor_elem) for i in layer_ids]
    return [(g / tokens, c / tokens) for g, c in scores]  # |.| commutes with a positive scale


@contextlib.contextmanager
def _gradients_for(model, layers):
    """Gradients on (only) the decoder linears of `layers`, in eval mode (no dropout); the
    model's flags, mode and (empty) gradients are restored afterwards."""
    targets = {id(t) for layer in layers for lin in _linears(layer) for t in _weights(lin)}
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(id(p) in targets)
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)


def _taylor_elem(p: torch.Tensor) -> torch.Tensor:
    return (p.grad.float() * p.detach().float()).abs()


def _magnitude_elem(p: torch.Tensor) -> torch.Tensor:
    return p.detach().float().abs()


def _linears(layer) -> list[nn.Linear]:
    return surgery.parts(layer).linears()


def _weights(lin: nn.Linear) -> list[torch.Tensor]:
    return [lin.weight] + ([lin.bias] if lin.bias is not None else [])


def width_scores(model, importance: str, layer_ids, records=None, processor=None, seed=0,
                 collate=None):
    """(attention-group scores, MLP-channel scores) for each layer in `layer_ids`.

    importance: "taylor" (the authors' batch gradient, `_taylor_batched`), "taylor-mean"
    (per-sample |g * w| averaged, `_taylor_scores`), "magnitude" or "random".
    `collate` turns calibration records into batches (default: `_collator`).
    """
    tc = surgery.text_config(model)
    hd, n_rep = surgery.head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    layers = models.text_layers(model)
    if importance in ("taylor", "taylor-mean"):
        if records is None or processor is None:
            raise StudyError(f"{importance} importance needs calibration records and a processor")
        if importance == "taylor":
            return _taylor_batched(model, layer_ids, hd, n_rep, records, processor,
                                   collate=collate)
        return _taylor_scores(model, layer_ids, hd, n_rep, records, processor, collate)
    if importance == "magnitude":
        with torch.no_grad():
            return [_group_scores(layers[i], hd, n_rep, _magnitude_elem) for i in layer_ids]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in layer_ids:
        shape = surgery.layer_shape(layers[i], hd)
        out.append((torch.rand(shape.kv_heads, generator=gen),
                    torch.rand(shape.intermediate, generator=gen)))
    return out
