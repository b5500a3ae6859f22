"""What a training prefix leaves behind, recorded in two strengths.

A teacher's training records, CHECKSUM_STEP optimizer steps into each stage:

- the **sha256** of the weights: any change shows, but so does the rounding of another CPU
  kind (`studylib.machine`). It is compared only on the machine that recorded it;
- a **fingerprint**: per tensor, the norm of the weights and the norm of their update since
  the stage began. Rounding moves these by little; a change of the learning rate, the
  initialisation, the data or the schedule moves them by much more. It is compared on any
  machine, within TOLERANCE (measured across CPU kinds: README, "CPU kinds").
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import torch

# Optimizer steps into each stage at which the prefix is recorded. `tests/testbed/
# test_teachers.py` retrains up to these points only (`train_teacher(stop_after=stage)`).
CHECKSUM_STEP = 10

# Largest relative difference of a fingerprint entry allowed between two machines. Measured on
# the committed teachers' vision and align prefixes, AVX512-bf16 kernels against AVX2 ones on
# one CPU (docs/cpu-kinds.md): at most 1.8e-6 (vision) and 1.7e-3 (align, a layer norm's
# update), medians 1e-8 and 8e-5. The align learning rate 10% higher moved the update norms
# by 7-9% (median), the LLM's init 10% wider its weight norms by ~10%.
TOLERANCE = 1e-2
# Tensors whose training is rounding noise, left out of the comparison: attention's key bias.
# A bias on the keys adds the same q.b to every logit of a query, which softmax ignores, so
# its gradient is zero up to rounding, and Adam scales that noise into full-size steps: across
# CPU kinds its norm differed by up to 55% after 10 steps, where every other tensor's moved
# by less than TOLERANCE.
NOISE_ONLY = re.compile(r"k_proj\.bias$")
# Update norms below this (absolute) are compared absolutely: a tensor that barely moved
# has no meaningful relative change.
UPDATE_FLOOR = 1e-6


def weights_sha256(model) -> str:
    """sha256 of every parameter and buffer, by name (bit-exact: any change shows)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _norm(tensor: torch.Tensor) -> float:
    return float(tensor.detach().cpu().double().norm())


def fingerprint(model, start: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per tensor: the weights' norm, and the norm of their change since `start`."""
    state = model.state_dict()
    return {"norms": {k: _norm(v) for k, v in sorted(state.items())},
            "update_norms": {k: _norm(v.double() - start[k].double())
                             for k, v in sorted(state.items())}}


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, float]:
    """Relative difference of every fingerprint entry of `got` from `want`, by
    "norms/<tensor>" or "update_norms/<tensor>" (NOISE_ONLY tensors left out); a missing or
    extra tensor is `inf`."""
    out: dict[str, float] = {}
    for part in ("norms", "update_norms"):
        g, w = got[part], want[part]
        for name in sorted(set(g) | set(w)):
            if NOISE_ONLY.search(name):
                continue
            if name not in g or name not in w:
                out[f"{part}/{name}"] = math.inf
                continue
            scale = max(abs(w[name]), UPDATE_FLOOR if part == "update_norms" else 0.0)
            out[f"{part}/{name}"] = abs(g[name] - w[name]) / scale if scale else abs(g[name])
    return out


def mismatches(got: dict[str, Any], want: dict[str, Any],
               tolerance: float = TOLERANCE) -> dict[str, float]:
    """The fingerprint entries that differ by more than `tolerance` (empty: they match)."""
    return {k: d for k, d in differences(got, want).items() if not d <= tolerance}


def prefix_callback(stage: str, record: dict[str, Any], stop: bool):
    """A Trainer callback recording `stage`'s prefix into `record[stage]` after
    CHECKSUM_STEP optimizer steps ({"step", "sha256", "fingerprint"}); with `stop`, it ends
    the stage there (the learning-rate schedule is the full run's, so the weights match)."""
    from transformers import TrainerCallback

    class _Prefix(TrainerCallback):
        start: dict[str, torch.Tensor]  # the weights when the stage began

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.start = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == CHECKSUM_STEP:
                record[stage] = {"step": CHECKSUM_STEP, "sha256": weights_sha256(model),
                                 "fingerprint": fingerprint(model, self.start)}
                if stop:
                    control.should_training_stop = True

    return _Prefix()
