"""Latency: prefill and per-token decode times of one model, and of several models interleaved (ratios from one run)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from studylib.errors import StudyError
from studylib.evaluation.inputs import example_inputs


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "iqr_ms": q[2] - q[0], "n": len(ms)}


def _prefill(model, inputs):
    return model(**inputs, use_cache=True)


def _clock(device: torch.device) -> float:
    """perf_counter after the device's queued work finished (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def latency(model, text_tokens: int = 50, batch_sizes=(1, 8), repeats: int = 5,
            decode_tokens: int = 8) -> dict[str, Any]:
    """Prefill and per-token decode wall time, median and IQR over repeated runs."""
    out = {}
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in batch_sizes:
            inputs = example_inputs(model, text_tokens, batch)
            _prefill(model, inputs)  # warm-up
            prefill, decode = [], []
            for _ in range(repeats):
                start = _clock(device)
                result = _prefill(model, inputs)
                prefill.append(_clock(device) - start)
                decode += _decode_steps(model, inputs, result, decode_tokens, device)
            out[f"batch_{batch}"] = {"prefill": _stats(prefill), "decode_per_token": _stats(decode)}
    return out


def _decode_steps(model, inputs, result, steps: int, device: torch.device) -> list[float]:
    """Greedy single-token steps on the prefill's KV cache; the time of each step."""
    cache, mask = result.past_key_values, inputs["attention_mask"]
    token = result.logits[:, -1:].argmax(-1)
    times = []
    for _ in range(steps):
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        start = _clock(device)
        step = model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
        times.append(_clock(device) - start)
        cache, token = step.past_key_values, step.logits[:, -1:].argmax(-1)
    return times


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "n": len(v)}


def paired_latency(timed: Mapping[str, Any], text_tokens: int = 50, repeats: int = 20,
                   decode_tokens: int = 8,
                   reference: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Batch-1 latency of several models timed round-robin, with ratios to a reference.

    Each round times every model of `timed` once (`latency` with repeats=1: one
    warm-up, one prefill, `decode_tokens` decode steps), in reversed order every other
    round, so that models timed back to back see the same machine load. Per model: prefill
    and per-token decode as median / IQR (ms) over the rounds; for each model with a
    reference (`reference[name]`; default: every model but the first has the first),
    `<phase>_ratio`: median and quartiles of its time / the reference's time in the same
    round.
    """
    if repeats < 1:
        raise StudyError(f"repeats must be >= 1, got {repeats}")
    names = list(timed)
    if not names:
        raise StudyError("paired_latency needs at least one model")
    if reference is None:
        reference = {n: names[0] for n in names[1:]}
    bad = [r for r in reference.values() if r not in timed]
    if bad:
        raise StudyError(f"reference model {bad[0]!r} is not among the timed models")
    times = {n: {"prefill": [], "decode_per_token": []} for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            lat = latency(timed[name], text_tokens, batch_sizes=(1,), repeats=1,
                                  decode_tokens=decode_tokens)["batch_1"]
            for phase in ("prefill", "decode_per_token"):
                times[name][phase].append(lat[phase]["median_ms"])
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        out[name] = {}
        for phase, values in times[name].items():
            s = _spread(values)
            out[name][phase] = {"median_ms": s["median"], "iqr_ms": s["q3"] - s["q1"],
                                "n": s["n"]}
            if name in reference:
                base = times[reference[name]][phase]
                out[name][f"{phase}_ratio"] = _spread(
                    [a / b for a, b in zip(values, base, strict=True)])
    return out
