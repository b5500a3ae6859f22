"""Pruning: exactness against masked/bypassed originals, GQA groups, checkpoints, the CLI."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from studylib import models
from studylib.compress import importance, prune
from studylib.errors import StudyError
from studylib.models import surgery
from studylib.testbed import instructions, toy
from studylib.testbed.data import ConversationCollator

ARCHS = ("toy-llava", "toy-bunny", "toy-internvl")


@pytest.fixture(scope="module")
def micro():
    """Untrained micro models of every backbone, with their processors (eval mode)."""
    built = {}
    for arch in ARCHS:
        model, processor = toy.build(arch, "micro", seed=0)
        built[arch] = (model.eval(), processor)
    return built


@pytest.fixture(scope="module")
def calib():
    return instructions.calibration_sample(3, seed=0)


@pytest.fixture(scope="module")
def batch(micro, calib):
    """Two image+text samples (padded) for comparing logits."""
    processor = micro["toy-llava"][1]
    full = ConversationCollator(processor)(calib[:2])
    return {k: v for k, v in full.items() if k != "labels"}


def logits(model, batch):
    with torch.no_grad():
        return model(**batch, use_cache=False).logits


def masked_original(model, report):
    """The original with the removed heads' o_proj and channels' down_proj columns zeroed."""
    masked = copy.deepcopy(model)
    tc = masked.config.text_config
    hd = surgery.head_dim(tc)
    with torch.no_grad():
        for info, layer in zip(report.layers, models.text_layers(masked), strict=True):
            parts = surgery.parts(layer)
            for h in set(range(tc.num_attention_heads)) - set(info["kept_q_heads"]):
                parts.o.weight[:, h * hd:(h + 1) * hd] = 0
            gone = sorted(set(range(parts.mlp_out.in_features)) - set(info["kept_channels"]))
            parts.mlp_out.weight[:, gone] = 0
    return masked


# --- widthwise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_width_pruned_equals_zero_masked_original(micro, calib, batch, arch):
    model, processor = micro[arch]
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "width", 0.3, calib, processor)
    tc, old = pruned.config.text_config, model.config.text_config
    n_rep = old.num_attention_heads // old.num_key_value_heads
    for info in report.layers:  # a kv head and its query heads go together
        assert info["kept_q_heads"] == [h for h in range(old.num_attention_heads)
                                        if h // n_rep in info["kept_kv_heads"]]
    assert tc.num_key_value_heads < old.num_key_value_heads
    assert tc.num_attention_heads == tc.num_key_value_heads * n_rep
    assert tc.head_dim == surgery.head_dim(old)
    assert tc.intermediate_size < old.intermediate_size
    assert abs(report.ratio_achieved - 0.3) < 0.01
    assert report.params_after["vision"] == report.params_before["vision"]
    assert report.params_after["projector"] == report.params_before["projector"]
    before = models.parameter_counts(model)["total"] - surgery.decoder_params(model)
    assert report.params_after["total"] - report.decoder_params_after == before

    ours, reference = logits(pruned, batch), logits(masked_original(model, report), batch)
    assert (ours - reference).abs().max() <= 1e-4
    assert (ours - logits(model, batch)).abs().max() > 1e-3  # something was really removed
    for name, p in pruned.model.vision_tower.state_dict().items():
        assert torch.equal(p, model.model.vision_tower.state_dict()[name])
    if arch == "toy-internvl":  # Phi-3: the fused linears keep [q | k | v] and [gate | up]
        hd, layer = tc.head_dim, models.text_layers(pruned)[0]
        info, full = report.layers[0], models.text_layers(model)[0]
        q, kv = old.num_attention_heads * hd, old.num_key_value_heads * hd
        heads = full.self_attn.qkv_proj.weight.view(-1, hd, old.hidden_size)  # q | k | v heads
        kept = info["kept_q_heads"] + [old.num_attention_heads + g for g in info["kept_kv_heads"]]
        kept += [old.num_attention_heads + old.num_key_value_heads + g
                 for g in info["kept_kv_heads"]]
        assert torch.equal(layer.self_attn.qkv_proj.weight, heads[kept].reshape(-1, old.hidden_size))
        assert layer.self_attn.qkv_proj.out_features == (
            tc.num_attention_heads + 2 * tc.num_key_value_heads) * hd < q + 2 * kv
        gate_up = full.mlp.gate_up_proj.weight
        inter, c = old.intermediate_size, info["kept_channels"]
        assert torch.equal(layer.mlp.gate_up_proj.weight,
                           torch.cat([gate_up[c], gate_up[[inter + i for i in c]]]))
        assert layer.self_attn.num_key_value_heads == tc.num_key_value_heads


def test_taylor_group_score_is_summed_grad_times_weight(micro, calib):
    model, processor = micro["toy-llava"]
    scores = importance.width_scores(model, "taylor-mean", [1], calib[:1], processor)
    probe = copy.deepcopy(model)
    probe.zero_grad()
    probe(**ConversationCollator(processor)(calib[:1])).loss.backward()
    attn, mlp = probe.model.language_model.layers[1].self_attn, \
        probe.model.language_model.layers[1].mlp
    hd = surgery.head_dim(model.config.text_config)

    def imp(w):
        return (w.grad * w).abs()

    q_heads = slice(2 * hd, 4 * hd)  # group 1 = kv head 1 with query heads 2 and 3
    group1 = (imp(attn.q_proj.weight)[q_heads].sum() + imp(attn.o_proj.weight)[:, q_heads].sum()
              + imp(attn.k_proj.weight)[hd:2 * hd].sum() + imp(attn.v_proj.weight)[hd:2 * hd].sum())
    channel5 = (imp(mlp.gate_proj.weight)[5].sum() + imp(mlp.up_proj.weight)[5].sum()
                + imp(mlp.down_proj.weight)[:, 5].sum())
    assert torch.allclose(scores[0][0][1], group1, rtol=1e-5)
    assert torch.allclose(scores[0][1][5], channel5, rtol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # the model is left clean


def test_fused_group_scores_sum_their_slices_of_qkv_and_gate_up(micro, calib):
    """Phi-3 (toy-internvl): a kv group's score is its q, k and v rows of `qkv_proj` plus its
    o_proj columns; a channel's is its gate row and up row of `gate_up_proj` plus its
    down_proj column -- the same sums as the separate projections."""
    model, processor = micro["toy-internvl"]
    tc = model.config.text_config
    hd, inter = surgery.head_dim(tc), tc.intermediate_size
    q_size, kv_size = tc.num_attention_heads * hd, tc.num_key_value_heads * hd
    probe = copy.deepcopy(model)
    probe.zero_grad()
    probe(**ConversationCollator(processor)(calib[:2]), use_cache=False).loss.backward()
    layer = probe.model.language_model.layers[1]
    qkv, o = layer.self_attn.qkv_proj.weight, layer.self_attn.o_proj.weight
    gate_up, down = layer.mlp.gate_up_proj.weight, layer.mlp.down_proj.weight

    def expected(elem):
        e = {name: elem(w) for name, w in (("qkv", qkv), ("o", o), ("gu", gate_up),
                                           ("down", down))}
        q_rows = slice(2 * hd, 4 * hd)  # group 1 = kv head 1 with query heads 2 and 3
        k_rows = slice(q_size + hd, q_size + 2 * hd)
        v_rows = slice(q_size + kv_size + hd, q_size + kv_size + 2 * hd)
        group1 = (e["qkv"][q_rows].sum() + e["o"][:, q_rows].sum() + e["qkv"][k_rows].sum()
                  + e["qkv"][v_rows].sum())
        channel5 = e["gu"][5].sum() + e["gu"][inter + 5].sum() + e["down"][:, 5].sum()
        return group1.detach(), channel5.detach()

    batched = importance.width_scores(model, "taylor", [1], calib[:2], processor)
    group1, channel5 = expected(lambda w: (w.grad * w).abs())
    assert torch.allclose(batched[0][0][1], group1, rtol=1e-4)
    assert torch.allclose(batched[0][1][5], channel5, rtol=1e-4)
    one = importance.width_scores(model, "taylor-mean", [1], calib[:1], processor)
    assert one[0][0].shape == (tc.num_key_value_heads,) and one[0][1].shape == (inter,)
    magnitude = importance.width_scores(model, "magnitude", [1])
    group1, channel5 = expected(lambda w: w.abs())
    assert torch.allclose(magnitude[0][0][1], group1) and torch.allclose(magnitude[0][1][5], channel5)
    assert all(p.grad is None for p in model.parameters())


def test_one_sample_taylor_forms_agree(micro, calib):
    """With one calibration sample, |mean of g*w| and the mean of |g*w| are the same thing."""
    model, processor = micro["toy-bunny"]
    batched = importance.width_scores(model, "taylor", [0, 1], calib[:1], processor)
    mean = importance.width_scores(model, "taylor-mean", [0, 1], calib[:1], processor)
    for (g1, c1), (g2, c2) in zip(batched, mean, strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4) and torch.allclose(c1, c2, rtol=1e-4)


def test_taylor_is_abs_of_the_batch_gradient_times_weight(micro, calib):
    """The authors' form: |w * dL/dw| with L the loss of the padded 2-sample batch, by hand;
    `taylor-mean` (per-sample |g*w| averaged) scores the same shapes but other values."""
    model, processor = micro["toy-llava"]
    batched = importance.width_scores(model, "taylor", [1], calib[:2], processor)
    mean = importance.width_scores(model, "taylor-mean", [1], calib[:2], processor)
    probe = copy.deepcopy(model)
    probe.zero_grad()
    probe(**ConversationCollator(processor)(calib[:2]), use_cache=False).loss.backward()
    mlp = probe.model.language_model.layers[1].mlp
    hand = ((mlp.gate_proj.weight.grad * mlp.gate_proj.weight).abs().sum(1)
            + (mlp.up_proj.weight.grad * mlp.up_proj.weight).abs().sum(1)
            + (mlp.down_proj.weight.grad * mlp.down_proj.weight).abs().sum(0))
    assert torch.allclose(batched[0][1], hand.detach(), rtol=1e-4, atol=1e-12)
    assert batched[0][0].shape == mean[0][0].shape and batched[0][1].shape == mean[0][1].shape
    assert not torch.allclose(batched[0][1], mean[0][1], rtol=1e-2)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("arch", ["toy-llava", "toy-internvl"])
def test_taylor_gradient_accumulation_equals_one_batch(micro, calib, arch):
    """Batches of one, their losses weighted by answer tokens, give the 3-sample batch's
    gradient (samples of different lengths: the weights matter)."""
    model, processor = micro[arch]
    tc = model.config.text_config
    hd, n_rep = surgery.head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    one = importance._taylor_batched(model, [0, 1], hd, n_rep, calib, processor)
    accumulated = importance._taylor_batched(model, [0, 1], hd, n_rep, calib, processor,
                                             batch_size=1)
    unweighted = importance._taylor_batched(model, [0], hd, n_rep, calib[:1], processor)
    for (g1, c1), (g2, c2) in zip(one, accumulated, strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4) and torch.allclose(c1, c2, rtol=1e-4)
    assert not torch.allclose(one[0][1], unweighted[0][1], rtol=1e-2)


def test_default_width_importance_is_the_authors_taylor(micro, calib):
    model, processor = micro["toy-llava"]
    assert prune.DEFAULT_IMPORTANCE["width"] == "taylor"
    assert prune.check_importance("width", None) == "taylor"
    assert "taylor-mean" in prune.IMPORTANCES["width"]
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "width", 0.3, calib, processor)
    scores = importance.width_scores(model, "taylor", list(range(len(report.layers))), calib,
                                     processor)
    removed = prune.removed_by(model, 0.3, scores)
    for info, (_, drop_c) in zip(report.layers, removed, strict=True):
        assert info["kept_channels"] == [c for c in range(len(info["channel_scores"]))
                                         if c not in drop_c]


def test_magnitude_and_random_importances(micro):
    model, _ = micro["toy-bunny"]
    magnitude = importance.width_scores(model, "magnitude", [0])
    fc2 = model.model.language_model.layers[0].mlp.fc2.weight
    fc1 = model.model.language_model.layers[0].mlp.fc1
    expected = fc1.weight[7].abs().sum() + fc1.bias[7].abs() + fc2[:, 7].abs().sum()
    assert torch.allclose(magnitude[0][1][7], expected)
    r1, r2 = (importance.width_scores(model, "random", [0, 1], seed=3) for _ in range(2))
    assert torch.equal(r1[1][1], r2[1][1])
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "width", 0.45, importance="random", seed=1)
    assert report.importance == "random" and abs(report.ratio_achieved - 0.45) < 0.01


# --- layerwise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_pruned_equals_bypassed_original(micro, calib, batch, arch):
    model, processor = micro[arch]
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "layer", 0.5, calib, processor)
    assert len(report.removed_layers) == 2 and report.ratio_achieved == 0.5
    low = sorted(range(4), key=lambda i: report.layer_scores[i])[:2]
    assert report.removed_layers == sorted(low)
    assert pruned.config.text_config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in models.text_layers(pruned)] == [0, 1]

    def bypass(module, args, kwargs, output):
        return args[0] if args else kwargs["hidden_states"]

    layers = models.text_layers(model)
    handles = [layers[i].register_forward_hook(bypass, with_kwargs=True)
               for i in report.removed_layers]
    try:
        reference = logits(model, batch)
    finally:
        for h in handles:
            h.remove()
    assert (logits(pruned, batch) - reference).abs().max() <= 1e-4
    assert (reference - logits(model, batch)).abs().max() > 1e-3  # the bypass mattered


# --- depth and width together ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_depth_plus_width_equals_the_bypassed_and_masked_original(micro, calib, batch, arch):
    """Half of a 50% budget by layers (1 of 4, Block Influence), the rest by widths of the 3
    left: the logits are the original's with that layer bypassed and those widths zeroed."""
    model, processor = micro[arch]
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "depth+width", 0.5, calib, processor, depth_share=0.5)
    assert report.parts == {"layers_removed": 1, "depth_ratio": 0.25,
                            "width_ratio_of_remaining": pytest.approx(1 / 3, abs=1e-6)}
    assert report.depth_share == 0.5 and report.importance == "taylor" and report.uniform
    assert report.removed_layers == [min(range(4), key=lambda i: report.layer_scores[i])]
    assert pruned.config.text_config.num_hidden_layers == 3 == len(report.layers)
    assert abs(report.ratio_achieved - 0.5) < 0.01
    kept = [i for i in range(4) if i not in report.removed_layers]
    masked = copy.deepcopy(model)
    widths = masked_original(_only(masked, kept), report)  # zero the widths of the kept layers
    for i, layer in zip(kept, models.text_layers(widths), strict=True):
        models.text_layers(masked)[i].load_state_dict(layer.state_dict())

    def bypass(module, args, kwargs, output):
        return args[0] if args else kwargs["hidden_states"]

    gone = models.text_layers(masked)[report.removed_layers[0]]
    handle = gone.register_forward_hook(bypass, with_kwargs=True)
    try:
        reference = logits(masked, batch)
    finally:
        handle.remove()
    assert (logits(pruned, batch) - reference).abs().max() <= 1e-4


