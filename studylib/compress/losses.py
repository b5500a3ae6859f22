"""Recovery-training losses: logits KD and hidden-state L2.

Logits KD compares the teacher's softened distribution p with the student's q, position by
position (`divergence`), in one of five forms (`LOGIT_LOSSES`):

- `kl`: forward D_KL(p || q), the paper's KD: mode-covering;
- `rkl`: reverse D_KL(q || p), MiniLLM's: mode-seeking;
- `skl`: skew KL, D_KL(p || a p + (1 - a) q), and `srkl`: skew reverse KL,
  D_KL(q || (1 - a) p + a q) (DistiLLM, Ko et al., ICML 2024). Mixing a share `skew` = a of
  the other distribution into the second argument bounds the ratio inside the log, which
  stabilises the gradients; a = 0 gives kl and rkl exactly;
- `jsd`: the generalised Jensen-Shannon divergence of GKD (Agarwal et al., ICLR 2024; TRL's
  `GKDTrainer`), b D_KL(p || m) + (1 - b) D_KL(q || m) with m = b p + (1 - b) q and
  b = `jsd_beta` in (0, 1). Divided by b it tends to forward KL as b -> 0, divided by 1 - b
  to reverse KL as b -> 1 (it is 0 at both ends, where TRL switches to the KL forms).

All of them are means over the *selected* positions only (answer tokens), never over image,
prompt or padding tokens -- unlike the authors' code, which sums KL over every position and
divides by the batch size (see shared/notes/pitfalls.md). That makes the loss scale
independent of batch size, sequence length and padding, so one weight works for any data.

Which positions: logits at position t predict token t+1, so the logits (and the last
hidden state that produces them) of position t belong to answer token t+1. `kd_mask(labels)`
is therefore the *shifted* label mask: `mask[:, t] = labels[:, t + 1] != -100`. It selects
exactly the positions whose predictions the cross-entropy trains (HF shifts the same way),
and every KD term in studylib uses it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def kd_mask(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next-token prediction is an answer token (labels shifted left by one)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[..., :-1] = labels[..., 1:] != IGNORE
    return mask


def _select(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Rows of `x` (..., D) at true positions of `mask` (...), as (N, D)."""
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    return x[mask.bool()]


def _mean(per_position: torch.Tensor) -> torch.Tensor:
    # An all-false mask gives 0 (not NaN), so a batch without answers cannot poison training.
    if per_position.numel() == 0:
        return per_position.sum()
    return per_position.mean()


LOGIT_LOSSES = ("kl", "rkl", "skl", "srkl", "jsd")


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """D_KL(a || b) over the last dimension, from log-probabilities."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def _mix(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """log(w a + (1 - w) b), computed in log space (exact at w = 0 and w = 1)."""
    if w == 0:
        return log_b
    if w == 1:
        return log_a
    return torch.logaddexp(log_a + math.log(w), log_b + math.log1p(-w))


def divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: str = "kl", skew: float = 0.1,
               jsd_beta: float = 0.5) -> torch.Tensor:
    """Per position: teacher p against student q (log-probabilities over the same tokens,
    last dimension) in the form `kind` (module doc)."""
    if kind == "kl":
        return _kl(log_p, log_q)
    if kind == "rkl":
        return _kl(log_q, log_p)
    if kind == "skl":
        return _kl(log_p, _mix(log_p, log_q, skew))
    if kind == "srkl":
        return _kl(log_q, _mix(log_q, log_p, skew))
    if kind == "jsd":
        m = _mix(log_p, log_q, jsd_beta)
        return jsd_beta * _kl(log_p, m) + (1 - jsd_beta) * _kl(log_q, m)
    raise ValueError(f"unknown logits loss {kind!r}; choose from {', '.join(LOGIT_LOSSES)}")


def logits_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              mask: torch.Tensor | None = None, tau: float = 2.0, kind: str = "kl",
              skew: float = 0.1, jsd_beta: float = 0.5) -> torch.Tensor:
    """tau**2 * mean over masked positions of `divergence(p, q, kind)`, both softened at
    temperature tau. The tau**2 factor (Hinton et al.) keeps gradient magnitudes comparable
    across temperatures."""
    s = _select(student_logits, mask).float() / tau
    t = _select(teacher_logits, mask).float() / tau
    log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
    return _mean(divergence(log_p, log_q, kind, skew, jsd_beta)) * tau**2


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               mask: torch.Tensor | None = None, tau: float = 2.0) -> torch.Tensor:
    """tau**2 * mean over masked positions of D_KL(p_teacher || q_student), both at temperature tau.

    Mode-covering: the student is pushed to put mass wherever the teacher does.
    """
    return logits_kd(student_logits, teacher_logits, mask, tau, "kl")


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               mask: torch.Tensor | None = None, tau: float = 2.0) -> torch.Tensor:
    """tau**2 * mean over masked positions of D_KL(q_student || p_teacher), at temperature tau.

    Mode-seeking: the student may ignore teacher modes it cannot fit, but is penalised for
    mass where the teacher has little (MiniLLM's argument for small students).
    """
    return logits_kd(student_logits, teacher_logits, mask, tau, "rkl")


def topk_logits_kd(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                   teacher_indices: torch.Tensor, tau: float = 2.0, kind: str = "kl",
                   skew: float = 0.1, jsd_beta: float = 0.5) -> torch.Tensor:
    """Logits KD against a teacher known only through its top-k logits (a cached teacher).

    The teacher distribution is the softmax of its k largest logits / tau (renormalised over
    those k tokens). For `kl` the student keeps its full softmax, read at those tokens, so
    the loss equals `forward_kl` exactly when k covers the vocabulary and approximates it
    otherwise. The other forms compare two distributions on one support, so the student's
    is renormalised over the k tokens too. Inputs are already selected: student (N, V),
    teacher values and indices (N, k).
    """
    s = student_logits.float() / tau
    if kind == "kl":
        log_q = F.log_softmax(s, -1).gather(-1, teacher_indices.long())
    else:
        log_q = F.log_softmax(s.gather(-1, teacher_indices.long()), -1)
    log_p = F.log_softmax(teacher_values.float() / tau, -1)
    return _mean(divergence(log_p, log_q, kind, skew, jsd_beta)) * tau**2


def topk_forward_kl(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                    teacher_indices: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """Forward KL against a cached teacher's top-k logits (`topk_logits_kd`)."""
    return topk_logits_kd(student_logits, teacher_values, teacher_indices, tau, "kl")


def topk_reverse_kl(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                    teacher_indices: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """Reverse KL restricted to the teacher's top-k tokens (both renormalised over them)."""
    return topk_logits_kd(student_logits, teacher_values, teacher_indices, tau, "rkl")


def hidden_l2(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over masked positions of ||h_student - h_teacher||^2 / hidden_size (an MSE).

    Dividing by the hidden size makes the value comparable across model widths; hidden
    sizes must match (layer pruning keeps them, width pruning here keeps the hidden size).
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(f"hidden sizes differ: student {student_hidden.shape[-1]}, "
                         f"teacher {teacher_hidden.shape[-1]}")
    s = _select(student_hidden, mask).float()
    t = _select(teacher_hidden, mask).float()
    return _mean(((s - t) ** 2).sum(-1) / s.shape[-1])


def answer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The SFT loss: next-token cross-entropy, mean over answer tokens (HF's causal-LM shift)."""
    mask = kd_mask(labels)
    target = labels[..., 1:][mask[..., :-1]]
    return F.cross_entropy(_select(logits, mask).float(), target) if target.numel() else \
        logits.sum() * 0.0
