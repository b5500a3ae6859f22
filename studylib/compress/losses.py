"""Recovery-training losses: logits KD (forward / reverse KL) and hidden-state L2.

All three are means over the *selected* positions only (answer tokens), never over image,
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


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               mask: torch.Tensor | None = None, tau: float = 2.0) -> torch.Tensor:
    """tau**2 * mean over masked positions of D_KL(p_teacher || q_student), both at temperature tau.

    Mode-covering: the student is pushed to put mass wherever the teacher does. The tau**2
    factor (Hinton et al.) keeps gradient magnitudes comparable across temperatures.
    """
    s = _select(student_logits, mask).float() / tau
    t = _select(teacher_logits, mask).float() / tau
    log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _mean(per_position) * tau**2


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               mask: torch.Tensor | None = None, tau: float = 2.0) -> torch.Tensor:
    """tau**2 * mean over masked positions of D_KL(q_student || p_teacher), at temperature tau.

    Mode-seeking: the student may ignore teacher modes it cannot fit, but is penalised for
    mass where the teacher has little (MiniLLM's argument for small students).
    """
    s = _select(student_logits, mask).float() / tau
    t = _select(teacher_logits, mask).float() / tau
    log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
    per_position = (log_q.exp() * (log_q - log_p)).sum(-1)
    return _mean(per_position) * tau**2


def topk_forward_kl(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                    teacher_indices: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """Forward KL against a teacher known only through its top-k logits (a cached teacher).

    The teacher distribution is the softmax of its k largest logits / tau (renormalised over
    those k tokens); the student keeps its full softmax. Equals `forward_kl` exactly when k
    covers the vocabulary, and approximates it otherwise. Inputs are already selected:
    student (N, V), teacher values and indices (N, k).
    """
    log_q = F.log_softmax(student_logits.float() / tau, -1).gather(-1, teacher_indices.long())
    log_p = F.log_softmax(teacher_values.float() / tau, -1)
    return _mean((log_p.exp() * (log_p - log_q)).sum(-1)) * tau**2


def topk_reverse_kl(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                    teacher_indices: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """Reverse KL restricted to the teacher's top-k tokens (both renormalised over them)."""
    s = student_logits.float().gather(-1, teacher_indices.long()) / tau
    log_q = F.log_softmax(s, -1)
    log_p = F.log_softmax(teacher_values.float() / tau, -1)
    return _mean((log_q.exp() * (log_q - log_p)).sum(-1)) * tau**2


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