def _only(model, kept):
    """A copy of `model` with only the decoder layers `kept` (to reuse `masked_original`)."""
    copied = copy.deepcopy(model)
    surgery.remove_layers(copied, [i for i in range(len(models.text_layers(copied)))
                                   if i not in kept])
    return copied


def test_depth_plus_width_ends_are_the_pure_methods(micro, calib, batch):
    model, processor = micro["toy-bunny"]
    results = {}
    for name, method, share in (("width", "width", None), ("share 0", "depth+width", 0.0),
                                ("layer", "layer", None), ("share 1", "depth+width", 1.0)):
        pruned = copy.deepcopy(model)
        report = prune.prune(pruned, method, 0.5, calib, processor, depth_share=share)
        results[name] = (logits(pruned, batch), report)
    assert torch.equal(results["share 0"][0], results["width"][0])
    assert torch.equal(results["share 1"][0], results["layer"][0])
    assert results["share 1"][1].removed_layers == results["layer"][1].removed_layers
    assert results["share 0"][1].removed_layers is None
    assert results["share 1"][1].layers is None  # the layers took the whole budget


def test_depth_plus_width_shrink_has_the_pruned_geometry(micro, calib):
    model, processor = micro["toy-internvl"]
    pruned, shrunk = copy.deepcopy(model), copy.deepcopy(model)
    prune.prune(pruned, "depth+width", 0.3, calib, processor, depth_share=0.25)
    prune.shrink(shrunk, "depth+width", 0.3, depth_share=0.25)
    assert surgery.decoder_params(shrunk) == surgery.decoder_params(pruned)
    assert shrunk.config.text_config.to_dict() == pruned.config.text_config.to_dict()


