"""Resource measurements: FLOPs with image tokens, memory, latency, the real-architecture table."""

import json

import pytest
import torch

from studylib import models
from studylib.compress import prune
from studylib.evaluation import inputs, measure
from studylib.models import surgery
from studylib.testbed import toy


@pytest.fixture(scope="module")
def micro():
    model, processor = toy.build("toy-llava", "micro", seed=0)
    return model.eval(), processor


@pytest.mark.parametrize("arch", ["toy-llava", "toy-internvl"])
def test_flops_count_image_tokens_and_grow_with_text(arch):
    model = toy.build(arch, "micro", seed=0)[0].eval()  # InternVL: 36 patches -> 9 tokens
    short, long = measure.count_flops(model, 10), measure.count_flops(model, 20)
    n_image = inputs.image_tokens(model.config)
    assert n_image == 9 and short["sequence_length"] == 9 + 10
    assert long["total"] > short["total"] and long["vision"] == short["vision"] > 0
    assert short["projector"] > 0
    assert short["total"] == short["vision"] + short["projector"] + short["llm"]
    # The LLM's share equals a text-only forward over the same number of positions: the
    # image's tokens are counted as sequence positions.
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.full((1, n_image + 10), 5)
    model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    finally:
        model.set_attn_implementation("sdpa")
    assert counter.get_total_flops() == short["llm"]


def test_attention_matmuls_are_counted_and_attention_restored(micro):
    model, _ = micro
    tc = model.config.text_config
    a, b = measure.count_flops(model, 10), measure.count_flops(model, 30)
    # Linear layers grow linearly with the sequence; the attention matmuls (QK^T and AV,
    # 2 x 2 x S^2 x heads x head_dim per layer) add a quadratic term, visible in the
    # second difference.
    c = measure.count_flops(model, 50)
    second = (c["llm"] - b["llm"]) - (b["llm"] - a["llm"])
    per_s2 = 4 * tc.num_attention_heads * surgery.head_dim(tc) * tc.num_hidden_layers
    assert second == per_s2 * 2 * 20 * 20
    assert model.config.text_config._attn_implementation == "sdpa"


def test_measure_reports_params_memory_latency(micro):
    model, processor = micro
    result = measure.measure(model, processor, 20, repeats=2, decode_tokens=2)
    assert result["parameters"] == models.parameter_counts(model)
    assert result["image_tokens"] == 9 and result["text_tokens"] == 20
    mem = result["memory"]
    assert mem["peak_mib"] > mem["parameters_mib"] > 0 and mem["dtype"] == "float32"
    for batch in ("batch_1", "batch_8"):
        lat = result["latency"][batch]
        assert lat["prefill"]["median_ms"] > 0 and lat["decode_per_token"]["n"] == 4
        assert lat["prefill"]["iqr_ms"] >= 0
    assert "Global" not in json.dumps(result)


@pytest.mark.parametrize("arch", ["llava-1.5-7b", "bunny-v1.0-3b"])
@pytest.mark.parametrize("method", ["width", "layer"])
def test_structural_pruning_of_real_archs_hits_the_ratio(arch, method):
    model = measure.build_meta(arch)
    full = surgery.decoder_params(model)
    prune.shrink(model, method, 0.3)
    assert abs(1 - surgery.decoder_params(model) / full - 0.3) < 0.02
    tc = model.config.text_config
    if method == "width":
        assert tc.num_attention_heads == 32 - round(0.3 * 32) and tc.head_dim in (80, 128)
    else:
        assert tc.num_hidden_layers == 32 - round(0.3 * 32)


def _cli(capsys, *args):
    from studylib import cli

    try:
        code = cli.main(["--threads", str(torch.get_num_threads()), *args])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_measures_a_checkpoint(micro_checkpoint, capsys):
    code, out, err = _cli(capsys, "measure", "--model", str(micro_checkpoint), "--json",
                          "--repeats", "2", "--text-tokens", "8", "--ratio", "0.5",
                          "--method", "layer")
    assert code == 0, err[-1000:]
    result = json.loads(out)
    assert result["flops"]["sequence_length"] == 9 + 8
    assert result["pruning"]["method"] == "layer"


@pytest.mark.parametrize("argv, needle", [
    (["--arch", "gpt-5"], "invalid choice"),
    (["--arch", "llava-1.5-7b", "--ratio", "0.3"], "go together"),
    (["--arch", "llava-1.5-7b", "--ratio", "1.2", "--method", "width"], "(0, 1)"),
    (["--model", "/nonexistent/ckpt"], "no checkpoint at"),
])
def test_cli_bad_input_one_line_exit_2(capsys, argv, needle):
    code, _, err = _cli(capsys, "measure", *argv)
    lines = [ln for ln in err.splitlines() if ln.startswith("studylib:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err[-500:]
