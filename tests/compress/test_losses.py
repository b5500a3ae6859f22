"""Recovery losses against closed-form values (two-class distributions worked by hand)."""

import math

import pytest
import torch

from studylib.compress import losses

# Teacher p = (3/4, 1/4) (logits (ln 3, 0)), student q = (1/2, 1/2) (logits (0, 0)) at tau = 1.
P, Q = (0.75, 0.25), (0.5, 0.5)
KL_PQ = P[0] * math.log(P[0] / Q[0]) + P[1] * math.log(P[1] / Q[1])  # 0.1308...
KL_QP = Q[0] * math.log(Q[0] / P[0]) + Q[1] * math.log(Q[1] / P[1])  # 0.1438...


def _pair(tau: float = 1.0):
    # Logits scaled by tau so the softened distributions are exactly P and Q.
    teacher = torch.tensor([[[math.log(3) * tau, 0.0]]])
    student = torch.zeros(1, 1, 2)
    return student, teacher


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_forward_kl_closed_form(tau):
    s, t = _pair(tau)
    assert losses.forward_kl(s, t, torch.ones(1, 1, dtype=torch.bool), tau).item() == \
        pytest.approx(KL_PQ * tau**2, rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_reverse_kl_closed_form(tau):
    s, t = _pair(tau)
    assert losses.reverse_kl(s, t, torch.ones(1, 1, dtype=torch.bool), tau).item() == \
        pytest.approx(KL_QP * tau**2, rel=1e-6)
    assert KL_QP != pytest.approx(KL_PQ, rel=1e-3)  # the two directions really differ here


def test_identical_inputs_give_zero():
    x = torch.randn(2, 5, 7)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert losses.forward_kl(x, x.clone(), mask).item() == pytest.approx(0, abs=1e-6)
    assert losses.reverse_kl(x, x.clone(), mask).item() == pytest.approx(0, abs=1e-6)
    assert losses.hidden_l2(x, x.clone(), mask).item() == 0.0


def test_mask_excludes_positions_and_averages_over_the_rest():
    s, t = _pair()
    # Position 1: a wildly different pair that the mask excludes; position 2: identical.
    s = torch.cat([s, torch.tensor([[[9.0, -9.0]]]), torch.zeros(1, 1, 2)], 1)
    t = torch.cat([t, torch.tensor([[[-9.0, 9.0]]]), torch.zeros(1, 1, 2)], 1)
    mask = torch.tensor([[True, False, True]])
    assert losses.forward_kl(s, t, mask, 1.0).item() == pytest.approx(KL_PQ / 2, rel=1e-6)
    assert losses.reverse_kl(s, t, mask, 1.0).item() == pytest.approx(KL_QP / 2, rel=1e-6)
    assert losses.forward_kl(s, t, None, 1.0).item() > 1.0  # unmasked, position 1 dominates
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert losses.forward_kl(s, t, empty).item() == 0.0  # no answers: 0, not NaN


def test_hidden_l2_is_squared_distance_over_hidden_size():
    s = torch.tensor([[[1.0, 2.0], [5.0, 5.0], [0.0, 0.0]]])
    t = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, False, True]])
    # ((1 + 4) / 2 + 0) / 2 positions
    assert losses.hidden_l2(s, t, mask).item() == pytest.approx(1.25)
    assert losses.hidden_l2(s, t).item() == pytest.approx((2.5 + 25 + 0) / 3)
    with pytest.raises(ValueError, match="hidden sizes differ"):
        losses.hidden_l2(s, torch.zeros(1, 3, 3))


def test_kd_mask_is_the_label_mask_shifted_left():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, -100, -100, 8]])
    expected = torch.tensor([[False, True, True, False, False], [True, False, False, True, False]])
    assert torch.equal(losses.kd_mask(labels), expected)


def test_answer_cross_entropy_matches_transformers_causal_lm_loss():
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 2, -100], [-100, 5, -100, -100, 6, 2]])
    ours = losses.answer_cross_entropy(logits, labels)
    theirs = ForCausalLMLoss(logits, labels, vocab_size=11)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_topk_kd_equals_exact_kd_when_k_covers_the_vocabulary_and_approximates_otherwise():
    torch.manual_seed(1)
    s, t = torch.randn(4, 9), torch.randn(4, 9) * 3
    values, indices = t.topk(9, -1)
    assert losses.topk_forward_kl(s, values, indices, 2.0).item() == pytest.approx(
        losses.forward_kl(s, t, None, 2.0).item(), rel=1e-5)
    v3, i3 = t.topk(3, -1)
    assert losses.topk_forward_kl(s, v3, i3, 2.0).item() != pytest.approx(
        losses.forward_kl(s, t, None, 2.0).item(), rel=1e-3)
    same = losses.topk_reverse_kl(t, v3, i3, 2.0)
    assert same.item() == pytest.approx(0, abs=1e-6)


def test_kd_gradients_move_the_student_towards_the_teacher():
    s, t = _pair()
    s = s.clone().requires_grad_(True)
    mask = torch.ones(1, 1, dtype=torch.bool)
    for fn in (losses.forward_kl, losses.reverse_kl):
        (grad,) = torch.autograd.grad(fn(s, t, mask, 1.0), s)
        assert grad[0, 0, 0] < 0 < grad[0, 0, 1]  # raise class 0's logit, as the teacher does