def test_block_influence_matches_hidden_states(micro, calib):
    """Hooks give 1 - cos(H_i, H_i+1) per token; hidden_states agree except the last layer."""
    model, processor = micro["toy-llava"]
    bi = importance.block_influence(model, calib[:1], processor)
    b = ConversationCollator(processor)(calib[:1])
    with torch.no_grad():
        hs = model(input_ids=b["input_ids"], pixel_values=b["pixel_values"],
                   output_hidden_states=True).hidden_states
    for i in range(3):
        cos = torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1).mean()
        assert abs(bi[i] - (1 - cos.item())) < 1e-5


def test_generate_with_kv_cache_after_layer_pruning(micro, calib):
    model, processor = micro["toy-llava"]
    pruned = copy.deepcopy(model)
    prune.prune(pruned, "layer", 0.25, calib, processor)
    b = ConversationCollator(processor)(calib[:1])
    kwargs = dict(input_ids=b["input_ids"][:, :20], attention_mask=b["attention_mask"][:, :20],
                  pixel_values=b["pixel_values"], max_new_tokens=6, min_new_tokens=6,
                  do_sample=False)
    with torch.no_grad():
        cached = pruned.generate(**kwargs, use_cache=True)
        plain = pruned.generate(**kwargs, use_cache=False)
    assert torch.equal(cached, plain)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, needle", [
    (dict(method="layer", ratio=0.0), "(0, 1)"),
    (dict(method="layer", ratio=1.0), "(0, 1)"),
    (dict(method="width", ratio=float("nan")), "(0, 1)"),
    (dict(method="width", ratio="lots"), "(0, 1)"),
    (dict(method="depth", ratio=0.3), "unknown pruning method"),
    (dict(method="layer", ratio=0.3, importance="taylor"), "does not apply"),
    (dict(method="layer", ratio=0.9), "every layer"),
    (dict(method="layer", ratio=0.1), "removes no layer"),
    (dict(method="width", ratio=0.9), "every attention head"),
    (dict(method="width", ratio=0.3, layer_range=(2, 9)), "not inside"),
    (dict(method="depth+width", ratio=0.3, layer_range=(1, 3)), "takes no layer range"),
    (dict(method="depth+width", ratio=0.3, depth_share=1.5), "depth_share must be in [0, 1]"),
    (dict(method="width", ratio=0.3, depth_share=0.5), "applies to depth+width pruning"),
    (dict(method="depth+width", ratio=0.9, depth_share=1.0), "would remove every layer"),
])
def test_bad_input_is_a_study_error(micro, calib, kwargs, needle):
    model, processor = micro["toy-llava"]
    victim = copy.deepcopy(model)
    with pytest.raises(StudyError, match=None) as info:
        prune.prune(victim, calib_records=calib, processor=processor, **kwargs)
    assert needle in str(info.value)
    assert surgery.decoder_params(victim) == surgery.decoder_params(model)


