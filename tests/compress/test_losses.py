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


# --- the losses after the paper: skew KL / skew reverse KL (DistiLLM) and GKD's JSD ---------


def _reference(p, q, kind, skew=0.1, beta=0.5):
    """The papers' formulas, written out with plain sums over two probability vectors
    (p the teacher, q the student): DistiLLM eqs. 2-3, GKD's generalised JSD."""
    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    def mix(w, a, b):
        return [w * x + (1 - w) * y for x, y in zip(a, b, strict=True)]

    if kind == "skl":  # D_KL(p || a p + (1 - a) q)
        return kl(p, mix(skew, p, q))
    if kind == "srkl":  # D_KL(q || (1 - a) p + a q)
        return kl(q, mix(skew, q, p))
    m = mix(beta, p, q)  # jsd: b KL(p || m) + (1 - b) KL(q || m), m = b p + (1 - b) q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@pytest.mark.parametrize("kind, knob", [("skl", 0.1), ("skl", 0.5), ("srkl", 0.1),
                                        ("srkl", 0.7), ("jsd", 0.5), ("jsd", 0.1),
                                        ("jsd", 0.9)])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_new_losses_match_the_papers_formulas(kind, knob, tau):
    torch.manual_seed(2)
    s, t = torch.randn(3, 6), torch.randn(3, 6) * 2
    knobs = {"skew": knob} if kind != "jsd" else {"jsd_beta": knob}
    ours = losses.logits_kd(s, t, None, tau, kind, **knobs).item()
    expected = 0.0
    for srow, trow in zip(s, t, strict=True):
        p = torch.softmax(trow.double() / tau, -1).tolist()
        q = torch.softmax(srow.double() / tau, -1).tolist()
        expected += _reference(p, q, kind, skew=knob, beta=knob) / 3
    assert ours == pytest.approx(expected * tau**2, rel=1e-5)
    assert ours > 0
    assert losses.logits_kd(t, t.clone(), None, tau, kind, **knobs).item() == pytest.approx(
        0, abs=1e-6)


def test_new_losses_reduce_to_the_kl_forms_at_their_ends():
    torch.manual_seed(3)
    s, t = torch.randn(4, 8), torch.randn(4, 8) * 2
    kl, rkl = (losses.logits_kd(s, t, None, 1.0, k).item() for k in ("kl", "rkl"))
    # skew 0: exactly the plain forms
    assert losses.logits_kd(s, t, None, 1.0, "skl", skew=0.0).item() == pytest.approx(kl, rel=1e-6)
    assert losses.logits_kd(s, t, None, 1.0, "srkl", skew=0.0).item() == pytest.approx(rkl,
                                                                                       rel=1e-6)
    # skew bounds the divergence: it shrinks as more of the other side is mixed in
    skl = [losses.logits_kd(s, t, None, 1.0, "skl", skew=a).item() for a in (0.0, 0.1, 0.5)]
    assert skl[0] > skl[1] > skl[2] > 0
    # JSD / b -> forward KL as b -> 0 and JSD / (1 - b) -> reverse KL as b -> 1: the gap
    # shrinks with b (it is O(b)), to under 1% at b = 1e-4
    def gaps(kind_end: str, reference: float) -> list[float]:
        out = []
        for b in (1e-2, 1e-3, 1e-4):
            beta = b if kind_end == "kl" else 1 - b
            out.append(abs(losses.logits_kd(s, t, None, 1.0, "jsd", jsd_beta=beta).item() / b
                           / reference - 1))
        return out

    for end, reference in (("kl", kl), ("rkl", rkl)):
        g = gaps(end, reference)
        assert g[0] > g[1] > g[2] and g[2] < 0.01, (end, g)
    with pytest.raises(ValueError, match="unknown logits loss 'js'"):
        losses.logits_kd(s, t, None, 1.0, "js")


@pytest.mark.parametrize("kind", ["skl", "srkl", "jsd"])
def test_new_losses_on_a_cached_top_k_teacher(kind):
    """Top-k (a cached teacher): both sides renormalised over the k tokens, so k covering
    the vocabulary gives the exact loss, and a student equal to the teacher gives 0."""
    torch.manual_seed(4)
    s, t = torch.randn(4, 9), torch.randn(4, 9) * 3
    values, indices = t.topk(9, -1)
    assert losses.topk_logits_kd(s, values, indices, 2.0, kind).item() == pytest.approx(
        losses.logits_kd(s, t, None, 2.0, kind).item(), rel=1e-5)
    v3, i3 = t.topk(3, -1)
    assert losses.topk_logits_kd(t, v3, i3, 2.0, kind).item() == pytest.approx(0, abs=1e-6)
    (grad,) = torch.autograd.grad(
        losses.topk_logits_kd(s.requires_grad_(True), v3, i3, 2.0, kind), s)
    assert grad.abs().sum() > 0