# --- checkpoints -------------------------------------------------------------------------------

RELOAD = """
import sys, torch
torch.set_num_threads(1)
from transformers import AutoModelForImageTextToText
for path in sys.argv[1:]:
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    saved = torch.load(path + "/check.pt")
    with torch.no_grad():
        out = model(**saved["batch"], use_cache=False).logits
    diff = (out - saved["logits"]).abs().max().item()
    print(path, type(model.model.language_model).__name__, diff)
"""


def test_checkpoints_load_with_plain_transformers_in_a_fresh_process(micro, calib, batch, tmp_path):
    cases = {"llava-width": ("toy-llava", "width"), "bunny-width": ("toy-bunny", "width"),
             "llava-layer": ("toy-llava", "layer"), "internvl-width": ("toy-internvl", "width"),
             "internvl-layer": ("toy-internvl", "layer"),
             "bunny-depth+width": ("toy-bunny", "depth+width")}
    for name, (arch, method) in cases.items():
        model, processor = micro[arch]
        pruned = copy.deepcopy(model)
        report = prune.prune(pruned, method, 0.5 if method == "layer" else 0.3, calib, processor,
                             seed=7)
        models.save_pruned(pruned, processor, report, tmp_path / name)
        torch.save({"batch": batch, "logits": logits(pruned, batch)}, tmp_path / name / "check.pt")
        saved = json.loads((tmp_path / name / "pruning_report.json").read_text())
        assert saved["method"] == method and saved["seed"] == 7
        assert saved["ratio_requested"] == report.ratio_requested
        assert saved["ratio_achieved"] == pytest.approx(report.ratio_achieved)
    text = json.loads((tmp_path / "llava-width" / "config.json").read_text())["text_config"]
    assert text["model_type"] == "mistral"  # 2 heads x 16 != 64: Llama's check would refuse it
    assert text["head_dim"] == 16 and text["sliding_window"] is None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", RELOAD, *(str(tmp_path / n) for n in cases)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 6
    for line in lines:
        assert float(line.split()[-1]) <= 1e-5, line
    assert "MistralModel" in lines[0] and "PhiModel" in lines[1] and "LlamaModel" in lines[2]
    assert "Phi3Model" in lines[3] and "Phi3Model" in lines[4]  # no divisibility check
    text = json.loads((tmp_path / "internvl-width" / "config.json").read_text())["text_config"]
    assert text["model_type"] == "phi3" and text["num_attention_heads"] == 2
    assert text["head_dim"] == 16 and text["num_key_value_heads"] == 1


@pytest.mark.parametrize("arch", ["toy-llava", "toy-internvl"])
def test_layer_range_checkpoint_loads_with_load_pruned(micro, calib, batch, tmp_path, arch):
    from transformers import AutoModelForImageTextToText

    model, processor = micro[arch]
    pruned = copy.deepcopy(model)
    report = prune.prune(pruned, "width", 0.3, calib, processor, layer_range=(1, 3))
    assert not report.uniform and abs(report.ratio_achieved - 0.3) < 0.01
    layers = models.text_layers(pruned)
    assert layers[0].mlp.down_proj.in_features == 128 == layers[3].mlp.down_proj.in_features
    assert layers[1].mlp.down_proj.in_features < 128
    # Phi-3 splits qkv_proj at the config's head count: narrower layers carry their own
    masked = copy.deepcopy(model)
    report_all = copy.deepcopy(report)
    full = {"kept_q_heads": list(range(masked.config.text_config.num_attention_heads)),
            "kept_channels": list(range(128))}
    report_all.layers = [full, *report.layers, full]
    ours = logits(copy.deepcopy(pruned), batch)  # a deep copy keeps the per-layer views
    assert (ours - logits(masked_original(masked, report_all), batch)).abs().max() <= 1e-4
    models.save_pruned(pruned, processor, report, tmp_path / "ranged")
    with pytest.raises(Exception, match="mismatch|size"):  # never silently re-initialised
        AutoModelForImageTextToText.from_pretrained(tmp_path / "ranged")
    loaded, _ = models.load_pruned(tmp_path / "ranged")
    assert torch.equal(logits(loaded, batch), logits(pruned, batch))
    via_models, _ = models.load(tmp_path / "ranged")  # what eval and recover call
    assert torch.equal(logits(via_models, batch), logits(pruned, batch))


# --- command line ------------------------------------------------------------------------------


def _cli(capsys, *args):
    from studylib import cli

    try:
        code = cli.main(["--threads", str(torch.get_num_threads()), *args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prunes_and_writes_a_checkpoint(micro_checkpoint, tmp_path, capsys):
    out = tmp_path / "pruned"
    code, stdout, err = _cli(capsys, "prune", "--model", str(micro_checkpoint), "--method",
                             "width", "--ratio", "0.3", "--calib-samples", "2", "--out", str(out))
    assert code == 0, err[-1000:]
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["importance"] == "taylor" and report["calib_samples"] == 2
    assert (out / "model.safetensors").is_file() and "wrote" in stdout


def test_cli_prunes_depth_and_width(micro_checkpoint, tmp_path, capsys):
    out = tmp_path / "dw"
    code, stdout, err = _cli(capsys, "prune", "--model", str(micro_checkpoint), "--method",
                             "depth+width", "--depth-share", "0.5", "--ratio", "0.5",
                             "--calib-samples", "2", "--out", str(out))
    assert code == 0, err[-1000:]
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["method"] == "depth+width" and report["depth_share"] == 0.5
    assert report["parts"]["layers_removed"] == len(report["removed_layers"]) == 1
    assert any("depth first" in note for note in report["notes"])


@pytest.mark.parametrize("name", ["taylor", "taylor-mean"])
def test_cli_accepts_both_taylor_forms(micro_checkpoint, tmp_path, capsys, name):
    out = tmp_path / name
    code, _, err = _cli(capsys, "prune", "--model", str(micro_checkpoint), "--method", "width",
                        "--ratio", "0.3", "--calib-samples", "2", "--importance", name,
                        "--out", str(out))
    assert code == 0, err[-1000:]
    assert json.loads((out / "pruning_report.json").read_text())["importance"] == name


def test_cli_bad_input_one_line_exit_2_nothing_written(micro_checkpoint, tmp_path, capsys):
    base = ["prune", "--model", str(micro_checkpoint)]
    cases = {
        "(0, 1)": [*base, "--method", "width", "--ratio", "1.5"],
        "invalid choice": [*base, "--method", "depth", "--ratio", "0.3"],
        "every layer": [*base, "--method", "layer", "--ratio", "0.9", "--calib-samples", "1"],
        "no checkpoint at": ["prune", "--model", str(tmp_path / "nope"), "--method",
                                      "layer", "--ratio", "0.3"],
        "does not apply": [*base, "--method", "layer", "--ratio", "0.3", "--importance",
                           "magnitude"],
        "START:END": [*base, "--method", "width", "--ratio", "0.3", "--layer-range", "1-3"],
        "applies to depth+width": [*base, "--method", "width", "--ratio", "0.3",
                                   "--depth-share", "0.5"],
        "expected a number in [0, 1]": [*base, "--method", "depth+width", "--ratio", "0.3",
                                        "--depth-share", "2"],
    }
    for i, (needle, argv) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        code, _, err = _cli(capsys, *argv, "--out", str(out))
        lines = [ln for ln in err.splitlines() if ln.startswith("studylib:")]
        assert code == 2 and len(lines) == 1 and needle in lines[0], (needle, err[-500:])
        assert not out.exists()
